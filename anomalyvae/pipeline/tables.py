"""Tables from the CLI: train on a normal table, score a table's rows, evaluate on a labelled table; each
tracked as an MLflow run. The encoding rule they share is data/tables.py's."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.tables import TableEncoder, labels, read_table
from ..errors import DataError, InvalidInput

TOP_FEATURES = 3  # features named per row in score's CSV

def fit_table(frame: pd.DataFrame, exclude=(), **params):
    """An AnomalyVAE fitted on a normal table under the rule above; `params` are AnomalyVAE's."""
    from ..estimator import AnomalyVAE

    encoder = TableEncoder.fit(frame, exclude)
    det = AnomalyVAE(**params).fit(encoder.transform(frame))
    det.table_ = encoder
    return det


def score_table(det, frame: pd.DataFrame) -> pd.DataFrame:
    """One row per input row: the default score, is_anomaly, and the features with the largest shares."""
    from ..detectors.rows import top

    X = encoder_of(det).transform(frame)
    score = det.anomaly_scores(X, which=[det.score_])[det.score_]
    out = pd.DataFrame({det.score_: score, "is_anomaly": score > det.threshold_}, index=frame.index)
    out["top_features"] = top(det.explain(X), TOP_FEATURES)
    return out


def encoder_of(det) -> TableEncoder:
    enc = getattr(det, "table_", None)
    if enc is None:
        raise InvalidInput("this model was not trained on a table (anomalyvae train --table FILE); "
                           "score image files with it instead")
    return enc


def _data_ref(path: Path, X: pd.DataFrame, context: str, what: str, **profile):
    from ..tracking.lineage import DataRef, digest

    values = np.ascontiguousarray(X.to_numpy(np.float32))
    return DataRef(f"table-{path.stem}-{what}", digest(values), {"uri": path.resolve().as_uri()},
                   {"rows": len(X), "features": X.shape[1], **profile}, context, [X.shape[1]], "float32")


def table_run_name(job: str, path: str | Path) -> str:
    """'train table wine', 'evaluate table wine': the job and the table's name (its file in the DETAIL tag)."""
    return f"{job} table {Path(path).stem}"


def train_table(cfg, path: str | Path, exclude=(), out: Path | None = None, tracker=None, say=print, warn=None):
    """`anomalyvae train --table`: fit on a normal table, write the model directory, track the run; returns
    (detector, model directory). `cfg` is a validated Config (input_kind "features"). `warn`, when given, gets
    each warning of the fit as one line (the CLI prints them as the image path does); else they are Python
    warnings."""
    import datetime as dt

    from ..estimator import AnomalyVAE
    from ..tracking.lineage import DETAIL, TRAINING
    from ..tracking.runs import Tracker

    path = Path(path)
    frame = read_table(path).iloc[:cfg.limit]  # --limit: the first rows only (quick runs)
    encoder = TableEncoder.fit(frame, exclude)
    X = encoder.transform(frame)
    out = Path(out) if out is not None else Path("models") / (
        f"table-{path.stem}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}")
    tracker = tracker or Tracker(cfg.experiment, cfg.tracking_uri, enabled=False)
    tracker.start(run_name=table_run_name("train", path),
                  tags={"anomalyvae.job": "train", "anomalyvae.model_dir": str(out.resolve()),
                        DETAIL: f"table {path.name} mlp -> {out.name}"},
                  description=f"Trains an mlp VAE on the normal rows of `{path}` ({len(X):,} rows, {X.shape[1]} "
                              f"features after encoding). Default score `{cfg.score}`. Model directory: `{out.resolve()}`.")
    try:
        data = _data_ref(path, X, TRAINING, "train", columns=", ".join(encoder.columns),
                         excluded=", ".join(exclude))
        tracker.log_params({**cfg.to_dict(), "table": str(path), "exclude_columns": ",".join(exclude),
                            "n_rows": len(X), "n_features": X.shape[1]})
        tracker.log_inputs([data])
        say(f"training on {len(X):,} rows x {X.shape[1]} features of {path}")
        if warn is None:
            det = AnomalyVAE.from_config(cfg).fit(X)
        else:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                det = AnomalyVAE.from_config(cfg).fit(X)
            for line in dict.fromkeys(str(w.message) for w in caught):  # each once, in order
                warn(line)
        det.table_ = encoder
        det.info_["table"] = str(path)
        save_and_log(det, out, tracker)
        tracker.log_model(out, example=frame[encoder.columns].head(2))
    except BaseException as e:
        tracker.end("KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
        raise
    tracker.end("FINISHED")
    return det, out


def evaluate_table(det, path: str | Path, label_column: str, tracker=None, model_dir: Path | None = None):
    """`anomalyvae evaluate --table`: every score's AUROC / AUPRC against `label_column` (1, true or yes =
    anomaly), and the default score's decision at the threshold; tracked as an evaluate run."""
    from ..evaluation import metrics
    from ..tracking.lineage import DETAIL, EVALUATION
    from ..scores import available
    from ..tracking.runs import Tracker

    path = Path(path)
    frame = read_table(path)
    if label_column not in frame.columns:
        raise InvalidInput(f"--label-column {label_column!r} is not a column of {path}; "
                           f"its columns are {', '.join(map(str, frame.columns))}")
    y = labels(frame[label_column], label_column)
    if y.all() or not y.any():
        raise DataError(f"{path}: column {label_column!r} marks {'every' if y.all() else 'no'} row as an anomaly; "
                        "evaluation needs both normal and anomalous rows")
    X = encoder_of(det).transform(frame)
    scores = det.anomaly_scores(X, which=[s for s in available("features") if s != "iwae"])
    main = scores[det.score_]
    result = {"score": det.score_, **metrics.ranking(y, main), **metrics.at_threshold(y, main, det.threshold_),
              "scores": {k: metrics.ranking(y, v) for k, v in scores.items()}, "per_class": [],
              "n_test": int(len(y)), "n_anomalies": int(y.sum()), "model_dir": str(model_dir) if model_dir else None}
    tracker = tracker or Tracker(det.config_.experiment, det.config_.tracking_uri, enabled=False)
    tracker.start(run_name=table_run_name("evaluate", path),
                  tags={"anomalyvae.job": "evaluate", "anomalyvae.model_dir": str(model_dir or ""),
                        DETAIL: f"table {path.name}, anomalies in column {label_column!r}"})
    tracker.log_inputs([_data_ref(path, X, EVALUATION, "test", anomalies=int(y.sum()), label_column=label_column)])
    tracker.log_metrics({k: v for k, v in result.items() if isinstance(v, (int, float))})
    tracker.log_metrics({f"auroc_{k}": v["auroc"] for k, v in result["scores"].items()})
    tracker.end("FINISHED")
    return result


def save_and_log(det, out: Path, tracker) -> None:
    """Write the model directory, then log its fit's figures and files to the run (the file-based jobs)."""
    det.save(out)
    tracker.log_metrics({"threshold": det.threshold_, "val_fpr": det.info_["val_fpr"],
                         "train_seconds": det.info_["train_seconds"], "best_epoch": det.info_["best_epoch"]})
    tracker.log_artifact(out / "model.safetensors", "model")
    tracker.log_artifact(out / "model.json", "model")
