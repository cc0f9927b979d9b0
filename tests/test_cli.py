"""End to end, as a user runs it: the installed CLI in a clean folder, on a small real MNIST subset."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import run_cli


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("work")


@pytest.fixture(scope="module")
def trained(workdir, mnist_dir):
    r = run_cli("train", "--normal", "0-8", "--limit", "3000", "--epochs", "3", "--data-dir", mnist_dir,
                "--out", "models/small", cwd=workdir)
    assert r.returncode == 0, r.stderr
    return workdir / "models" / "small", r


def test_train_writes_one_complete_model_directory(trained):
    model_dir, r = trained
    assert "model: models/small" in r.stdout
    assert (model_dir / "model.safetensors").is_file() and (model_dir / "model.json").is_file()
    meta = json.loads((model_dir / "model.json").read_text())
    assert meta["config"]["normal"] == "0-8" and meta["info"]["normal_classes"] == list(range(9))
    assert meta["info"]["n_train"] + meta["info"]["n_val"] == 3000
    assert 0 < meta["info"]["val_fpr"] <= 0.05
    assert meta["preprocessing"] and np.isfinite(meta["threshold"])


def test_evaluate_reports_metrics_and_plots_for_the_latest_model(trained, workdir):
    model_dir, _ = trained
    r = run_cli("evaluate", "--metrics-out", "m.json", cwd=workdir)
    assert r.returncode == 0, r.stderr
    saved = json.loads((model_dir / "model.json").read_text())["created"].replace("T", " ").replace("+00:00", " UTC")
    assert r.stdout.startswith(f"model models/small: conv VAE on mnist, normal classes 0-8, saved {saved}\n")
    m = json.loads((workdir / "m.json").read_text())
    for key in ("auroc", "auprc", "f1", "precision", "recall", "fpr", "threshold"):
        assert key in m and np.isfinite(m[key])
    assert m["n_test"] == 10000 and m["n_anomalies"] == 1009  # digit 9 in the official test split
    # the nine normal classes' labels are learnt by default: `class` is among the scores
    assert set(m["scores"]) == {"recon", "elbo", "iwae", "blur", "peak", "latent", "knn", "hknn", "class", "combined"}
    assert [r["label"] for r in m["per_class"]] == list(range(10))
    assert 0 <= m["auroc"] <= 1 and m["auroc"] == m["scores"][m["score"]]["auroc"]
    assert m["per_class"][9]["anomaly"] and m["per_class"][9]["auroc"] == pytest.approx(m["auroc"])
    for f in ("roc.png", "pr.png", "histogram.png", "reconstructions.png", "metrics.json"):
        assert (model_dir / "evaluation" / f).stat().st_size > 0
    assert "AUROC" in r.stdout


def test_both_runs_are_in_mlflow_with_metrics_and_artifacts(trained, workdir):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("anomalyvae")
    runs = client.search_runs([exp.experiment_id])
    jobs = {r.data.tags["anomalyvae.job"]: r for r in runs}
    assert set(jobs) == {"train", "evaluate"}
    train, ev = jobs["train"], jobs["evaluate"]
    assert train.info.status == "FINISHED" and train.data.params["normal"] == "0-8"
    assert len(client.get_metric_history(train.info.run_id, "val_loss")) == 3
    assert "auroc" in ev.data.metrics and ev.data.tags["anomalyvae.train_run_id"] == train.info.run_id
    names = {a.path for a in client.list_artifacts(ev.info.run_id, "evaluation")}
    assert "evaluation/roc.png" in names
    assert {a.path for a in client.list_artifacts(train.info.run_id, "model")} >= {"model/model.safetensors"}


def test_score_a_folder_with_a_corrupt_file_returns_every_row(trained, workdir, mnist_dir):
    from anomalyvae.data.idx import read_idx

    images = read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz")[:20]
    folder = workdir / "images" / "nested"
    folder.mkdir(parents=True)
    for i, a in enumerate(images):
        Image.fromarray(a).save(folder / f"{i:02d}.png")
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage")
    (folder / "readme.txt").write_text("not an image, not listed")
    r = run_cli("score", "images", "--out", "scores.csv", cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("model models/small: conv VAE on mnist, normal classes 0-8, saved ")
    df = pd.read_csv(workdir / "scores.csv", keep_default_na=False)
    assert len(df) == 21
    assert list(df.columns) == ["path", "recon", "elbo", "blur", "peak", "latent", "knn", "hknn", "class",
                                "combined", "looks_like", "is_anomaly", "error"]
    bad = df[df["error"] != ""]
    assert list(bad["path"].str.rsplit("/", n=1).str[-1]) == ["corrupt.png"]
    good = df[df["error"] == ""]
    assert len(good) == 20 and good["combined"].astype(float).notna().all()
    assert "21 files" in r.stdout and "1 unreadable" in r.stdout


def test_score_single_files_an_undecodable_one_is_an_error_row(trained, workdir, write_png, tmp_path):
    png = write_png("one.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage")
    r = run_cli("score", png, tmp_path / "broken.png", "--out", "two.csv", cwd=workdir)
    assert r.returncode == 0, r.stderr
    df = pd.read_csv(workdir / "two.csv", keep_default_na=False)
    assert df["error"].iloc[0] == "" and df["error"].iloc[1] != ""
    assert "2 files: " in r.stdout and "1 unreadable" in r.stdout


def test_score_a_path_that_does_not_exist_is_one_line_exit_2_and_writes_nothing(trained, workdir, write_png):
    png = write_png("one.png")
    r = run_cli("score", png, "missing.png", "--out", "three.csv", cwd=workdir)
    assert r.returncode == 2 and r.stderr.strip() == "error: missing.png: no such file or folder; check the path"
    assert not (workdir / "three.csv").exists()


@pytest.mark.parametrize("args, words", [
    (["train", "--normal", "0-10"], "out of range"),
    (["train", "--normal", "12"], "out of range"),
    (["train", "--dataset", "cifar"], "dataset"),
    (["evaluate", "--model", "no/such/dir"], "does not exist"),
    (["score", "empty_dir", "--model", "models/small"], "no image files"),
])
def test_bad_input_is_one_clear_line_and_a_non_zero_exit(trained, workdir, args, words):
    (workdir / "empty_dir").mkdir(exist_ok=True)
    r = run_cli(*args, cwd=workdir)
    assert r.returncode == 2
    assert words in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_missing_dataset_without_internet_says_how_to_get_it_and_leaves_no_folders(tmp_path):
    r = run_cli("train", "--no-tracking", cwd=tmp_path,
                env={"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"})
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    for words in ("train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "https://", "data/mnist",
                  "--data-dir", "ANOMALYVAE_DATA_DIR", "make demo DATA="):
        assert words in r.stderr, words
    assert list(tmp_path.iterdir()) == []  # no data/MNIST/raw, no models/: nothing half-made


def test_the_readme_use_commands_are_what_make_demo_runs_and_work_after_its_data_step(tmp_path, mnist_dir):
    """`make demo`, then the README's lines as typed: the Makefile runs those lines, after putting MNIST in
    ./data, where anomalyvae looks by default, and with one thread so that its figure repeats."""
    import re
    import shutil
    import subprocess

    from conftest import ROOT

    use = (ROOT / "README.md").read_text().split("## Use", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    typed = [line.split("#")[0].strip() for line in use.splitlines() if line.startswith("anomalyvae ")]
    assert [t.split()[1] for t in typed] == ["train", "evaluate", "score"]
    recipe = subprocess.run(["make", "-n", "demo", f"DATA={mnist_dir}"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout
    ran = [re.sub(r"^OMP_NUM_THREADS=1 \S*/?anomalyvae", "anomalyvae", line) for line in recipe.splitlines()]
    assert typed[0] in ran and typed[1] in ran and "images" in recipe  # score's images/ is written too
    shutil.copy(ROOT / "Makefile", tmp_path)
    made = subprocess.run(["make", "data", f"DATA={mnist_dir}"], cwd=tmp_path, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    quick = typed[0].split()[1:] + ["--limit", "300", "--epochs", "1", "--no-tracking"]
    r = run_cli(*quick, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
