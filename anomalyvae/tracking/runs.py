"""MLflow runs that can fail without taking the work with them: the first error is reported once, then off.

The experiment is made a model-training one (MLflow's `mlflow.experimentKind` tag) with AUROC as its primary
metric, and runs link to their datasets and logged model, so `mlflow ui` shows runs, data and model metrics.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import lineage


# The runs table's columns that anomalyvae's addresses open (MLflow's shared view state: an experiment tag
# `mlflow.sharedViewState.<key>` holding the page's state as JSON, opened by `?viewStateShareKey=<key>`): each
# run's AUROC next to its name (a narrow window still shows it), then its datasets, logged model and detail tag,
# without choosing columns. Column ids are MLflow's canonical sort keys, `<type>.`<name>``.
SHARE_KEY = "anomalyvae"
TABLE_COLUMNS = ("metrics.`auroc`", "attributes.`Dataset`", "attributes.`Models`", "tags.`anomalyvae.detail`")
VIEW_STATE = json.dumps({"selectedColumns": list(TABLE_COLUMNS),
                         "columnOrder": ["attributes.`Run Name`", *TABLE_COLUMNS], "columnWidths": {}})
VIEW_STATE_TAG = f"mlflow.sharedViewState.{SHARE_KEY}"

# MLflow's own tags: the experiment's kind and primary metric, the description (markdown) of a run or experiment.
EXPERIMENT_TAGS = {
    "mlflow.experimentKind": "custom_model_development",
    "mlflow.experiment.primaryMetric.name": "auroc",
    "mlflow.experiment.primaryMetric.greaterIsBetter": "true",
    "mlflow.note.content": "Anomaly detectors from anomalyvae. `train ...` runs train one model each (datasets as "
                           "inputs, the model named by what it learned, e.g. `mnist-normal-0-8-conv`; the tag "
                           "`anomalyvae.detail` adds architecture, limit, seed and model folder); `evaluate ...` "
                           "runs measure one on a labelled "
                           "test set (AUROC, AUPRC, F1 also logged on the model, per test set); benchmark runs hold "
                           "one model each with flat params and metrics, for the compare view.",
    VIEW_STATE_TAG: VIEW_STATE,
}
NOTE = "mlflow.note.content"
LOCAL_UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves a local store by default
# MLflow 3.17's UI picks its GenAI or "Model training" view from a switch the browser remembers (default GenAI),
# not from the experiment's kind; a link that names the view opens the runs table in a fresh browser too.
VIEW = "?workflowType=machine_learning"
# an experiment's own address (its runs table, '#/experiments/ID/runs') also names the shared view state above
TABLE_VIEW = f"{VIEW}&viewStateShareKey={SHARE_KEY}"


def _quiet_http_defaults() -> None:
    # MLflow retries an unreachable server for minutes by default; a training should not wait on that.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


def _store_lock(uri: str):
    """Serialise opening a sqlite store across processes: MLflow creates and migrates a new mlflow.db
    without a lock, so two trainings started together on a fresh one fail ('duplicate column name')."""
    if not uri.startswith("sqlite:"):
        return contextlib.nullcontext()
    from filelock import FileLock
    from sqlalchemy.engine import make_url

    db = make_url(uri).database
    if not db or db == ":memory:":
        return contextlib.nullcontext()
    return FileLock(f"{db}.lock", timeout=120)


class Tracker:
    """A thin guard around MLflow's fluent API; every method is a no-op once tracking has failed."""

    def __init__(self, experiment: str, tracking_uri: str | None = None, enabled: bool = True,
                 warn: Callable[[str], None] = print, register: str | None = None):
        self.experiment, self.tracking_uri, self.enabled, self.warn = experiment, tracking_uri, enabled, warn
        self.register = register  # Model Registry name for log_model; None: log without registering
        self.model_uri: str | None = None
        self.model_version: int | None = None  # its Model Registry version when registered
        self.model_id: str | None = None  # the LoggedModel that log_model created
        self.model_name: str | None = None  # its name, by what it learned: runs:/<run_id>/<model_name>
        self.run_id: str | None = None
        self.run_name: str | None = None
        self.experiment_id: str | None = None
        self.error: str | None = None
        self._mlflow = None

    def _call(self, what: str, fn: Callable[..., Any], *args, **kwargs) -> Any:
        if not self.enabled:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # any tracking failure: keep working, say so once
            self.enabled = False
            self.error = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
            self.warn(f"MLflow tracking failed while {what} ({self.error}); continuing without tracking. "
                      "The model directory is unaffected.")
            self._abandon_run()
            return None

    def _abandon_run(self) -> None:
        """Close a run that tracking gave up on, FAILED where the store still answers; never leave it active
        in this process, where the next start_run would refuse to begin (or the exit hook call it FINISHED)."""
        if self._mlflow is not None and self._mlflow.active_run() is not None:
            try:
                self._mlflow.end_run(status="FAILED")  # pops the run locally even when the server is gone
            except Exception:
                pass

    def start(self, run_name: str, tags: dict[str, str] | None = None, run_id: str | None = None,
              description: str | None = None) -> str | None:
        def go():
            _quiet_http_defaults()
            import mlflow

            self._mlflow = mlflow
            if self.tracking_uri:
                mlflow.set_tracking_uri(self.tracking_uri)
            with _store_lock(mlflow.get_tracking_uri()):
                self.experiment_id = _training_experiment(mlflow, self.experiment)
                mlflow.set_experiment(experiment_id=self.experiment_id)
                run = mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name, tags=tags,
                                       description=None if run_id else description)
            return run.info.run_id

        self.run_name = run_name
        self.run_id = self._call("starting a run", go)
        if self.run_id is None:
            self.enabled = False
        return self.run_id

    @property
    def uri(self) -> str | None:
        return self._mlflow.get_tracking_uri() if self._mlflow is not None else None

    def log_params(self, params: dict[str, Any]) -> None:
        self._call("logging params", lambda: self._mlflow.log_params({k: str(v) for k, v in params.items()}))

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        clean = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        self._call("logging metrics", lambda: self._mlflow.log_metrics(clean, step=step))

    def set_tags(self, tags: dict[str, Any]) -> None:
        self._call("setting tags", lambda: self._mlflow.set_tags({k: str(v) for k, v in tags.items()}))

    def attempt(self, what: str, fn: Callable[[], Any]) -> Any:
        """Run `fn` (work that only tracking needs) under the same guard as MLflow's calls."""
        return self._call(what, fn)

    def describe(self, text: str) -> None:
        """The run's description (markdown, links included), shown at the top of its page."""
        self._call("describing the run", lambda: self._mlflow.set_tag(NOTE, text))

    def rename(self, name: str) -> None:
        self.run_name = name
        self._call("naming the run", lambda: self._mlflow.set_tag("mlflow.runName", name))

    def log_inputs(self, datasets: list, model_id: str | None = None) -> None:
        """Datasets (lineage.DataRef) as the run's inputs, each with its role; a LoggedModel the run used."""
        def go():
            from mlflow.entities import DatasetInput, InputTag, LoggedModelInput
            from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

            inputs = [DatasetInput(d.entity(), [InputTag(MLFLOW_DATASET_CONTEXT, d.context)]) for d in datasets]
            models = [LoggedModelInput(model_id)] if model_id else None
            self._mlflow.MlflowClient().log_inputs(self.run_id, datasets=inputs, models=models)

        self._call("logging the datasets", go)

    def log_model_metrics(self, metrics: dict[str, float], dataset, model_id: str | None = None) -> None:
        """Metrics of a LoggedModel measured on `dataset` (a lineage.DataRef): the model's page and the models
        table show them per dataset. Without a model they are still run metrics tied to the dataset."""
        clean = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        self._call("logging model metrics", lambda: self._mlflow.log_metrics(
            clean, model_id=model_id or self.model_id, dataset=dataset.entity()))

    def log_images(self, images: dict[str, str | Path]) -> None:
        """PNG files as MLflow images (key -> file): the run page and the compare view show them."""
        def go():
            from PIL import Image

            for key, path in images.items():
                with Image.open(path) as im:
                    self._mlflow.log_image(im.convert("RGB"), key=key)

        self._call("logging images", go)

    def lookup_run(self, run_id: str) -> tuple[str, str | None] | None:
        """(experiment id, id of its logged model or None) of a run in this store; None where it is not there
        (a model trained without tracking or against another store): that is no tracking failure."""
        if not self.enabled:
            return None
        try:
            run = self._mlflow.MlflowClient().get_run(run_id)
        except Exception:
            return None
        outputs = run.outputs.model_outputs if run.outputs else []
        return run.info.experiment_id, (outputs[-1].model_id if outputs else None)

    def link(self, experiment_id: str | None = None, run_id: str | None = None, model_id: str | None = None,
             page: str = "", base: str = "") -> str:
        """A UI address: '#/experiments/1/runs/ID?...' (relative, for descriptions), or absolute with `base`;
        `page` is a run's tab, e.g. 'artifacts/evaluation/report.html'. Every address names the model-training
        view; the experiment's own (its runs table) also names the shared view with the AUROC column."""
        path = f"#/experiments/{experiment_id or self.experiment_id}"
        if not (run_id or model_id or page):
            path += "/runs"  # the runs tab: the bare experiment route redirects there and drops the shared view
        if run_id:
            path += f"/runs/{run_id}"
        if model_id:
            path += f"/models/{model_id}"
        if page:
            path += f"/{page}"
        query = VIEW if run_id or model_id or page else TABLE_VIEW
        return f"{base.rstrip('/')}/{path}{query}" if base else f"{path}{query}"

    def ui_url(self, run_id: str | None = None) -> str | None:
        """Where a person opens this run (or, without `run_id`, the experiment's runs table): the tracking
        server itself, or `mlflow ui`'s default address."""
        if self.experiment_id is None or self._mlflow is None:
            return None
        uri = self.uri or ""
        return self.link(run_id=run_id, base=uri if uri.startswith(("http://", "https://")) else LOCAL_UI)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        path = Path(path)
        fn = self._mlflow and (self._mlflow.log_artifacts if path.is_dir() else self._mlflow.log_artifact)
        self._call(f"uploading {path}", lambda: fn(str(path), artifact_path))

    def log_model(self, model_dir: str | Path, example: Any = None) -> str | None:
        """Log the model directory as an MLflow pyfunc model (registered when `register` is set).

        A failure here warns and leaves the rest of the run's tracking on: the run still gets its status.
        """
        if not self.enabled:
            return None
        try:
            from .mlflow_model import log_model

            info = log_model(model_dir, example=example, registered_model_name=self.register)
            self.model_uri, self.model_version = info.model_uri, info.registered_model_version
            self.model_id, self.model_name = info.model_id, info.name
        except Exception as e:
            first = str(e).splitlines()[0][:200] if str(e) else ""
            self.warn(f"could not log the MLflow model ({type(e).__name__}: {first}); the model directory "
                      f"{model_dir} is unaffected")
        return self.model_uri

    def end(self, status: str = "FINISHED") -> None:
        self._call("ending the run", lambda: self._mlflow.end_run(status=status))


