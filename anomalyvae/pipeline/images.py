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

from ..vae import distributed
from ..tracking import lineage
from ..evaluation import report
from ..data.classes import format_classes, parse_classes
from ..config import IDX_DATASETS, Config, auto_epochs
from ..data.datasets import CLASS_NAMES, load_train
from ..vae import device
from ..errors import AnomalyVAEError, DataError, TrainingDiverged, TrainingInterrupted
from ..estimator import AnomalyVAE
from ..data.layouts import TestSet
from ..scores import available
from ..vae.resume import check as resume_check, describe_changes
from ..tracking.runs import EvaluateRun, Tracker
from ..vae.train import EpochStats, checkpoint_run_id


def default_out(cfg: Config) -> Path:
    if cfg.dataset == "folder":
        what = lineage.folder_words(cfg.train_dir).replace("/", "-")
    elif cfg.dataset == "mvtec":
        what = cfg.resolved_data_dir().resolve().name
    else:
        what = f"normal{format_classes(parse_classes(cfg.normal))}"
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("models") / f"{cfg.dataset}-{what.replace(',', '_')}-{lineage.kind(cfg)}-{stamp}"


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
        log(f"skipped {len(data.skipped)} unreadable file(s), e.g. {data.skipped[0].path}: {data.skipped[0].error}")
    if resume and distributed.enabled():
        raise AnomalyVAEError("--resume is not supported under torchrun; resume with a single process")
    if not distributed.is_main():
        tracker = None  # rank 0 logs for everyone
    if cfg.epochs is None and cfg.detector == "global":  # the local detector counts its patches (local.py)
        cfg = dataclasses.replace(cfg, epochs=auto_epochs(len(data.train), cfg.batch_size))
    cfg = dataclasses.replace(cfg, channels=data.train.images.shape[1], image_size=data.train.images.shape[-1])
    changes = resume_check(out, cfg) if resume else {}  # before anything is written
    if resume:
        say(f"resuming {out}" + (f" with {describe_changes(changes)}" if changes else " with its own settings"))
    tracker = tracker or Tracker(cfg.experiment, cfg.tracking_uri, enabled=False)
    run_id = checkpoint_run_id(out) if resume else None
    tracker.start(run_name=lineage.train_run_name(cfg), run_id=run_id,
                  tags={"anomalyvae.job": "train", "anomalyvae.model_dir": str(out.resolve()),
                        lineage.DETAIL: lineage.train_detail(cfg, out)},
                  description=lineage.train_description(cfg, len(data.train), len(data.val), out.resolve()))
    inputs = tracker.attempt("describing the datasets", lambda: lineage.train_inputs(cfg, data.train, data.val)) or []
    if not run_id:
        tracker.log_params({**cfg.to_dict(), "normal": lineage.logged_normal(cfg), "n_train": len(data.train),
                            "n_val": len(data.val)})
        tracker.log_inputs(inputs)
    if changes:  # MLflow params cannot change; the run says what the resumed part ran with
        tracker.set_tags({"anomalyvae.resumed_with": describe_changes(changes)})

    def epoch_done(s: EpochStats) -> None:
        tracker.log_metrics({k: v for k, v in asdict(s).items() if k != "epoch"}, step=s.epoch)
        if on_epoch is not None:
            on_epoch(s)

    info = {
        "normal_classes": parse_classes(cfg.normal) if cfg.dataset in IDX_DATASETS else [],
        "class_names": CLASS_NAMES.get(cfg.dataset, []),
        "mlflow_run_id": tracker.run_id,
        "file_sizes": [list(s) for s in data.sizes],  # what evaluate compares test files with (testsets.note_sizes)
    }
    det = AnomalyVAE.from_config(cfg)
    result = det.fit_splits(cfg, data.train, data.val, out=out if distributed.is_main() else None, resume=resume,
                            on_step=on_step, on_epoch=epoch_done, run_id=tracker.run_id, info=info,
                            on_phase=say)
    if not distributed.is_main():
        return None, out
    for warning in getattr(det, "info_", {}).get("warnings", []):
        log(warning)  # the CLI's log prefixes "warning: "
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
    code = {k: det.info_[k] for k in ("kl_per_patch", "recon_spread") if k in det.info_}  # the local detector's
    tracker.log_metrics({"best_epoch": result.best_epoch, "train_seconds": result.seconds, **code})
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


