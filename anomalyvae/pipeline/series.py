"""Time series from the CLI: train on a normal series, score a series per timestamp, evaluate on a labelled one
(a label column, or NAB's label file); each tracked as an MLflow run, as tables are (pipeline/tables.py). The
file rule is data/series.py's, the detector detectors/series.py's."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.series import Series, from_frame, read_series
from ..data.tables import labels as label_values, read_table
from ..errors import DataError, InvalidInput
from .tables import save_and_log


def series_info(s: Series, exclude=()) -> dict:
    """What the model directory keeps of its training file (model.json, "series"): the scorer reads alike."""
    return {"time_column": s.time_column, "channels": s.channels, "step": str(s.step), "exclude": list(exclude)}


def fit_series(s: Series, exclude=(), **params):
    """An AnomalyVAE fitted on a normal series; `params` are AnomalyVAE's."""
    from ..estimator import AnomalyVAE

    det = AnomalyVAE(input_kind="series", **params).fit(s.values)
    det.series_ = series_info(s, exclude)
    return det


def info_of(det) -> dict:
    info = getattr(det, "series_", None)
    if info is None:
        raise InvalidInput("this model was not trained on a series (anomalyvae train --series FILE)")
    return info


def read_for(det, path: str | Path, keep=()) -> tuple[Series, pd.DataFrame]:
    """A series file read as the model's training file was: its time column and its channels (others ignored)."""
    info = info_of(det)
    frame = read_table(path)
    missing = [c for c in info["channels"] if c not in frame.columns]
    if missing:
        raise InvalidInput(f"column {missing[0]!r} is missing from {path}; the model was trained on "
                           f"{', '.join(info['channels'])}")
    exclude = [c for c in frame.columns if c not in info["channels"] and c != info["time_column"]]
    return from_frame(frame, info["time_column"] if info["time_column"] in frame.columns else None, exclude), frame


def score_series(det, s: Series) -> pd.DataFrame:
    """One row per timestamp of the grid: the time, each score, is_anomaly and, for several channels, the
    channel whose reconstruction error is largest (the one that drove `recon`)."""
    import torch

    from ..detectors.series import point_scores

    which = list(det.default_scores())
    data = det._read(s.values, reset=False)
    scores = point_scores(det.model_, data, det.state_.to(torch.device("cpu")), det.config_, which + ["recon"])
    out = pd.DataFrame({"time": s.time})
    for k in which:
        out[k] = scores[k].numpy()
    main = out[det.score_].to_numpy()
    out["is_anomaly"] = np.nan_to_num(main, nan=-np.inf) > det.threshold_
    if len(s.channels) > 1:
        per = scores["channels"].numpy()
        drove = np.argmax(np.nan_to_num(per, nan=-np.inf), 1)
        out["channel"] = np.where(np.isnan(per).all(1), "", np.asarray(s.channels, dtype=object)[drove])
    return out


def nab_windows(path: Path, labels_file: Path, time: pd.DatetimeIndex) -> tuple[list[tuple[int, int]], str]:
    """NAB's labelled windows of `path` (combined_windows.json: keyed by 'folder/file.csv') as grid index
    ranges [a, b], inclusive."""
    try:
        table = json.loads(Path(labels_file).read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"--labels {labels_file} could not be read as JSON ({str(e).splitlines()[0][:120]})") from None
    resolved = Path(path).resolve().as_posix()
    keys = [k for k in table if resolved.endswith("/" + k) or resolved == k]
    if not keys:
        keys = [k for k in table if Path(k).name == Path(path).name]
    if len(keys) != 1:
        raise InvalidInput(f"--labels {labels_file} has no entry for {Path(path).name} (its keys are like "
                           f"{next(iter(table), '?')!r})")
    spans = []
    for start, end in table[keys[0]]:
        a, b = time.searchsorted(pd.Timestamp(start)), time.searchsorted(pd.Timestamp(end), side="right") - 1
        spans.append((int(a), int(b)))
    return spans, keys[0]


def spans_of(y: np.ndarray) -> list[tuple[int, int]]:
    """Runs of True in y as inclusive (start, end) index pairs."""
    d = np.diff(np.concatenate([[0], y.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1) - 1))


