"""What a person sees in `mlflow ui` after `train` and `evaluate`: a model-training experiment, runs named for what
they did, their datasets, metric histories, the logged model with its AUROC per test set, figures, and links
between them; checked in the store and in a real browser (headless Chromium on a loopback `mlflow ui`).
One small model is trained and evaluated once, through the CLI, into the default store of a fresh folder."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import NO_BROWSER, free_port, run_cli, stop_server

PRINTED_UI = "http://127.0.0.1:5000"  # the address train/evaluate print for a local store (`mlflow ui`'s default)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("dashboard")


@pytest.fixture(scope="module")
def client(workdir):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")


@pytest.fixture(scope="module")
def trained(workdir, mnist_dir):
    # the unsupervised detector (--no-labels): the runs' lineage is what these tests read; labelled models'
    # names are test_labels' and test_ecosystem's
    r = run_cli("train", "--normal", "0-8", "--limit", "600", "--epochs", "2", "--arch", "mlp", "--no-labels",
                "--data-dir", mnist_dir, "--out", "models/m", cwd=workdir, env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    return r


@pytest.fixture(scope="module")
def evaluated(trained, workdir):
    r = run_cli("evaluate", "--model", "models/m", cwd=workdir, env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    return r, json.loads((workdir / "models" / "m" / "evaluation" / "metrics.json").read_text())


def printed_run_url(stdout: str) -> tuple[str, str]:
    """(run id, page address) from the 'MLflow run ID: URL' line the CLI prints."""
    m = re.search(r"MLflow run (\w+): (\S+)", stdout)
    assert m, stdout
    return m.group(1), m.group(2)


def printed_experiment_url(stdout: str) -> str:
    """The runs table's address from the 'All runs of experiment NAME, with their AUROC: URL' line."""
    m = re.search(r"All runs of experiment anomalyvae, with their AUROC: (\S+)", stdout)
    assert m, stdout
    return m.group(1)


# the run's config as the module's `trained` fixture gives it: names and details follow from it by lineage's rule
def trained_config():
    from anomalyvae.config import make_config

    return make_config(normal="0-8", limit=600, arch="mlp", use_labels=False)


def runs_by_job(client):
    exp = client.get_experiment_by_name("anomalyvae")
    return exp, {r.data.tags["anomalyvae.job"]: r for r in client.search_runs([exp.experiment_id])}


def model_of(client, exp):
    (model,) = client.search_logged_models([exp.experiment_id])
    return model


# -- the store: what MLflow was told ----------------------------------------------------------------------

def test_the_experiment_is_a_model_training_experiment_ranked_by_auroc(trained, client):
    tags = client.get_experiment_by_name("anomalyvae").tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    assert tags["mlflow.experiment.primaryMetric.name"] == "auroc"
    assert tags["mlflow.experiment.primaryMetric.greaterIsBetter"] == "true"
    assert "anomalyvae" in tags["mlflow.note.content"]


def test_the_experiment_shares_a_runs_table_view_with_the_auroc_column(trained, client):
    """MLflow's runs table shows no metric columns by default; the experiment holds a shared view state (the
    tag `mlflow.sharedViewState.<key>`, opened by `?viewStateShareKey=<key>`) whose columns start with AUROC."""
    from anomalyvae.tracking.runs import SHARE_KEY

    tags = client.get_experiment_by_name("anomalyvae").tags
    state = json.loads(tags[f"mlflow.sharedViewState.{SHARE_KEY}"])
    assert "metrics.`auroc`" in state["selectedColumns"] and "tags.`anomalyvae.detail`" in state["selectedColumns"]
    assert state["columnOrder"][:2] == ["attributes.`Run Name`", "metrics.`auroc`"]  # AUROC next to the name


