"""MLflow runs that can fail without taking the work with them: the first error is reported once, then off."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


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
        self.run_id: str | None = None
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

    def start(self, run_name: str, tags: dict[str, str] | None = None, run_id: str | None = None) -> str | None:
        def go():
            _quiet_http_defaults()
            import mlflow

            self._mlflow = mlflow
            if self.tracking_uri:
                mlflow.set_tracking_uri(self.tracking_uri)
            with _store_lock(mlflow.get_tracking_uri()):
                mlflow.set_experiment(self.experiment)
                run = mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name, tags=tags)
            return run.info.run_id

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
        except Exception as e:
            first = str(e).splitlines()[0][:200] if str(e) else ""
            self.warn(f"could not log the MLflow model ({type(e).__name__}: {first}); the model directory "
                      f"{model_dir} is unaffected")
        return self.model_uri

    def end(self, status: str = "FINISHED") -> None:
        self._call("ending the run", lambda: self._mlflow.end_run(status=status))
