"""Every benchmark script must at least import: a broken import only shows when someone runs it."""

import importlib
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(path.stem for path in BENCHMARKS.glob("*.py"))


@pytest.mark.parametrize("name", SCRIPTS)
def test_benchmark_script_imports(name, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    before = set(sys.modules)
    try:
        module = importlib.import_module(name)
        assert Path(module.__file__).resolve().parent == BENCHMARKS
    finally:
        # the scripts import each other by bare name: leave no such module behind
        for added in set(sys.modules) - before:
            if added in SCRIPTS:
                del sys.modules[added]