def test_every_printed_address_names_the_model_training_view_and_the_runs_table_its_shared_view(evaluated, trained):
    from anomalyvae.tracking.runs import SHARE_KEY

    for r in (trained, evaluated[0]):
        run_id, url = printed_run_url(r.stdout)
        assert url.startswith(f"{PRINTED_UI}/#/experiments/") and f"/runs/{run_id}?" in url
        assert url.endswith("?workflowType=machine_learning"), url
        table = printed_experiment_url(r.stdout)
        assert re.fullmatch(rf"{PRINTED_UI}/#/experiments/\d+/runs\?workflowType=machine_learning"
                            rf"&viewStateShareKey={SHARE_KEY}", table), table


def test_the_train_run_has_its_datasets_epoch_histories_and_logged_model(trained, client, mnist_dir):
    from anomalyvae.config import make_config
    from anomalyvae.data.datasets import load_train
    from anomalyvae.tracking.lineage import digest

    exp, runs = runs_by_job(client)
    run = runs["train"]
    from anomalyvae.tracking.lineage import NAME_CHARS, train_detail, train_run_name

    # what it learned, short enough for the runs table; what tells it apart in its detail tag
    assert run.info.run_name == train_run_name(trained_config()) and len(run.info.run_name) <= NAME_CHARS
    assert run.data.tags["anomalyvae.detail"] == train_detail(trained_config(), Path("models/m"))
    assert "Trains a mlp VAE on mnist classes 0-8" in run.data.tags["mlflow.note.content"]
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"mnist-train-normal-0-8", "mnist-heldout-normal-0-8"}
    train, held = inputs["mnist-train-normal-0-8"], inputs["mnist-heldout-normal-0-8"]
    assert [t.value for t in train.tags] == ["training"] and [t.value for t in held.tags] == ["validation"]
    source = json.loads(train.dataset.source)
    assert source["uri"].endswith("train-images-idx3-ubyte.gz") and source["labels"].endswith("train-labels-idx1-ubyte.gz")
    profile = json.loads(train.dataset.profile)
    assert (profile["images"], profile["train_images"], profile["held_out_images"]) == (540, 540, 60)
    assert profile["normal_classes"] == "0-8"
    data = load_train(make_config(normal="0-8", limit=600, data_dir=str(mnist_dir)))
    assert train.dataset.digest == digest(data.train.images, data.train.labels)  # the exact images trained on
    assert held.dataset.digest == digest(data.val.images, data.val.labels)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")] == [1, 2]  # step = epoch
    model = model_of(client, exp)
    assert model.source_run_id == run.info.run_id and model.name == "mnist-normal-0-8-mlp"
    assert model.params["latent_dim"] == "20" and model.params["normal"] == "0-8"
    on_held_out = {m.key: m.dataset_name for m in model.metrics if m.run_id == run.info.run_id}
    assert on_held_out["val_fpr"] == "mnist-heldout-normal-0-8"


