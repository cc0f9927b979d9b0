"""The Makefile's promises (issue 22, item 1): `make test` changes nothing outside the checkout; installing the
browser the MLflow UI test needs is an explicit step, `make browser`, that CI calls and a person may skip;
`make docs` builds the documentation site strictly, and CI runs it (issue 23)."""

import re
import shutil
import subprocess

from conftest import ROOT


def recipe(target: str, folder) -> str:
    """What `make TARGET` would run in a fresh checkout without a venv or data (make -n runs nothing)."""
    for name in ("Makefile", "pyproject.toml", "constraints.txt"):
        shutil.copy(ROOT / name, folder)
    return subprocess.run(["make", "-n", target, "DATA="], cwd=folder, capture_output=True, text=True,
                          check=True).stdout


def test_make_test_installs_no_system_package(tmp_path):
    commands = recipe("test", tmp_path)
    assert "pytest" in commands
    assert not re.search(r"apt-get|apt |dpkg|sudo|chromium", commands), commands


def test_make_browser_is_the_explicit_step_that_installs_chromium(tmp_path):
    assert "apt-get install" in recipe("browser", tmp_path) and "chromium" in recipe("browser", tmp_path)


def test_ci_installs_the_browser_before_it_runs_the_tests_then_builds_the_docs():
    steps = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("make ")]
    assert steps == ["make browser", "make test", "make docs"]


def test_make_docs_installs_the_docs_extra_and_builds_strictly(tmp_path):
    commands = recipe("docs", tmp_path)
    assert "pip install" in commands and ".[dev,docs]" in commands
    assert "mkdocs build --strict" in commands
    assert not re.search(r"apt-get|sudo", commands), commands


def test_without_a_browser_the_browser_tests_say_how_to_enable_them():
    from conftest import NO_BROWSER

    assert "`make browser`" in NO_BROWSER
    for test in ("test_dashboard.py", "test_ecosystem.py"):  # every browser test skips with that reason
        source = (ROOT / "tests" / test).read_text()
        assert "pytest.skip(NO_BROWSER)" in source
