"""One spelling per meaning across the commands (edgecsp/cli/options.py), the README's option table, and the
earlier spellings kept as hidden aliases for a release."""
import argparse
import os

import pytest

from edgecsp.cli import build_parser
from edgecsp.cli.options import ALIASES, VOCABULARY, markdown_table

build_parser()  # the command modules register their earlier spellings (ALIASES) as they add their options

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# dests of earlier spellings: a visible option filling one of these spells a vocabulary meaning another way
RETIRED_DESTS = {"json": "report / save_json (models and targets keep --json: print JSON instead of a table)",
                 "name": "model", "val_data": "data", "val_images": "images", "calib_count": "count",
                 "calib_seed": "seed", "artefact": "engine", "a": "engine", "b": "baseline"}
PRINT_JSON = {"models", "targets"}  # `--json` there means "print JSON", not a file


def _commands():
    parser = build_parser()
    sub = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)][0]
    for name, command in sub.choices.items():
        nested = [a for a in command._actions if isinstance(a, argparse._SubParsersAction)]
        if nested:
            for child_name, child in nested[0].choices.items():
                yield name + " " + child_name, child
        else:
            yield name, command


def _visible(command):
    return [a for a in command._actions if a.help != argparse.SUPPRESS and a.dest != "help"]


def test_each_meaning_has_one_spelling_in_every_command():
    wrong = []
    seen = dict((key, set()) for key in VOCABULARY)
    by_dest = dict((option.dest, key) for key, option in VOCABULARY.items())
    for name, command in _commands():
        top = name.split()[0]
        for action in _visible(command):
            key = by_dest.get(action.dest)
            if key is not None and action.option_strings:
                seen[key].add(top)
                if set(action.option_strings) != set(VOCABULARY[key].flags):
                    wrong.append("{}: {} spelled {}".format(name, key, "/".join(action.option_strings)))
            if action.dest in RETIRED_DESTS and not (action.dest == "json" and top in PRINT_JSON):
                wrong.append("{}: {} is a retired spelling of {}".format(
                    name, "/".join(action.option_strings) or action.dest, RETIRED_DESTS[action.dest]))
    assert wrong == []
    for key, option in VOCABULARY.items():  # the table says where each option is, and it is there
        assert seen[key] == set(option.commands), key


def test_one_long_flag_means_one_thing():
    flags = {}
    for name, command in _commands():
        for action in _visible(command):
            for flag in action.option_strings:
                if flag.startswith("--") and not (flag == "--json" and name in PRINT_JSON):
                    flags.setdefault(flag, set()).add(action.dest)
    assert dict((f, d) for f, d in flags.items() if len(d) > 1) == {}


def test_the_readme_has_the_option_table():
    with open(os.path.join(ROOT, "README.md")) as handle:
        assert markdown_table() in handle.read()


@pytest.mark.parametrize("command, old", sorted(ALIASES))
def test_earlier_spellings_still_parse_into_the_new_option(command, old, capsys):
    parser = build_parser()
    new = ALIASES[command, old]
    sub = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)][0].choices[command]
    action = [a for a in sub._actions if old in a.option_strings][0]
    target = [a for a in sub._actions if new in a.option_strings][0]
    assert action.help == argparse.SUPPRESS and action.dest == target.dest


def test_an_earlier_spelling_gives_the_same_arguments_and_a_note(capsys):
    parser = build_parser()
    old = parser.parse_args(["build", "m.onnx", "--calib" + "-count", "7", "--val" + "-data", "a.json"])
    new = parser.parse_args(["build", "m.onnx", "--count", "7", "--data", "a.json"])
    assert (old.count, old.data) == (new.count, new.data) == (7, "a.json")
    assert "--calib-count is now spelled --count" in capsys.readouterr().err
    served = parser.parse_args(["serve", "--engine", "a.xml", "--engine", "b.xml", "--name", "x", "--name", "y"])
    assert served.engine == ["a.xml", "b.xml"] and served.model == ["x", "y"]
