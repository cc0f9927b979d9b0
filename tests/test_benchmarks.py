"""Benchmarks never write over committed results with a partial comparison (issue 22, item 4): a detector
library missing means stop before any work, naming what to install."""

import importlib.util
import sys

import pytest

from conftest import ROOT


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tabular_without_pyod_stops_naming_what_to_install_and_writes_nothing(monkeypatch, tmp_path, capsys):
    tabular = load("tabular")
    monkeypatch.setitem(sys.modules, "pyod", None)  # `import pyod...` raises ImportError, as when not installed
    monkeypatch.setattr(tabular, "splits", lambda seed: iter(()))  # no minutes of fitting if it went on
    monkeypatch.setattr(sys, "argv", ["tabular.py", "--seeds", "1", "--out", str(tmp_path / "tabular.csv")])
    with pytest.raises(SystemExit) as stop:
        tabular.main()
    assert "PyOD is not installed" in str(stop.value.code) and "pip install -e '.[bench]'" in str(stop.value.code)
    assert list(tmp_path.iterdir()) == []
