"""Checks of paths and flags that need no torch, MLflow or data: a typo is reported in a fraction of a second,
before the heavy imports a command then makes (torch alone takes 1-3 s to import)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from ..config import IDX_DATASETS
from ..errors import AnomalyVAEError, DataError, ModelDirError


def display_path(path: str | os.PathLike) -> str:
    """A printable, UTF-8-safe form of a path whose bytes may not be UTF-8."""
    return os.fsdecode(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def check_paths(paths: Iterable[str | os.PathLike]) -> list:
    """The paths, refused with one DataError when any of them does not exist."""
    paths = list(paths)
    missing = [display_path(p) for p in paths if not os.path.exists(p)]
    if missing:
        raise DataError(f"{', '.join(missing)}: no such file or folder; check the path"
                        + ("s" if len(missing) > 1 else ""))
    return paths


def is_model_uri(ref: str | os.PathLike) -> bool:
    """models:/NAME/1, runs:/ID/detector, s3://..., mlflow-artifacts:/... (a drive letter is not a scheme)."""
    return isinstance(ref, str) and re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:/", ref) is not None


def check_model(model: str | None) -> None:
    """--model: an MLflow URI (checked where it is downloaded) or a path that exists."""
    if model is not None and not is_model_uri(model) and not os.path.exists(model):
        raise ModelDirError(f"model {model} does not exist; train one (anomalyvae train) or pass --model DIR")


def check_train_flags(dataset: str | None, normal: str | None, train_dir: str | None) -> None:
    """train's flags that contradict each other or name a folder that is not there."""
    if normal is not None and dataset is not None and dataset not in IDX_DATASETS:
        raise AnomalyVAEError(f"--normal {normal} has no meaning for --dataset {dataset} (every training image is "
                         f"normal; only {' and '.join(IDX_DATASETS)} have classes); drop --normal")
    if train_dir is not None and not os.path.isdir(train_dir):
        raise DataError(f"{display_path(train_dir)} is not a folder; pass a folder of images to --train-dir")
