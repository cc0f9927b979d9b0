"""train -> calibrate -> save -> track, and evaluate: the two jobs the CLI runs, callable from Python."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import distributed, lineage, report
from .classes import format_classes, parse_classes
from .config import Config, auto_epochs
from .data import CLASS_NAMES, Split, as_nchw, load_test, load_train
from . import device
from .errors import AnomalyVAEError, DataError, TrainingDiverged, TrainingInterrupted
from .estimator import AnomalyVAE
from .images import load_folder
from .scores import available
from .resume import check as resume_check, describe_changes
from .tracking import EvaluateRun, Tracker
from .train import EpochStats, checkpoint_run_id


def default_out(cfg: Config) -> Path:
    what = Path(cfg.train_dir).name if cfg.dataset == "folder" else f"normal{format_classes(parse_classes(cfg.normal))}"
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("models") / f"{cfg.dataset}-{what.replace(',', '_')}-{cfg.arch}-{stamp}"


def train_detector(cfg: Config, out: Path | None = None, resume: bool = False, tracker: Tracker | None = None,
                   on_step: Callable | None = None, on_epoch: Callable[[EpochStats], None] | None = None,
                   log: Callable[[str], None] = print,
                   on_phase: Callable[[str], None] | None = None) -> tuple[AnomalyVAE | None, Path]:
    """Train on normal data and write a complete model directory; returns the detector and its folder.

    Tracking is off unless a `tracker` is given (the CLI passes one: it tracks by default). The model
    directory is written before anything is uploaded, so a tracking failure never loses a model.
    `log` gets warnings, `on_phase` one line as each step after training begins (calibrate, save, upload).
    Ctrl-C (a KeyboardInterrupt) saves the best model so far, then raises TrainingInterrupted, itself a
    KeyboardInterrupt; TrainingDiverged likewise keeps the best model. No signal handlers are installed.
    `resume=True` continues the checkpoint in `out`: `cfg` must agree with the configuration it was started
    with (`resume.resume_config(out)` returns it), except the settings in `resume.MAY_CHANGE`.
    Under torchrun (see `distributed`) only rank 0 tracks, calibrates and saves; other ranks return (None, out).
    """
    def say(line: str) -> None:
        if on_phase is not None:
            on_phase(line)

    out = Path(out) if out is not None else default_out(cfg)
    device.resolve(cfg.device)  # a missing GPU is reported before minutes of data loading, not after
    if resume and not out.exists():
        raise AnomalyVAEError(f"--resume needs --out pointing at the interrupted model folder; {out} does not exist")
    data = load_train(cfg)
    if data.skipped:
        log(f"skipped {len(data.skipped)} unreadable file(s) in {cfg.train_dir}, e.g. "
            f"{data.skipped[0].path}: {data.skipped[0].error}")
    if resume and distributed.enabled():
        raise AnomalyVAEError("--resume is not supported under torchrun; resume with a single process")
    if not distributed.is_main():
        tracker = None  # rank 0 logs for everyone
    if cfg.epochs is None:
        cfg = dataclasses.replace(cfg, epochs=auto_epochs(len(data.train), cfg.batch_size))
    cfg = dataclasses.replace(cfg, channels=data.train.images.shape[1])
    changes = resume_check(out, cfg) if resume else {}  # before anything is written
    if resume:
        say(f"resuming {out}" + (f" with {describe_changes(changes)}" if changes else " with its own settings"))
    tracker = tracker or Tracker(cfg.experiment, cfg.tracking_uri, enabled=False)
    run_id = checkpoint_run_id(out) if resume else None
    tracker.start(run_name=lineage.train_run_name(cfg), run_id=run_id,
                  tags={"anomalyvae.job": "train", "anomalyvae.model_dir": str(out.resolve())},
                  description=lineage.train_description(cfg, len(data.train), len(data.val), out.resolve()))
    inputs = tracker.attempt("describing the datasets", lambda: lineage.train_inputs(cfg, data.train, data.val)) or []
    if not run_id:
        tracker.log_params({**cfg.to_dict(), "n_train": len(data.train), "n_val": len(data.val)})
        tracker.log_inputs(inputs)
    if changes:  # MLflow params cannot change; the run says what the resumed part ran with
        tracker.set_tags({"anomalyvae.resumed_with": describe_changes(changes)})

    def epoch_done(s: EpochStats) -> None:
        tracker.log_metrics({k: v for k, v in asdict(s).items() if k != "epoch"}, step=s.epoch)
        if on_epoch is not None:
            on_epoch(s)

    info = {
        "normal_classes": [] if cfg.dataset == "folder" else parse_classes(cfg.normal),
        "class_names": CLASS_NAMES.get(cfg.dataset, []),
        "mlflow_run_id": tracker.run_id,
    }
    det = AnomalyVAE.from_config(cfg)
    result = det.fit_splits(cfg, data.train, data.val, out=out if distributed.is_main() else None, resume=resume,
                            on_step=on_step, on_epoch=epoch_done, run_id=tracker.run_id, info=info,
                            on_phase=say)
    if not distributed.is_main():
        return None, out
    if not result.history:
        tracker.end("KILLED" if result.stopped_by else "FAILED")
        if result.diverged:
            raise TrainingDiverged(f"{result.diverged} before any epoch completed; nothing saved. Lower --lr")
        raise TrainingInterrupted(f"stopped by {result.stopped_by} before the first epoch completed; nothing saved")
    say(f"saving the model to {out}")
    det.save(out)
    (out / "history.json").write_text(json.dumps([asdict(h) for h in result.history], indent=1))
    if tracker.enabled:
        say(f"logging the run and the model to MLflow ({tracker.uri})")
    tracker.log_artifact(out / "model.safetensors", "model")
    tracker.log_artifact(out / "model.json", "model")
    tracker.log_artifact(out / "history.json", "model")
    tracker.log_model(out, example=data.val.images[:2])  # pyfunc flavour: mlflow.pyfunc.load_model / serve
    tracker.log_metrics({"best_epoch": result.best_epoch, "train_seconds": result.seconds})
    if inputs:  # the calibration, on the model's page: measured on the held-out normal images
        tracker.log_model_metrics({"threshold": det.threshold_, "val_fpr": det.info_["val_fpr"]}, inputs[1])
    tracker.attempt("describing the run", lambda: tracker.describe(
        lineage.train_description(cfg, len(data.train), len(data.val), out.resolve()) + "\n\n"
        + lineage.train_outcome(det, tracker.model_id and tracker.link(model_id=tracker.model_id))))
    if result.stopped_by:
        tracker.end("KILLED")
        raise TrainingInterrupted(
            f"stopped by {result.stopped_by} after epoch {len(result.history)}; best model so far saved in {out} "
            f"(continue with: anomalyvae train --resume --out {out})")
    if result.diverged:
        tracker.end("FAILED")
        raise TrainingDiverged(f"{result.diverged}; kept the best model (epoch {result.best_epoch}) in {out}. Lower --lr")
    tracker.end("FINISHED")
    return det, out


def load_labelled_folders(normal_dir: str, anomaly_dir: str, size: int) -> Split:
    """A test set from two folders: label 0 = normal, 1 = anomaly."""
    parts = []
    for label, folder in ((0, normal_dir), (1, anomaly_dir)):
        arr, _, _ = load_folder(folder, size)
        parts.append(Split(as_nchw(arr), torch.full((len(arr),), label, dtype=torch.int64)))
    return Split(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]))


def evaluate_detector(det: AnomalyVAE, out: Path, test: Split | None = None, data_dir: str | None = None,
                      tracker: Tracker | None = None, model_dir: Path | None = None,
                      folders: tuple[str, str] | None = None) -> dict[str, Any]:
    """Metrics, curves and reconstructions on a labelled test set (by default the dataset's test split).

    `folders` (normal dir, anomaly dir) says where a `test` split came from, for the MLflow run's dataset input.
    """
    from . import metrics, plots  # here, not at the top: sklearn's import took 3.5 s of `train`'s start-up

    cfg = det.config_
    if test is not None:
        y_true = test.labels.numpy().astype(bool)  # folders: 1 = anomaly
        names = ["normal", "anomaly"]
    elif cfg.dataset == "folder":
        raise DataError("a folder-trained model has no test split; pass --normal-dir and --anomaly-dir")
    else:
        test = load_test(cfg.dataset, Path(data_dir) if data_dir else cfg.resolved_data_dir(), cfg.image_size)
        y_true = ~np.isin(test.labels.numpy(), det.info_["normal_classes"])
        names = CLASS_NAMES[cfg.dataset]
    if y_true.all() or not y_true.any():
        raise DataError("the test set needs both normal and anomalous images to be evaluated")
    out.mkdir(parents=True, exist_ok=True)
    run = EvaluateRun(tracker, det, test, y_true, model_dir, folders if test is not None else None)
    try:
        scores = det.anomaly_scores(test.images, which=available(cfg.input_kind))
        main = scores[det.score_]
        result: dict[str, Any] = {"score": det.score_, **metrics.ranking(y_true, main),
                                  **metrics.at_threshold(y_true, main, det.threshold_)}
        result["scores"] = {k: metrics.ranking(y_true, v) for k, v in scores.items()}
        result["per_class"] = metrics.per_class(test.labels.numpy(), main, y_true, names)
        result["n_test"] = int(len(y_true))
        result["n_anomalies"] = int(y_true.sum())
        result["model_dir"] = str(model_dir) if model_dir else None
        artifacts = plots.curves(y_true, scores, out, det.score_)
        artifacts.append(plots.histogram(y_true.astype(int), main, det.threshold_, out, det.score_))
        order = np.argsort(-main)  # the most anomalous test images first
        artifacts.append(plots.reconstruction_grid(det.model_, test.images[torch.from_numpy(order[:16].copy())], out))
        artifacts.append(report.write(out, result, det, test.images, test.labels.numpy(), main, artifacts[:3],
                                      names=names))
        (out / "metrics.json").write_text(json.dumps(result, indent=2))
    except BaseException as e:
        run.end("KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
        raise
    run.finish(result, out, artifacts)
    return result