def evaluate_detector(det: AnomalyVAE, out: Path, test: TestSet | None = None, data_dir: str | None = None,
                      tracker: Tracker | None = None, model_dir: Path | None = None,
                      origin: lineage.TestOrigin | None = None) -> dict[str, Any]:
    """Metrics, curves, reconstructions and anomaly maps on a labelled test set (by default the model's own:
    testsets.build); pixel AUROC and AUPRO where the test set has ground-truth masks. `origin` says where the
    test set came from, for the MLflow run's dataset input (by default the model's own test split)."""
    from ..evaluation import metrics, plots  # here, not at the top: sklearn's import took 3.5 s of `train`'s start-up
    from ..data.testsets import build

    cfg = det.config_
    test = test if test is not None else build(det, data_dir)
    y_true = test.anomalous
    if y_true.all() or not y_true.any():
        raise DataError("the test set needs both normal and anomalous images to be evaluated")
    out.mkdir(parents=True, exist_ok=True)
    run = EvaluateRun(tracker, det, test, y_true, model_dir, origin)
    try:
        images = torch.from_numpy(test.images)
        scores = det.anomaly_scores(images, which=available(cfg.input_kind, cfg.detector, cfg.use_labels))
        main = scores[det.score_]
        result: dict[str, Any] = {"score": det.score_, **metrics.ranking(y_true, main),
                                  **metrics.at_threshold(y_true, main, det.threshold_)}
        result["scores"] = {k: metrics.ranking(y_true, v) for k, v in scores.items()}
        result["per_class"] = metrics.per_class(test.labels, main, y_true, test.names)
        if test.masks is not None:
            result.update(pixel_results(det.maps_and_recons(images)[0], test, result["per_class"]))
        result["n_test"] = int(len(y_true))
        result["n_anomalies"] = int(y_true.sum())
        result["model_dir"] = str(model_dir) if model_dir else None
        artifacts = plots.curves(y_true, scores, out, det.score_)
        artifacts.append(plots.histogram(y_true.astype(int), main, det.threshold_, out, det.score_))
        order = np.argsort(-main)  # the most anomalous test images first
        artifacts.append(plots.reconstruction_grid(det, images[torch.from_numpy(order[:16].copy())], out))
        from ..vae.sampling import sample_grid  # what the model thinks is normal, beside what it made of the test set

        artifacts.append(sample_grid(det, out / "samples.png"))
        artifacts.append(report.write(out, result, det, images, test.labels, main, artifacts[:3], names=test.names,
                                      paths=test.paths))
        (out / "metrics.json").write_text(json.dumps(result, indent=2))
    except BaseException as e:
        run.end("KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
        raise
    run.finish(result, out, artifacts)
    return result


PIXEL_METRIC_SIDE = 256  # pixel metrics of larger images are computed with map and mask shrunk to this side


def pixel_results(maps: np.ndarray, test: TestSet, per_class: list[dict]) -> dict[str, float]:
    """Pixel AUROC and AUPRO of the maps (N, S, S) of the test set's images, overall and per anomaly class
    (its images and every normal one, as MVTec-AD reports them); per-class figures go into the `per_class` rows.

    Maps are compared with masks at each file's own resolution (maps resized to it), shrunk to at most
    PIXEL_METRIC_SIDE on the longer side so 1024 px photos do not hold gigabytes (a shrunk mask pixel is
    anomalous where any of the pixels it covers is, so thin scratches survive).
    """
    from ..evaluation import pixel_metrics
    from ..evaluation.heatmaps import resize_map

    shapes = test.shapes or [tuple(test.images.shape[-2:])] * len(maps)
    pairs_map, pairs_mask = [], []
    for amap, shape, mask in zip(maps, shapes, test.masks):
        h, w = shape
        k = min(1.0, PIXEL_METRIC_SIDE / max(h, w))
        target = (max(1, round(h * k)), max(1, round(w * k)))
        pairs_map.append(resize_map(amap, target))
        pairs_mask.append(np.zeros(target, bool) if mask is None else _shrink_mask(mask, target))
    result = pixel_metrics.summary(pairs_map, pairs_mask)
    normal = ~test.anomalous
    for row in per_class:
        if not row["anomaly"]:
            continue
        sel = np.flatnonzero(normal | (test.labels == row["label"]))
        row.update(pixel_metrics.summary([pairs_map[i] for i in sel], [pairs_mask[i] for i in sel]))
    return result


def _shrink_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if mask.shape == tuple(shape):
        return mask
    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    return (torch.nn.functional.interpolate(t, size=shape, mode="area")[0, 0] > 0).numpy()
