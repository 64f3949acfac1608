"""Build (or find) the cached CPython 3.6 "JetPack in a box" env of tests/device36.py and print its python.

    python scripts/python36_env.py            # builds .cache/py36/<hash>/ once (about a minute), then reuses it
    python scripts/python36_env.py --rebuild  # builds it again

Exits 0 with a "skipped" line where no CPython 3.6 is installed (pyenv install 3.6.15), as the tests skip there.
`make test` runs it first, so CI builds the env in its own step.
"""
import argparse
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.device36 import CACHE, ensure_env, env_key, env_record, find_python36  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rebuild", action="store_true", help="remove the cached env first")
    args = parser.parse_args(argv)
    python36 = find_python36()
    if python36 is None:
        print("python36_env: skipped: no CPython 3.6 (pyenv install 3.6.15, or set EDGECSP_PYTHON36); the "
              "Python 3.6 tests skip too")
        return 0
    if args.rebuild:
        shutil.rmtree(os.path.join(CACHE, env_key(python36)), ignore_errors=True)
    start = time.time()
    folder = ensure_env(python36, log=lambda line: print("python36_env: " + line, flush=True))
    record = env_record(folder)
    print("python36_env: {} (Python {}, pip {}, numpy {}, OpenCV {}, ONNX Runtime {}, pytest {}) ready in {:.1f} s"
          .format(os.path.join(folder, "venv", "bin", "python"), record["python"], record["pip"], record["numpy"],
                  record["cv2"], record["onnxruntime"], record["pytest"], time.time() - start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