def _training_experiment(mlflow, name: str) -> str:
    """The experiment's id, created as a model-training experiment; one made before (by an older anomalyvae or
    by hand) gets the tags it lacks, and keeps any it has, except the view state under anomalyvae's own share
    key, which follows this version's columns."""
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(name)
    if exp is None:
        try:
            return client.create_experiment(name, tags=EXPERIMENT_TAGS)
        except Exception:  # another process created it first (a server store, which _store_lock cannot cover)
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
    for key, value in EXPERIMENT_TAGS.items():
        if key not in exp.tags or (key == VIEW_STATE_TAG and exp.tags[key] != value):
            client.set_experiment_tag(exp.experiment_id, key, value)
    return exp.experiment_id


# the metrics that go on the logged model's page and into the models table, per evaluation set
MODEL_METRICS = ("auroc", "auprc", "f1", "precision", "recall", "fpr", "pixel_auroc", "pixel_aupro")  # pixel: with masks
# what an evaluate run repeats of its model's config: enough to sort and compare evaluations by what was swept,
# few enough that MLflow's image cards (which list every param above the image) keep room for the figure
EVALUATE_PARAMS = ("dataset", "normal", "arch", "latent_dim", "seed", "score", "epochs", "limit")
# the evaluation's figures as MLflow images, grouped under "figures/" on the run's Model metrics tab
FIGURES = {"roc": "roc", "pr": "precision_recall", "histogram": "histogram", "reconstructions": "most_anomalous"}


