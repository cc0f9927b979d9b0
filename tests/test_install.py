"""The install `make` does (issue 30, item 9): a clone in a folder named `anomalyvae`, with a script run from the
folder above it, still imports the installed package; Python would otherwise take the clone's folder, first on
the path, for an empty namespace package ("cannot import name 'AnomalyVAE' from 'anomalyvae' (unknown location)")."""

import subprocess
import sys

from conftest import ROOT

SCRIPT = "from anomalyvae import AnomalyVAE\nimport anomalyvae.cli.main\nprint(AnomalyVAE.__module__)\n"


def test_a_script_beside_a_clone_folder_named_anomalyvae_imports_the_package(tmp_path):
    (tmp_path / "anomalyvae").symlink_to(ROOT, target_is_directory=True)  # the clone, as `git clone URL` names it
    (tmp_path / "script.py").write_text(SCRIPT)
    r = subprocess.run([sys.executable, "script.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "anomalyvae.estimator", r.stderr[-2000:]


def test_python_m_anomalyvae_still_runs_in_the_checkout_root():
    r = subprocess.run([sys.executable, "-m", "anomalyvae", "--version"], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and r.stdout.strip(), r.stderr[-2000:]


def test_the_error_of_an_install_without_the_fix_is_documented_where_a_user_looks():
    """The error text a user would search for, in the Install section and on the failures page."""
    error = "cannot import name 'AnomalyVAE' from 'anomalyvae' (unknown location)"
    install = (ROOT / "docs" / "getting-started.md").read_text().split("## Install", 1)[1].split("\n## ", 1)[0]
    assert error in " ".join(install.split()) and "make setup" in install
    failures = (ROOT / "docs" / "failures.md").read_text()
    assert error in failures and "getting-started.md#install" in failures
