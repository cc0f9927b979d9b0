"""The detector in the MLflow ecosystem, for real: pyfunc load, REST serving, registry URIs, the HTML report
(rendered by headless Chromium) and heat maps; one small model trained once through the CLI."""

import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import NO_BROWSER, free_port, run_cli, stop_server

REGISTERED = "digits-detector"
LOGGED = "mnist-normal-0-8-conv-labels"  # the logged model's name: what it learned (with the normal classes' labels)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("eco")


@pytest.fixture(scope="module")
def trained(workdir, mnist_dir):
    r = run_cli("train", "--normal", "0-8", "--limit", "2000", "--epochs", "1", "--data-dir", mnist_dir,
                "--out", "models/eco", "--register", REGISTERED, cwd=workdir, env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    model_dir = workdir / "models" / "eco"
    run_id = json.loads((model_dir / "model.json").read_text())["info"]["mlflow_run_id"]
    assert f"runs:/{run_id}/{LOGGED} = models:/{REGISTERED}/1" in r.stdout
    return model_dir, run_id


@pytest.fixture(scope="module")
def tracking_uri(workdir):
    return f"sqlite:///{workdir / 'mlflow.db'}"


@pytest.fixture(scope="module")
def test_images(mnist_dir):
    from anomalyvae.data.idx import read_idx

    images = read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz")[:30]
    noise = np.random.default_rng(0).integers(0, 256, (2, 28, 28), dtype=np.uint8)  # surely anomalous
    return np.concatenate([images, noise])


def _expected(model_dir, images):
    import torch

    from anomalyvae.estimator import AnomalyVAE

    det = AnomalyVAE.load(model_dir)
    return det.anomaly_scores(torch.from_numpy(images)), det


def test_pyfunc_model_predicts_scores_and_flags_like_the_detector(trained, tracking_uri, test_images, tmp_path):
    import mlflow

    model_dir, run_id = trained
    mlflow.set_tracking_uri(tracking_uri)
    expected, det = _expected(model_dir, test_images)
    flat = test_images.reshape(len(test_images), -1)
    read_only = flat.copy()
    read_only.flags.writeable = False  # as MLflow's schema enforcement and serving hand arrays over
    for uri in (f"runs:/{run_id}/{LOGGED}", f"models:/{REGISTERED}/1"):
        model = mlflow.pyfunc.load_model(uri)
        for data in (flat, read_only, pd.DataFrame(flat)):
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                out = model.predict(data)
            assert not [str(w.message) for w in seen]  # no warnings in normal use
            assert list(out.columns) == [*det.default_scores(), "is_anomaly"]
            for k in det.default_scores():
                np.testing.assert_allclose(out[k].to_numpy(), expected[k], rtol=1e-5)
            assert list(out["is_anomaly"]) == list(expected[det.score_] > det.threshold_)
            assert out["is_anomaly"].iloc[-2:].all()  # the noise images
    meta = model.metadata
    assert meta.get_input_schema().to_dict()[0]["tensor-spec"] == {"dtype": "uint8", "shape": (-1, 784)}
    assert [c["name"] for c in meta.get_output_schema().to_dict()][-1] == "is_anomaly"
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{REGISTERED}/1", dst_path=str(tmp_path)))
    files = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
    assert "MLmodel" in files and "input_example.json" in files
    assert any(f.endswith("/model.safetensors") for f in files)
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".pt"))], files  # code + safetensors only
    assert "checkpoint.safetensors" not in " ".join(files)


