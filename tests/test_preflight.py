"""Trivial mistakes are reported at once (issue 22, item 7): paths and flags are checked before torch, MLflow or
any data is imported or read, so the one-line error comes in a fraction of a second, not after 3 s of imports."""

import subprocess
import sys

import pytest

# runs the CLI in-process, then says how it ended and whether the heavy libraries were imported
PROBE = """
import sys
from anomalyvae.cli.main import main
try:
    main()
except SystemExit as e:
    print("exit", e.code)
print("heavy", sorted({m.split('.')[0] for m in sys.modules} & {"torch", "mlflow", "sklearn", "pandas"}))
"""


def probe(*args, cwd):
    r = subprocess.run([sys.executable, "-c", PROBE, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                       timeout=120)
    lines = r.stdout.strip().splitlines()
    return lines[-2], lines[-1], r.stderr.strip()


@pytest.mark.parametrize("args, words", [
    (["score", "/no/such/path"], "/no/such/path: no such file or folder; check the path"),
    (["score", ".", "--model", "/no/such/model"], "model /no/such/model does not exist"),
    (["evaluate", "--model", "/no/such/model"], "model /no/such/model does not exist"),
    (["evaluate", "--model", ".", "--normal-dir", "/no/such/dir"], "/no/such/dir: no such file or folder"),
    (["train", "--dataset", "folder", "--train-dir", "/no/such/dir"], "/no/such/dir is not a folder"),
    (["train", "--normal", "0-10"], "out of range"),
    (["train", "--dataset", "cifar"], "'dataset' is 'cifar'"),
    (["train", "--dataset", "folder", "--train-dir", ".", "--normal", "0-8"], "--normal 0-8 has no meaning"),
], ids=["score-path", "score-model", "evaluate-model", "evaluate-dir", "train-dir", "normal", "dataset",
        "normal-for-folder"])
def test_a_trivial_mistake_is_one_line_before_torch_or_mlflow_is_imported(tmp_path, args, words):
    ended, heavy, err = probe(*args, cwd=tmp_path)
    assert ended == "exit 2" and err.startswith("error: ") and words in err and "\n" not in err, err
    assert heavy == "heavy []"


@pytest.mark.parametrize("dataset", ["folder", "mvtec"])
def test_normal_classes_for_a_dataset_without_classes_are_refused_not_ignored(tmp_path, dataset):
    (tmp_path / "train" / "good").mkdir(parents=True)
    where = ["--train-dir", tmp_path / "train" / "good"] if dataset == "folder" else ["--data-dir", tmp_path]
    ended, _, err = probe("train", "--dataset", dataset, *where, "--normal", "0-8", "--no-tracking", cwd=tmp_path)
    assert ended == "exit 2"
    assert err == (f"error: --normal 0-8 has no meaning for --dataset {dataset} (every training image is normal; "
                   "only mnist and fashion-mnist have classes); drop --normal")