def test_evaluate_logs_its_metrics_on_the_model_per_test_set(evaluated, workdir, client):
    _, result = evaluated
    exp, runs = runs_by_job(client)
    run, train = runs["evaluate"], runs["train"]
    model = model_of(client, exp)
    by_key = {m.key: m for m in model.metrics if m.run_id == run.info.run_id}
    for key in ("auroc", "auprc", "f1"):
        assert by_key[key].value == pytest.approx(result[key])
        assert by_key[key].dataset_name == "mnist-test-anomaly-9"
    (test_set,) = run.inputs.dataset_inputs
    assert test_set.dataset.name == "mnist-test-anomaly-9" and [t.value for t in test_set.tags] == ["evaluation"]
    assert json.loads(test_set.dataset.profile)["anomalies"] == result["n_anomalies"] == 1009
    assert by_key["auroc"].dataset_digest == test_set.dataset.digest
    assert [m.model_id for m in client.get_run(run.info.run_id).inputs.model_inputs] == [model.model_id]
    from anomalyvae.tracking.lineage import evaluate_detail, evaluate_run_name

    assert run.info.run_name == evaluate_run_name(trained_config())  # its AUROC is a metric, the table's column
    assert run.data.metrics["auroc"] == pytest.approx(result["auroc"])
    assert run.data.tags["anomalyvae.detail"] == evaluate_detail(trained_config(), "digit 9")
    assert run.data.params["latent_dim"] == "20" and run.data.params["test_set"] == "mnist-test-anomaly-9"
    note = run.data.tags["mlflow.note.content"]
    assert f"(#/experiments/{exp.experiment_id}/runs/{train.info.run_id}?workflowType=machine_learning)" in note
    assert f"/models/{model.model_id}?" in note and "/artifacts/evaluation/report.html?" in note
    images = [a.path for a in client.list_artifacts(run.info.run_id, "images")]
    for figure in ("roc", "precision_recall", "histogram", "most_anomalous"):
        assert any(p.startswith(f"images/figures~{figure}+") for p in images), images  # MLflow's name for key figures/...
    assert "evaluation/report.html" in {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    # the run spans the evaluation: it began before the figures were drawn, not after everything was done
    started = run.info.start_time / 1000
    assert started <= (workdir / "models" / "m" / "evaluation" / "roc.png").stat().st_mtime <= run.info.end_time / 1000


def test_an_experiment_made_before_gets_the_model_training_tags_and_keeps_its_own(tmp_path):
    import mlflow

    from anomalyvae.tracking.runs import Tracker

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    client.create_experiment("old", tags={"mlflow.note.content": "ours, by hand"})
    t = Tracker("old", uri)
    t.start("run")
    t.end()
    tags = client.get_experiment_by_name("old").tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    assert tags["mlflow.note.content"] == "ours, by hand"


def test_evaluating_an_untracked_model_still_logs_its_metrics_on_the_test_set(tmp_path, tiny_detector):
    import mlflow

    from anomalyvae.tracking.lineage import test_origin
    from anomalyvae.pipeline.images import evaluate_detector
    from anomalyvae.tracking.runs import Tracker

    test = _random_test_split()
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    warnings = []
    res = evaluate_detector(tiny_detector, tmp_path / "ev", test=test, tracker=Tracker("e", uri, warn=warnings.append),
                            origin=test_origin(tiny_detector.config_, [0], "good", "bad"))
    assert not warnings
    client = mlflow.MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("e").experiment_id])
    assert run.info.status == "FINISHED" and run.inputs.dataset_inputs[0].dataset.name == "folders-good-vs-bad"
    assert run.data.metrics["auroc"] == pytest.approx(res["auroc"])
    assert run.data.tags["anomalyvae.detail"].endswith(" on bad")


def test_names_say_what_the_anomaly_is_and_digests_see_one_pixel():
    import torch

    from anomalyvae.config import make_config
    from anomalyvae.tracking.lineage import anomaly_words, digest, evaluate_detail, kind, test_origin, train_detail

    mnist, fashion = make_config(normal="0-8"), make_config(dataset="fashion-mnist", normal="0-8")
    assert train_detail(mnist) == f"mnist normal 0-8 {kind(mnist)}"
    assert anomaly_words(mnist, list(range(9))) == "digit 9"
    assert anomaly_words(make_config(normal="3"), [3]) == "digits 0-2,4-9"
    assert anomaly_words(fashion, list(range(9))) == "Ankle boot"
    assert test_origin(mnist, [0], "ok", "scratched").anomaly == "scratched"
    assert test_origin(mnist, list(range(10)), anomalies="fashion-mnist").name == "mnist-normal-0-9-vs-fashion-mnist"
    mvtec_cfg = make_config(dataset="mvtec", data_dir="/x/bottle")
    mvtec = test_origin(mvtec_cfg, [])
    assert (mvtec.name, mvtec.anomaly) == ("mvtec-bottle-test", "defects")
    from anomalyvae.tracking.lineage import train_description  # an MVTec root has no classes to name
    said = train_description(mvtec_cfg, 270, 30, Path("m"))
    assert "the MVTec-AD folder `/x/bottle` (its train/good images)" in said and "classes" not in said
    assert evaluate_detail(mnist, "digit 9") == f"mnist normal 0-8 {kind(mnist)} on digit 9"
    a = torch.zeros((3, 1, 4, 4), dtype=torch.uint8)
    b = a.clone()
    b[2, 0, 3, 3] = 1
    assert digest(a) != digest(b) and digest(a) == digest(a.clone()) and len(digest(a)) == 8