def test_mlflow_models_serve_answers_a_rest_request(trained, workdir, tracking_uri, test_images):
    model_dir, _ = trained
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "OMP_NUM_THREADS": "1",
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}  # uvicorn
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{REGISTERED}/1",
           "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
    log = open(workdir / "serve.log", "wb")
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (workdir / "serve.log").read_text()[-2000:]
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, "server did not answer /ping within 90 s"
                time.sleep(0.5)
        body = json.dumps({"inputs": test_images.reshape(len(test_images), -1).tolist()}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                     headers={"Content-Type": "application/json"})
        preds = pd.DataFrame(json.loads(urllib.request.urlopen(req, timeout=60).read())["predictions"])
    finally:
        stop_server(proc, log)
    expected, det = _expected(model_dir, test_images)
    np.testing.assert_allclose(preds["elbo"].to_numpy(), expected["elbo"], rtol=1e-5)
    assert list(preds["is_anomaly"]) == list(expected[det.score_] > det.threshold_)


@pytest.fixture(scope="module")
def image_folder(workdir, test_images):
    folder = workdir / "images"
    folder.mkdir()
    for i, a in enumerate(test_images):
        Image.fromarray(a).save(folder / f"{i:02d}.png")
    return folder


def test_score_writes_heat_maps_and_loads_the_model_from_mlflow(trained, workdir, tracking_uri, image_folder):
    model_dir, run_id = trained
    r = run_cli("score", "images", "--model", model_dir, "--out", "local.csv", "--heatmaps", "maps", cwd=workdir)
    assert r.returncode == 0, r.stderr
    local = pd.read_csv(workdir / "local.csv")
    flagged = sorted(Path(p).name for p in local.loc[local["is_anomaly"].astype(bool), "path"])
    maps = sorted((workdir / "maps").iterdir())
    assert flagged and [m.name for m in maps] == [f"{f}.heatmap.png" for f in flagged]  # inside images/
    with Image.open(maps[0]) as im:  # input | reconstruction | error, and a band with score and colour bar
        assert im.size[0] > 3 * 28 * 4 and im.size[1] > 28 * 4 and im.mode == "RGB"
    r = run_cli("score", "images", "--model", f"models:/{REGISTERED}/1", "--out", "remote.csv", cwd=workdir)
    assert r.returncode == 0, r.stderr
    pd.testing.assert_frame_equal(pd.read_csv(workdir / "remote.csv"), local)


def test_load_detector_takes_run_uris_and_says_what_is_wrong(trained, tracking_uri):
    from anomalyvae.errors import ModelDirError
    from anomalyvae.tracking.mlflow_model import load_detector

    model_dir, run_id = trained
    for uri in (f"runs:/{run_id}/{LOGGED}", f"runs:/{run_id}/model"):  # the pyfunc model and the raw folder
        assert load_detector(uri, tracking_uri).threshold_ == load_detector(model_dir).threshold_
    with pytest.raises(ModelDirError, match="could not download"):
        load_detector(f"models:/{REGISTERED}/7", tracking_uri)


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def report(trained, workdir, mnist_dir):
    """`evaluate` on labelled folders, once: the report the tests below read, render and fetch from MLflow.
    When it fails, each of them errors with its output (never a skip)."""
    from anomalyvae.data.idx import read_idx

    images, labels = read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz"), read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz")
    for name, sel in (("normal", labels != 9), ("anomaly", labels == 9)):
        (workdir / "eval" / name).mkdir(parents=True)
        for i, a in enumerate(images[sel][:150]):
            Image.fromarray(a).save(workdir / "eval" / name / f"{i}.png")
    r = run_cli("evaluate", "--model", trained[0], "--normal-dir", "eval/normal", "--anomaly-dir", "eval/anomaly",
                "--out", "evaluation", cwd=workdir)
    assert r.returncode == 0, r.stderr
    return workdir / "evaluation" / "report.html"