def point_adjusted_f1(y: np.ndarray, flagged: np.ndarray) -> dict[str, float]:
    """F1 after point adjustment (Xu et al. 2018): a labelled segment with any flagged point counts as detected
    whole; flags outside segments stay false positives."""
    adj = flagged.copy()
    for a, b in spans_of(y):
        if flagged[a:b + 1].any():
            adj[a:b + 1] = True
    tp, fp, fn = int((adj & y).sum()), int((adj & ~y).sum()), int((~adj & y).sum())
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"pa_precision": p, "pa_recall": r, "pa_f1": 2 * p * r / (p + r) if p + r else 0.0}


def plot(s: Series, score: np.ndarray, threshold: float, y: np.ndarray, out: Path, name: str) -> Path:
    """The series (each channel), its score with the threshold, and the labelled windows shaded."""
    from ..evaluation.plots import _pyplot

    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 5), sharex=True)
    for j, c in enumerate(s.channels):
        top.plot(s.time, s.values[:, j], lw=0.6, label=c)
    bottom.plot(s.time, score, lw=0.6, color="tab:purple", label=name)
    bottom.axhline(threshold, color="tab:red", lw=0.8, ls="--", label="threshold")
    for a, b in spans_of(y):
        for ax in (top, bottom):
            ax.axvspan(s.time[a], s.time[b], color="tab:orange", alpha=0.25, lw=0)
    top.set_ylabel("value")
    bottom.set_ylabel(name)
    top.legend(loc="upper left", fontsize=7)
    bottom.legend(loc="upper left", fontsize=7)
    top.set_title("series, labelled windows shaded; score and threshold below")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _data_ref(path: Path, s: Series, context: str, what: str, **profile):
    from ..tracking.lineage import DataRef, digest

    values = np.ascontiguousarray(s.values.astype(np.float32))
    return DataRef(f"series-{path.stem}-{what}", digest(values), {"uri": path.resolve().as_uri()},
                   {"points": len(s.values), "channels": ", ".join(s.channels), "step": str(s.step),
                    "missing_timestamps": s.inserted, **profile}, context, [len(s.channels)], "float32")


