"""Score image files in bounded memory: chunks of files in, CSV rows out; a bad file is a row, not a crash."""

from __future__ import annotations

import heapq
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.datasets import as_nchw
from ..estimator import AnomalyVAE
from ..errors import AnomalyVAEError, DataError, InvalidInput
from ..data.images import Found, display_path, iter_image_files, load_image
from ..data.preflight import check_paths


@dataclass
class ScoreSummary:
    csv: Path | None
    n_files: int = 0
    n_scored: int = 0
    n_anomalies: int = 0
    n_errors: int = 0
    top: list[dict] = field(default_factory=list)  # the most anomalous rows, for display
    errors: list[dict] = field(default_factory=list)  # the first few error rows, for display
    notes: set[str] = field(default_factory=set)  # conversions made to fit the model (grey <-> colour), once each


def _chunks(items: Iterable[Found], size: int) -> Iterator[list[Found]]:
    chunk: list[Found] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def score_frames(det: AnomalyVAE, paths: Iterable[str | os.PathLike], chunk_size: int = 1024,
                 notes: set[str] | None = None) -> Iterator[pd.DataFrame]:
    """One DataFrame per chunk: path, each score, is_anomaly, error (empty where the file was scored).

    Each file is prepared as the model's training images were: its size and channels (images.py)."""
    which = det.default_scores()
    labelled = det.config_.use_labels
    channels, size = det.input_shape_[0], det.input_shape_[-1]
    for chunk in _chunks(iter_image_files(paths), chunk_size):
        arrays, ok, errors = [], [], [f.error for f in chunk]
        for i, f in enumerate(chunk):
            if f.error:
                continue
            try:
                arrays.append(load_image(f.path, size, channels, notes))
                ok.append(i)
            except DataError as e:
                errors[i] = str(e)
        n = len(chunk)
        # columns as arrays, then one DataFrame: per-column .loc assignments cost ~12 us a file (profiled)
        cols: dict = {"path": [display_path(f.path) for f in chunk]}
        cols.update({name: np.full(n, np.nan) for name in which})
        if labelled:  # use_labels: the normal class each file resembles (-1: not scored)
            cols["looks_like"] = np.full(n, -1, dtype=np.int64)
        flagged, missing = np.zeros(n, bool), np.ones(n, bool)
        if ok:
            idx = np.asarray(ok)
            scores = det.anomaly_scores(as_nchw(np.stack(arrays)), which=which)
            for name in which:
                cols[name][idx] = scores[name]
            flagged[idx] = scores[det.score_] > det.threshold_
            if labelled:
                cols["looks_like"][idx] = det.looks_like(as_nchw(np.stack(arrays)))
            missing[idx] = False
        cols["is_anomaly"] = pd.arrays.BooleanArray(flagged, missing)
        cols["error"] = [e or "" for e in errors]
        frame = pd.DataFrame(cols)
        yield frame


def score_paths(det: AnomalyVAE, paths: Iterable[str | os.PathLike], csv: Path | None = None, top_k: int = 20,
                on_chunk: Callable[[int], None] | None = None, chunk_size: int = 1024) -> ScoreSummary:
    """Stream scores to `csv` (written to a temp file, renamed when complete); keep only a top-k in memory.

    A path given that does not exist is a DataError before anything is written (a typo must not look like
    a scored file); files that exist but cannot be decoded, inside folders or named, are error rows.
    """
    paths = check_paths(paths)
    if det.config_.input_kind == "features":
        raise InvalidInput("this model was trained on a table (anomalyvae train --table FILE), not on images; "
                           "score a .csv or .parquet file with it, or pass --model DIR of a model trained on images")
    summary = ScoreSummary(csv)
    heap: list[tuple[float, int, dict]] = []
    tmp = None
    try:
        if csv is not None:
            csv = Path(csv)
            csv.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{csv.name}.", suffix=".tmp", dir=csv.parent)
            os.close(fd)
        for frame in score_frames(det, paths, chunk_size, summary.notes):
            if tmp is not None:
                frame.to_csv(tmp, mode="a", header=summary.n_files == 0, index=False, errors="backslashreplace")
            summary.n_files += len(frame)
            good = frame[frame["error"] == ""]
            summary.n_scored += len(good)
            summary.n_anomalies += int(good["is_anomaly"].sum())
            bad = frame[frame["error"] != ""]
            summary.n_errors += len(bad)
            summary.errors.extend(bad.head(max(0, 10 - len(summary.errors))).to_dict("records"))
            # only a chunk's own top k can enter the overall top k: dicts for those rows, not for all
            for row in good.nlargest(top_k, det.score_).to_dict("records") if top_k > 0 else ():
                item = (row[det.score_], summary.n_files + len(heap), row)
                if len(heap) < top_k:
                    heapq.heappush(heap, item)
                elif item[0] > heap[0][0]:
                    heapq.heapreplace(heap, item)
            if on_chunk is not None:
                on_chunk(len(frame))
        if tmp is not None:
            if summary.n_files == 0:
                pd.DataFrame(columns=["path", *det.default_scores(), *(["looks_like"] if det.config_.use_labels else []),
                              "is_anomaly", "error"]).to_csv(tmp, index=False)
            os.replace(tmp, csv)
            tmp = None
    except OSError as e:  # images that cannot be read are rows; this is the CSV itself (full disk, bad --out)
        raise AnomalyVAEError(f"could not write {csv} ({e.strerror or e}); free some disk space or choose "
                              "another --out") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    summary.top = [row for _, _, row in sorted(heap, key=lambda t: -t[0])]
    return summary
