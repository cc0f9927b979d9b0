"""What a new user meets first: a table model given images, warnings as one line each, bad rows and files
named, the evaluation's report and pixel AUROC on screen."""

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli
from test_table_files import _frame


@pytest.fixture(scope="module")
def table_model(tmp_path_factory):
    """A model trained with `train --table` under models/ of a fresh folder (the newest model there)."""
    root = tmp_path_factory.mktemp("tablemodel")
    _frame(60).to_csv(root / "normal.csv", index=False)
    r = run_cli("train", "--table", "normal.csv", "--exclude-columns", "id", "--epochs", "2", "--no-tracking",
                "--out", "models/wine", cwd=root, env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    return root, r


def test_scoring_images_with_a_table_model_is_one_line_naming_the_models_kind(table_model, write_png, tmp_path):
    root, _ = table_model
    write_png("images/a.png")
    for args in ([], ["--model", root / "models" / "wine"]):  # the newest model, and one named
        r = run_cli("score", tmp_path / "images", *args, cwd=root)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "internal error" not in r.stderr, r.stderr
        assert "trained on a table" in lines[0] and ".csv" in lines[0], lines[0]


def test_table_training_warns_in_one_line_each_without_python_source_lines(table_model):
    _, r = table_model  # 54 rows hold out 6: fewer than a 5 % false-positive rate needs, and fewer than 100 rows
    warnings = [line for line in r.stderr.splitlines() if line.strip()]
    assert warnings, r.stderr
    assert all(line.startswith("warning: ") and not line.startswith("warning: warning:") for line in warnings), r.stderr
    assert "UserWarning" not in r.stderr and ".py:" not in r.stderr and "from_config" not in r.stderr, r.stderr
    assert len(set(warnings)) == len(warnings), r.stderr  # each once


def test_image_training_warns_with_one_prefix(mnist_dir, tmp_path):
    r = run_cli("train", "--normal", "0", "--limit", "60", "--epochs", "1", "--arch", "mlp", "--data-dir", mnist_dir,
                "--no-tracking", "--out", "m", cwd=tmp_path, env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    held_out = [line for line in r.stderr.splitlines() if "held-out images" in line]
    assert held_out and all(line.startswith("warning: ") and "warning: warning:" not in line for line in held_out), \
        r.stderr


def test_the_flag_the_held_out_warning_names_exists_and_sets_the_hold_out(mnist_dir, tmp_path):
    import json

    r = run_cli("train", "--normal", "0", "--limit", "100", "--epochs", "1", "--arch", "mlp", "--data-dir", mnist_dir,
                "--val-fraction", "0.25", "--no-tracking", "--out", "m", cwd=tmp_path, env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["config"]["val_fraction"] == 0.25 and meta["info"]["n_val"] == 25
    r = run_cli("train", "--val-fraction", "1.5", "--no-tracking", cwd=tmp_path)
    assert r.returncode == 2 and "val_fraction" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_a_nan_is_reported_by_data_row_and_file_line(table_model, tmp_path):
    root, _ = table_model
    f = _frame(8)
    f.loc[4, "a"] = np.nan  # the fifth data row, the sixth line of the file
    f.to_csv(tmp_path / "t.csv", index=False)
    r = run_cli("score", tmp_path / "t.csv", "--model", root / "models" / "wine", "--out", tmp_path / "s.csv", cwd=root)
    assert r.returncode == 2 and "data row 5 (line 6)" in r.stderr, r.stderr
    f.loc[4, "a"] = 0.0
    f.to_csv(tmp_path / "t.csv", index=False)
    r = run_cli("score", tmp_path / "t.csv", "--model", root / "models" / "wine", "--out", tmp_path / "s.csv", cwd=root)
    assert r.returncode == 0, r.stderr
    assert pd.read_csv(tmp_path / "s.csv")["row"].tolist()[4] == 5  # the scored CSV counts the same rows


def test_a_training_folder_of_unreadable_files_names_one_of_them(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "notes.png").write_text("not an image")
    r = run_cli("train", "--dataset", "folder", "--train-dir", "train", "--no-tracking", cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "no readable images in train" in r.stderr and "notes.png" in r.stderr, r.stderr


@pytest.mark.parametrize("command", ["train", "evaluate", "score", "sample"])
def test_help_at_the_docs_width_cuts_no_text(command, tmp_path):
    """The CLI reference page is each command's --help at 80 columns: rich cuts a word longer than its column
    with an ellipsis, and the page would show half a default."""
    import os

    r = run_cli(command, "--help", cwd=tmp_path, env={"COLUMNS": "80", "TERM": "dumb", "NO_COLOR": "1"})
    assert r.returncode == 0, r.stderr
    assert "…" not in r.stdout, [line for line in r.stdout.splitlines() if "…" in line]