def train_series(cfg, path: str | Path, time_column: str | None = None, exclude=(), out: Path | None = None,
                 tracker=None, say=print, warn=None):
    """`anomalyvae train --series`: fit on a normal series, write the model directory, track the run; returns
    (detector, model directory). `cfg` is a validated Config (input_kind "series"). The file is read and checked
    before anything is written."""
    import datetime as dt

    from ..estimator import AnomalyVAE
    from ..tracking.lineage import TRAINING
    from ..tracking.runs import Tracker

    path = Path(path)
    s = read_series(path, time_column, exclude)
    if cfg.limit:
        s = Series(s.time[:cfg.limit], s.values[:cfg.limit], s.channels, s.time_column, s.step, s.inserted, s.rows)
    out = Path(out) if out is not None else Path("models") / (
        f"series-{path.stem}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}")
    tracker = tracker or Tracker(cfg.experiment, cfg.tracking_uri, enabled=False)
    tracker.start(run_name=f"train series {path.name} -> {out.name}",
                  tags={"anomalyvae.job": "train", "anomalyvae.model_dir": str(out.resolve())},
                  description=f"Trains a VAE of {cfg.window}-point windows on `{path}` ({len(s.values):,} points, "
                              f"{len(s.channels)} channel(s), step {s.step}). Default score `{cfg.score}`"
                              f"{', causal' if cfg.causal else ''}. Model directory: `{out.resolve()}`.")
    try:
        tracker.log_params({**cfg.to_dict(), "series": str(path), "time_column": s.time_column,
                            "exclude_columns": ",".join(exclude), "n_points": len(s.values),
                            "n_channels": len(s.channels)})
        tracker.log_inputs([_data_ref(path, s, TRAINING, "train")])
        say(f"training on {len(s.values):,} points x {len(s.channels)} channel(s) of {path} (step {s.step}, "
            f"{s.inserted} missing timestamps masked, {int(np.isnan(s.values).any(1).sum())} points with a gap)")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            det = AnomalyVAE.from_config(cfg).fit(s.values)
        for line in dict.fromkeys(str(w.message) for w in caught):
            (warn or (lambda m: warnings.warn(m, UserWarning, stacklevel=2)))(line)
        det.series_ = series_info(s, exclude)
        det.info_["series"] = str(path)
        save_and_log(det, out, tracker)
    except BaseException as e:
        tracker.end("KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
        raise
    tracker.end("FINISHED")
    return det, out


def evaluate_series(det, path: str | Path, label_column: str | None = None, labels_file: Path | None = None,
                    out: Path | None = None, tracker=None, model_dir: Path | None = None) -> dict:
    """`anomalyvae evaluate --series`: every score's AUROC / AUPRC and the default score's point-adjusted F1
    at the threshold, against `label_column` (1, true or yes = anomaly) or NAB's windows (`labels_file`); writes
    the plot series.png and metrics.json to `out`; tracked as an evaluate run. Missing points (no score) are
    left out of the metrics."""
    from ..evaluation import metrics
    from ..tracking.lineage import EVALUATION
    from ..tracking.runs import Tracker

    path = Path(path)
    if (label_column is None) == (labels_file is None):
        raise InvalidInput("evaluate --series needs one of --label-column NAME or --labels FILE (NAB's "
                           "combined_windows.json)")
    s, frame = read_for(det, path)
    if label_column is not None:
        if label_column not in frame.columns:
            raise InvalidInput(f"--label-column {label_column!r} is not a column of {path}; its columns are "
                               f"{', '.join(map(str, frame.columns))}")
        y = np.zeros(len(s.values), bool)
        y[s.rows] = label_values(frame[label_column], label_column)
        source = label_column
    else:
        spans, source = nab_windows(path, labels_file, s.time)
        y = np.zeros(len(s.values), bool)
        for a, b in spans:
            y[a:b + 1] = True
    if y.all() or not y.any():
        raise DataError(f"{path}: the labels mark {'every' if y.all() else 'no'} point as an anomaly; evaluation "
                        "needs both normal and anomalous points")
    scored = score_series(det, s)
    names = [k for k in det.default_scores()]
    main = scored[det.score_].to_numpy()
    ok = np.isfinite(main)
    flagged = scored["is_anomaly"].to_numpy()
    result = {"score": det.score_, **metrics.ranking(y[ok], main[ok]),
              **metrics.at_threshold(y[ok], main[ok], det.threshold_), **point_adjusted_f1(y, flagged),
              "scores": {k: metrics.ranking(y[np.isfinite(scored[k])], scored[k].to_numpy()[np.isfinite(scored[k])])
                         for k in names},
              "per_class": [], "n_test": int(len(y)), "n_anomalies": int(y.sum()), "n_unscored": int((~ok).sum()),
              "labels": str(source), "causal": det.config_.causal,
              "model_dir": str(model_dir) if model_dir else None}
    out = Path(out) if out is not None else (Path(model_dir) / "evaluation" if model_dir else Path("evaluation"))
    out.mkdir(parents=True, exist_ok=True)
    figure = plot(s, main, det.threshold_, y, out / "series.png", det.score_)
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    tracker = tracker or Tracker(det.config_.experiment, det.config_.tracking_uri, enabled=False)
    tracker.start(run_name=f"evaluate series {path.name} (AUROC {result['auroc']:.3f})",
                  tags={"anomalyvae.job": "evaluate", "anomalyvae.model_dir": str(model_dir or "")})
    tracker.log_inputs([_data_ref(path, s, EVALUATION, "test", anomalies=int(y.sum()), labels=str(source))])
    tracker.log_metrics({k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
    tracker.log_metrics({f"auroc_{k}": v["auroc"] for k, v in result["scores"].items()})
    tracker.log_artifact(figure, "evaluation")
    tracker.log_artifact(out / "metrics.json", "evaluation")
    tracker.end("FINISHED")
    result["figure"] = str(figure)
    return result