def test_evaluate_writes_a_self_contained_html_report_logged_to_mlflow(report, tracking_uri):
    import mlflow

    page = report.read_text()
    for words in ("ROC", "precision-recall", "histogram", "Per class", "most anomalous", "threshold", "FPR on test normals"):
        assert words in page
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing outside the file
    pngs = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(pngs) == 3 + 16  # roc, pr, histogram + the 16 most anomalous
    for b in pngs:
        Image.open(io.BytesIO(base64.b64decode(b))).verify()
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    run = client.search_runs([client.get_experiment_by_name("anomalyvae").experiment_id],
                             "tags.`anomalyvae.job` = 'evaluate'")[0]
    assert "evaluation/report.html" in {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert run.data.metrics["auroc"] > 0


def test_the_report_renders_in_headless_chromium(report, workdir):
    chromium = _chromium()
    if chromium is None:
        pytest.skip(NO_BROWSER)
    shot = workdir / "report.png"
    r = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                        "--hide-scrollbars", "--window-size=1200,2400", f"--screenshot={shot}", report.as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and shot.is_file(), r.stderr[-2000:]
    with Image.open(shot) as im:
        rgb = np.asarray(im.convert("RGB"))
    assert rgb.shape[:2] == (2400, 1200)
    assert (rgb.std(axis=2) > 40).mean() > 0.005  # coloured pixels: plots and heat maps were drawn
    assert (rgb.min(axis=2) < 100).mean() > 0.02  # dark pixels: text and images, not a blank page


def test_mlflow_ui_on_loopback_shows_both_runs_their_metrics_and_the_report(report, workdir, tracking_uri):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(workdir / "ui.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri,
                             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"], cwd=workdir, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # no job workers
                                 "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]})

    def get(path, body=None):
        req = urllib.request.Request(base + path, data=json.dumps(body).encode() if body else None,
                                     headers={"Content-Type": "application/json"})
        return urllib.request.urlopen(req, timeout=30).read()

    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (workdir / "ui.log").read_text()[-2000:]
            try:
                get("/health")
                break
            except OSError:
                assert time.monotonic() < deadline, "mlflow ui did not answer within 90 s"
                time.sleep(0.5)
        assert b"<html" in get("/").lower()  # the UI's page itself
        exp = json.loads(get("/api/2.0/mlflow/experiments/get-by-name?experiment_name=anomalyvae"))["experiment"]
        runs = json.loads(get("/api/2.0/mlflow/runs/search", {"experiment_ids": [exp["experiment_id"]]}))["runs"]
        jobs = {t["value"] for r in runs for t in r["data"].get("tags", []) if t["key"] == "anomalyvae.job"}
        assert {"train", "evaluate"} <= jobs
        ev = next(r for r in runs if {"key": "anomalyvae.job", "value": "evaluate"} in r["data"]["tags"])
        assert "auroc" in {m["key"] for m in ev["data"]["metrics"]}
        page = get(f"/get-artifact?path=evaluation/report.html&run_uuid={ev['info']['run_id']}")
        assert b"most anomalous" in page
    finally:
        stop_server(proc, log)


def test_a_failure_while_logging_the_model_only_warns(tmp_path):
    from anomalyvae.tracking.runs import Tracker

    warnings = []
    t = Tracker("t", warn=warnings.append)  # as inside a run: enabled
    assert t.log_model(tmp_path / "no-such-model") is None
    assert warnings and "could not log the MLflow model" in warnings[0]
    assert t.enabled  # unlike other failures, tracking stays on: the run still gets its metrics and status


def test_evaluate_takes_an_mlflow_model_uri_and_says_which_model_it_used(trained, workdir, tracking_uri, report):
    r = run_cli("evaluate", "--model", f"models:/{REGISTERED}/1", "--normal-dir", "eval/normal", "--anomaly-dir",
                "eval/anomaly", "--out", "evaluation-uri", "--no-tracking", cwd=workdir,
                env={"MLFLOW_TRACKING_URI": tracking_uri})
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"model models:/{REGISTERED}/1: conv VAE on mnist, normal classes 0-8, saved ")
    local = json.loads((workdir / "evaluation" / "metrics.json").read_text())
    remote = json.loads((workdir / "evaluation-uri" / "metrics.json").read_text())
    assert remote["auroc"] == local["auroc"] and remote["threshold"] == local["threshold"]
