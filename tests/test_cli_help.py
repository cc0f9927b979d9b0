"""What a new user reads first: --help shows every option's default and meaning, names come from the code,
the flags are the ones the README uses, and asking for help never imports torch."""

import os
import re
import subprocess
import sys

import pytest

from anomalyvae.config import ARCHS, DATASETS, Config
from anomalyvae.scores import NAMES


def help_text(*command: str) -> str:
    env = {**os.environ, "COLUMNS": "400", "TERM": "dumb"}  # one option per line, no colour codes
    r = subprocess.run([sys.executable, "-m", "anomalyvae", *command, "--help"], capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def options(text: str) -> dict[str, str]:
    """--name -> the rest of its row in the help table (type column, help and default)."""
    rows = {}
    for line in text.splitlines():
        m = re.match(r"[│|]\s*(\*\s*)?(--[a-z-]+|[A-Z]+)\b(.*?)[│|]?\s*$", line)
        if m:
            rows[m.group(2)] = m.group(3).strip()
    return rows


# Config fields behind train's options, with the default each must show
TRAIN_DEFAULTS = {"--normal": Config.normal, "--dataset": Config.dataset, "--arch": Config.arch,
                  "--batch-size": Config.batch_size, "--lr": Config.lr, "--seed": Config.seed, "--fpr": Config.fpr,
                  "--score": Config.score, "--device": Config.device}


@pytest.mark.parametrize("flag, default", TRAIN_DEFAULTS.items())
def test_train_help_shows_the_config_default_of_each_option(flag, default):
    row = options(help_text("train"))[flag]
    assert f"[default: {default}]" in row


@pytest.mark.parametrize("command", ["train", "evaluate", "score"])
def test_every_option_has_help_and_a_default_unless_it_is_a_flag(command):
    text = help_text(command)
    rows = options(text)
    flags = {"--resume", "--no-tracking", "--debug", "--help", "--all", "--use-labels", "--causal"}
    assert len(rows) > 5, text
    for name, row in rows.items():
        assert len(row) > 15, f"{command} {name} has no help: {row!r}"
        if name not in flags and name != "PATH":
            assert "[default: " in row, f"{command} {name} shows no default: {row!r}"
        assert "<bool>" not in row and "list[" not in row, f"{command} {name}: {row!r}"


def test_score_help_lists_every_score_of_the_registry():
    row = options(help_text("train"))["--score"]
    assert " | ".join(NAMES) in row
    assert ' | '.join(DATASETS) in options(help_text("train"))["--dataset"]
    assert " | ".join(ARCHS) in options(help_text("train"))["--arch"]


def test_resume_help_names_what_may_change():
    from anomalyvae.vae.resume import MAY_CHANGE

    assert ", ".join(MAY_CHANGE) in " ".join(help_text("train").split())


def test_help_is_fast_and_does_not_import_torch_or_mlflow():
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "anomalyvae", "train", "--help"],
                       capture_output=True, text=True, timeout=60)
    imported = {line.split("|")[-1].strip().split(".")[0] for line in r.stderr.splitlines() if "|" in line}
    assert r.returncode == 0 and "anomalyvae" in imported
    assert not imported & {"torch", "mlflow", "numpy", "sklearn"}


def test_version(cli):
    from anomalyvae import __version__

    code, out, _ = cli("--version")
    assert code == 0 and out.strip() == f"anomalyvae {__version__}"


def test_arch_is_train_s_architecture_flag_and_model_is_not(cli):
    code, _, err = cli("train", "--model", "mlp")
    assert code == 2 and "No such option" in err
    code, _, err = cli("train", "--arch", "transformer", "--no-tracking")
    assert code == 2 and "'arch' is 'transformer'" in err


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_works_before_and_after_the_command(tmp_path, cli, monkeypatch, where):
    from anomalyvae.estimator import AnomalyVAE

    def bug(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(AnomalyVAE, "load", bug)
    (tmp_path / "m").mkdir()
    args = ["score", tmp_path, "--model", tmp_path / "m"]
    with pytest.raises(ZeroDivisionError):
        cli(*(["--debug", *args] if where == "before" else [*args, "--debug"]))
