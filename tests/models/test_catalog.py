"""The stored figures of `edgecsp models` (edgecsp.models.catalog) match the registry they were counted from."""
import subprocess
import sys

import pytest

from edgecsp.models import catalog
from tests.gates import optional

torch = optional("torch")
STORED = {row["name"]: row for row in catalog.catalog()}
FIX = "the registry changed: regenerate the catalog with `{}`".format(catalog.REGENERATE)


@pytest.mark.torch
def test_the_catalog_lists_every_registered_model():
    from edgecsp.models import list_models

    assert sorted(STORED) == [e.name for e in list_models()], FIX


@pytest.mark.torch
@pytest.mark.parametrize("name", sorted(STORED))
def test_stored_figures_match_a_recount(name):
    from edgecsp.models import get_entry

    assert dict(catalog.measure(get_entry(name))) == STORED[name], FIX


def test_render_writes_back_the_same_rows(tmp_path):
    namespace = {}
    exec(compile(catalog.render(catalog.catalog()), "catalog_data.py", "exec"), namespace)
    assert [dict(r) for r in namespace["ROWS"]] == catalog.catalog()
    with open(catalog.DATA_MODULE) as handle:  # the stored file is exactly what the generator writes
        assert handle.read() == catalog.render(catalog.catalog())


def test_summary_converts_counts_to_millions_and_gflops():
    row = dict(STORED["cspdarknet53"])
    out = catalog.summary(row)
    assert out["params_m"] == row["params"] / 1e6 and out["gflops"] == pytest.approx(13.07, rel=0.02)
    assert catalog.summary(row, flops=False)["gflops"] is None


def test_models_command_imports_no_torch():
    code = ("import sys\nsys.modules['torch'] = None\nfrom edgecsp.cli import main\nrc = main(['models'])\n"
            "print('torch' in [m.split('.')[0] for m in sys.modules if sys.modules[m] is not None])\nsys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == "False"
    assert [l.split()[0] for l in lines[1:-1]] == sorted(STORED)