def _random_test_split():
    import numpy as np

    from anomalyvae.data.layouts import TestSet

    images = np.random.default_rng(1).integers(0, 256, (40, 1, 28, 28), dtype=np.uint8)
    labels = np.array([0, 1] * 20)
    return TestSet(images, labels, ["good", "bad"], labels == 1)


def test_evaluate_with_the_tracking_server_down_warns_once_and_writes_everything(tmp_path, tiny_detector):
    from anomalyvae.pipeline.images import evaluate_detector
    from anomalyvae.tracking.runs import Tracker

    warnings = []
    res = evaluate_detector(tiny_detector, tmp_path / "ev", test=_random_test_split(),
                            tracker=Tracker("e", f"http://127.0.0.1:{free_port()}", warn=warnings.append))
    assert len(warnings) == 1 and "continuing without tracking" in warnings[0]
    assert (tmp_path / "ev" / "report.html").is_file() and json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert 0 <= res["auroc"] <= 1


def test_an_evaluation_that_breaks_ends_its_run_failed(tmp_path, tiny_detector, monkeypatch):
    import mlflow

    from anomalyvae.evaluation import plots
    from anomalyvae.pipeline.images import evaluate_detector
    from anomalyvae.tracking.runs import Tracker

    def broken(*args, **kwargs):
        raise RuntimeError("no figure today")

    monkeypatch.setattr(plots, "curves", broken)
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    with pytest.raises(RuntimeError, match="no figure today"):
        evaluate_detector(tiny_detector, tmp_path / "ev", test=_random_test_split(), tracker=Tracker("e", uri))
    client = mlflow.MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("e").experiment_id])
    assert run.info.status == "FAILED" and mlflow.active_run() is None


def test_the_benchmark_logs_one_flat_run_per_model(tmp_path, tiny_detector):
    import mlflow

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import detection

    from anomalyvae.tracking.runs import Tracker

    uri = f"sqlite:///{tmp_path / 'b.db'}"
    tracker = Tracker("bench", uri)
    tracker.start("anomalyvae latent_dim=4 mnist loo class 9 seed 0")
    res = {"auroc": 0.9, "auprc": 0.8, "f1": 0.7, "fpr": 0.05, "n_test": 100, "n_anomalies": 10,
           "scores": {"recon": {"auroc": 0.6, "auprc": 0.5}, "combined": {"auroc": 0.9, "auprc": 0.8}}}
    detection.log_run(tracker, tiny_detector, res, "loo", 9, "anomalyvae", 12.0)
    client = mlflow.MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("bench").experiment_id])
    assert run.data.params["protocol"] == "loo" and run.data.params["class"] == "9"
    assert run.data.params["seed"] == "0" and run.data.params["latent_dim"] == "4"
    assert run.data.metrics["auroc"] == 0.9 and run.data.metrics["auroc_recon"] == 0.6
    assert len(client.get_metric_history(run.info.run_id, "val_loss")) == len(tiny_detector.history_)
    assert run.info.run_name == "anomalyvae latent_dim=4 mnist loo class 9 seed 0: AUROC 0.900"
    assert run.info.status == "FINISHED"


