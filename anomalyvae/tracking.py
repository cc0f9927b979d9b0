"""MLflow runs that can fail without taking the work with them: the first error is reported once, then off."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any


def _quiet_http_defaults() -> None:
    # MLflow retries an unreachable server for minutes by default; a training should not wait on that.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


class Tracker:
    """A thin guard around MLflow's fluent API; every method is a no-op once tracking has failed.

    All MLflow work runs, in call order, on one background thread: importing MLflow and starting a run took
    2.5 s here, which used to delay the first training batch and now overlaps the first epoch. MLflow keeps
    the active run per thread, so every call goes to that same thread. `end()` waits for all of it.
    """

    def __init__(self, experiment: str, tracking_uri: str | None = None, enabled: bool = True,
                 warn: Callable[[str], None] = print):
        self.experiment, self.tracking_uri, self.enabled, self.warn = experiment, tracking_uri, enabled, warn
        self.error: str | None = None
        self._mlflow = None
        self._worker: ThreadPoolExecutor | None = None
        self._started: Future | None = None

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
            return None

    def _submit(self, what: str, fn: Callable[[], Any]) -> Future | None:
        if not self.enabled:
            return None
        if self._worker is None:
            self._worker = ThreadPoolExecutor(1, thread_name_prefix="anomalyvae-mlflow")
        return self._worker.submit(self._call, what, fn)

    def start(self, run_name: str, tags: dict[str, str] | None = None, run_id: str | None = None) -> None:
        """Start (or resume) a run in the background; `run_id` waits for it."""
        def go():
            _quiet_http_defaults()
            import mlflow

            self._mlflow = mlflow
            if self.tracking_uri:
                mlflow.set_tracking_uri(self.tracking_uri)
            mlflow.set_experiment(self.experiment)
            run = mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name, tags=tags)
            return run.info.run_id

        def started():
            rid = self._call("starting a run", go)
            if rid is None:
                self.enabled = False
            return rid

        if self.enabled:
            if self._worker is None:
                self._worker = ThreadPoolExecutor(1, thread_name_prefix="anomalyvae-mlflow")
            self._started = self._worker.submit(started)

    @property
    def run_id(self) -> str | None:
        """The run's id once it has started (waits for the start); None when tracking is off or failed."""
        return self._started.result() if self._started is not None else None

    @property
    def uri(self) -> str | None:
        self.run_id  # noqa: B018 -- wait for the start, which imports MLflow
        return self._mlflow.get_tracking_uri() if self._mlflow is not None else None

    def log_params(self, params: dict[str, Any]) -> None:
        self._submit("logging params", lambda: self._mlflow.log_params({k: str(v) for k, v in params.items()}))

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        clean = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        self._submit("logging metrics", lambda: self._mlflow.log_metrics(clean, step=step))

    def set_tags(self, tags: dict[str, Any]) -> None:
        self._submit("setting tags", lambda: self._mlflow.set_tags({k: str(v) for k, v in tags.items()}))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        path = Path(path)
        is_dir = path.is_dir()
        self._submit(f"uploading {path}", lambda: (self._mlflow.log_artifacts if is_dir else self._mlflow.log_artifact)(
            str(path), artifact_path))

    def end(self, status: str = "FINISHED") -> None:
        """End the run and wait until everything queued has reached MLflow."""
        self._submit("ending the run", lambda: self._mlflow.end_run(status=status))
        if self._worker is not None:
            self._worker.shutdown(wait=True)
            self._worker = None