class EvaluateRun:
    """The evaluate job's MLflow run: open while the evaluation works, linked to the model, its training run and
    the test set. Like every tracking step it can fail without failing the evaluation."""

    def __init__(self, tracker: Tracker | None, det, test, y_true, model_dir: Path | None,
                 origin: lineage.TestOrigin | None = None):
        cfg = det.config_
        self.t = tracker if tracker is not None else Tracker(cfg.experiment, enabled=False)
        self.cfg, self.det = cfg, det
        self.data = self.train_link = self.model_link = self.model_id = None
        normal = det.info_.get("normal_classes") or []
        origin = origin or lineage.test_origin(cfg, normal)
        self.anomaly, self.origin = origin.anomaly, origin
        train_run = det.info_.get("mlflow_run_id")
        self.t.start(run_name=lineage.evaluate_run_name(cfg),
                     tags={"anomalyvae.job": "evaluate", "anomalyvae.model_dir": str(model_dir),
                           "anomalyvae.train_run_id": train_run or "",
                           lineage.DETAIL: lineage.evaluate_detail(cfg, self.anomaly)})

        def inputs():
            self.data = lineage.test_input(test, y_true, normal, origin)
            found = self.t.lookup_run(train_run) if train_run else None
            if found:
                self.model_id = found[1]
                self.train_link = self.t.link(found[0], run_id=train_run)
                self.model_link = self.model_id and self.t.link(found[0], model_id=self.model_id)
            config = cfg.to_dict()
            config["normal"] = lineage.logged_normal(cfg)
            self.t.log_params({**{k: config[k] for k in EVALUATE_PARAMS}, "threshold": det.threshold_,
                               "test_set": self.data.name})
            self.t.log_inputs([self.data], model_id=self.model_id)

        self.t.attempt("describing the test set", inputs)

    def finish(self, result: dict[str, Any], out: Path, artifacts: list[Path]) -> None:
        t = self.t

        def log():
            flat = {k: v for k, v in result.items() if isinstance(v, (int, float)) and k not in MODEL_METRICS}
            flat.update({f"{k}_{m}": v for k, d in result["scores"].items() for m, v in d.items()})
            flat.update({f"{m}_class_{lineage.class_key(self.origin, r)}": r[m] for r in result["per_class"]
                         for m in ("auroc", "pixel_auroc", "pixel_aupro") if m in r})
            t.log_model_metrics({k: result[k] for k in MODEL_METRICS if k in result}, self.data, self.model_id)
            t.log_metrics(flat)
            t.log_images({f"figures/{FIGURES.get(p.stem, p.stem)}": p for p in artifacts if p.suffix == ".png"})
            t.log_artifact(out, "evaluation")
            report = t.link(run_id=t.run_id, page="artifacts/evaluation/report.html")
            t.describe(lineage.evaluate_description(self.cfg, self.det, result, self.data, self.anomaly,
                                                    self.train_link, self.model_link, report))

        t.attempt("logging the evaluation", log)
        t.end("FINISHED")

    def end(self, status: str) -> None:
        self.t.end(status)