def test_an_mvtec_evaluation_puts_pixel_metrics_on_the_model_and_names_defects_not_positions(tmp_path):
    """MVTec-AD through the CLI: the config's `normal` (default '0-8') means nothing there, and the defect
    folders' labels are only their sorted positions, so neither may reach MLflow as if it did."""
    import mlflow

    from anomalyvae.data import synthetic

    root = synthetic.generate(tmp_path / "surface", n_train=40, n_test_good=6, n_per_defect=3, size=48, seed=1)
    env = {"OMP_NUM_THREADS": "1"}
    r = run_cli("train", "--dataset", "mvtec", "--data-dir", root, "--image-size", "32", "--epochs", "1",
                "--batch-size", "16", "--out", "models/s", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    r = run_cli("evaluate", "--model", "models/s", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert "MLflow tracking failed" not in r.stdout + r.stderr and "could not log" not in r.stdout + r.stderr
    result = json.loads((tmp_path / "models" / "s" / "evaluation" / "metrics.json").read_text())
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp, runs = runs_by_job(client)
    run, train = runs["evaluate"], runs["train"]
    assert run.data.params["normal"] == train.data.params["normal"] == "train/good"
    assert "MVTec-AD folder" in train.data.tags["mlflow.note.content"]
    (test_set,) = run.inputs.dataset_inputs
    assert test_set.dataset.name == "mvtec-surface-test"
    assert json.loads(test_set.dataset.source)["uri"] == (root / "test").resolve().as_uri()
    model = model_of(client, exp)
    assert model.params["normal"] == "train/good"
    on_test = {m.key: m for m in model.metrics if m.run_id == run.info.run_id}
    for key in ("auroc", "auprc", "f1", "pixel_auroc", "pixel_aupro"):
        assert on_test[key].value == pytest.approx(result[key]) and on_test[key].dataset_name == "mvtec-surface-test"
    per_class = {k for k in run.data.metrics if "_class_" in k}
    assert per_class == {f"{m}_class_{d}" for m in ("auroc", "pixel_auroc", "pixel_aupro") for d in synthetic.DEFECTS}
    row = next(r for r in result["per_class"] if r["class"] == "scratch")
    assert run.data.metrics["pixel_aupro_class_scratch"] == pytest.approx(row["pixel_aupro"])


# -- the browser: what a person sees ----------------------------------------------------------------------

def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def ui(evaluated, workdir):
    """`mlflow ui` on loopback over the folder's mlflow.db, as a user starts it there; yields its address."""
    if _chromium() is None:
        pytest.skip(NO_BROWSER)
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # no job workers for a read-only look
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    env.pop("MLFLOW_TRACKING_URI", None)
    log = open(workdir / "ui.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "1"], cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (workdir / "ui.log").read_text()[-2000:]
            try:
                urllib.request.urlopen(base + "/health", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, "mlflow ui did not answer within 90 s"
                time.sleep(0.5)
        yield base
    finally:
        stop_server(proc, log)


class _Page(HTMLParser):
    """The visible text, the title and the link targets of a rendered page."""

    def __init__(self):
        super().__init__()
        self.words, self.links, self.title, self._skip, self._in_title = [], [], "", 0, False

    def handle_starttag(self, tag, attrs):
        self._skip += tag in ("script", "style")
        self._in_title = tag == "title" and not self.title  # the document's, not an SVG icon's
        self.links += [v for k, v in attrs if k == "href" and v]

    def handle_endtag(self, tag):
        self._skip -= tag in ("script", "style") and self._skip > 0
        self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        elif not self._skip:
            self.words.append(data.strip())

    @property
    def text(self) -> str:
        return " ".join(w for w in self.words if w)


def render(url: str, profile: Path) -> _Page:
    """The page as Chromium shows it after its scripts ran, in a fresh profile (the UI keeps its GenAI/Model
    training switch in localStorage, so a used profile could hide what a new user sees)."""
    r = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                        f"--user-data-dir={profile}", "--virtual-time-budget=30000", "--dump-dom", url],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0 and "<html" in r.stdout.lower(), r.stderr[-2000:]
    page = _Page()
    page.feed(r.stdout)
    return page


GENAI_VIEW = ("Token Usage", "Detect Issues", "Agent versions", "Judges")  # MLflow's GenAI overview and its nav


def test_the_printed_experiment_address_opens_the_runs_table_with_datasets_and_auroc(ui, evaluated, client, tmp_path):
    exp, runs = runs_by_job(client)
    url = printed_experiment_url(evaluated[0].stdout)
    assert url.startswith(PRINTED_UI)
    page = render(url.replace(PRINTED_UI, ui), tmp_path / "p")
    assert page.title.startswith("Runs"), page.title  # not "Overview": the GenAI landing tab
    assert not [w for w in GENAI_VIEW if w in page.text], page.text[:3000]
    assert "You're viewing a shared view" in page.text, page.text[:3000]  # the experiment's view state applied
    # the header row: the name, then AUROC (before the datasets), the detail tag among the columns
    assert re.search(r"Run Name Created (Metrics )?.*auroc", page.text), page.text[:3000]
    assert "anomalyvae.detail" in page.text, page.text[:3000]
    for run in runs.values():
        assert run.info.run_name in page.text  # whole: short names are not cut
    auroc = runs["evaluate"].data.metrics["auroc"]
    assert str(auroc)[:6] in page.text, page.text[:3000]  # the evaluate run's AUROC in its row
    assert "2 matching runs" in page.text
    train_digest = next(d.dataset.digest for d in runs["train"].inputs.dataset_inputs if d.dataset.name.startswith("mnist-train"))
    assert f"mnist-train-normal-0-8 ({train_digest})" in page.text  # the runs table's Dataset column


def test_the_printed_train_run_address_shows_its_datasets_description_and_model(ui, trained, client, tmp_path):
    run_id, url = printed_run_url(trained.stdout)
    name = runs_by_job(client)[1]["train"].info.run_name
    page = render(url.replace(PRINTED_UI, ui), tmp_path / "p")
    assert page.title.startswith(f"Run {run_id}"), page.title
    assert f"{name} Overview Model metrics" in page.text, page.text[:3000]  # the page heading
    assert not [w for w in GENAI_VIEW if w in page.text], page.text[:3000]
    assert re.search(r"Datasets mnist-train-normal-0-8 \(\w{8}\) training", page.text, re.I), page.text[:3000]
    assert "Trains a mlp VAE on mnist classes 0-8: 540 normal images, 60 more held out" in page.text
    assert "Logged models" in page.text and "mnist-normal-0-8-mlp" in page.text


def test_the_evaluate_run_and_the_model_page_show_the_auroc_on_the_test_set(ui, evaluated, client, tmp_path):
    r, result = evaluated
    exp, runs = runs_by_job(client)
    run_id, url = printed_run_url(r.stdout)
    assert run_id == runs["evaluate"].info.run_id
    page = render(url.replace(PRINTED_UI, ui), tmp_path / "run")
    heading = f"{runs['evaluate'].info.run_name} Overview Model metrics"
    assert heading in page.text, page.text[:3000]
    assert not [w for w in GENAI_VIEW if w in page.text], page.text[:3000]
    assert re.search(r"Datasets mnist-test-anomaly-9 \(\w{8}\) evaluation", page.text, re.I), page.text[:3000]
    train_id = runs["train"].info.run_id
    assert any(f"/runs/{train_id}" in link for link in page.links), page.links  # the link to the training run
    model = model_of(client, exp)
    page = render(f"{ui}/#/experiments/{exp.experiment_id}/models/{model.model_id}?workflowType=machine_learning",
                  tmp_path / "model")
    # the model's metrics table: metric, the dataset it was measured on, the run that measured it, the value
    row = re.search(rf"auroc mnist-test-anomaly-9 \(#?\w+\) {re.escape(runs['evaluate'].info.run_name)} ([\d.]+)",
                    page.text)
    assert row, page.text[:4000]
    assert float(row.group(1)) == pytest.approx(result["auroc"])
