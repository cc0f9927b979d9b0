"""Whether files are the kind of image a model was trained on, so that the newest model is never applied to
data unlike its own with only a conversion note as the hint (issue 22): read from model.json and the files'
headers, without loading a model or decoding an image."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..config import IDX_DATASETS
from ..errors import DataError
from .preflight import display_path

SAMPLE = 20  # files looked at: the first ones found


@dataclass(frozen=True)
class Kind:
    channels: int
    width: int
    height: int
    dataset: str | None = None  # a model's; None for a file

    def __str__(self) -> str:
        what = f"{'grey' if self.channels == 1 else 'colour'} {self.width}x{self.height} images"
        return f"{what} ({self.dataset})" if self.dataset else what


def model_kind(model_dir: str | os.PathLike) -> Kind | None:
    """What a saved model takes, from its model.json; None for a feature-vector model or an unreadable file."""
    try:
        meta = json.loads((Path(model_dir) / "model.json").read_text())
        channels, height, width = meta["input_shape"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return Kind(channels, width, height, meta.get("config", {}).get("dataset"))


def file_kind(path: str | os.PathLike) -> Kind | None:
    """A file's channels and size from its header (Pillow reads no pixels); None when it cannot be opened."""
    from PIL import Image

    from .images import _GREY_MODES

    try:
        with Image.open(path) as img:
            return Kind(1 if img.mode in _GREY_MODES else 3, *img.size)
    except Exception:  # unreadable files become error rows when scored; they say nothing about the kind
        return None


def unlike(model: Kind, file: Kind) -> bool:
    """Another kind of data: other channels, a class dataset's model given images of another size, or any model
    given images it would have to enlarge more than twofold."""
    if model.channels != file.channels:
        return True
    if model.dataset in IDX_DATASETS:
        return (file.width, file.height) != (model.width, model.height)
    return 2 * min(file.width, file.height) < min(model.width, model.height)


def sample_kinds(paths: Iterable[str | os.PathLike], n: int = SAMPLE) -> list[tuple[str, Kind]]:
    from .images import iter_image_files

    found = []
    for f in iter_image_files(paths):
        kind = None if f.error else file_kind(f.path)
        if kind is not None:
            found.append((f.path, kind))
            if len(found) == n:
                break
    return found


def refuse_if_unlike(newest: str | os.PathLike, paths: Iterable[str | os.PathLike], root: str = "models") -> None:
    """Used when no --model is given: a DataError when most of the first files are unlike the newest model,
    naming the models under `root` trained on their kind."""
    model = model_kind(newest)
    files = sample_kinds(paths)
    if model is None or not files:
        return
    odd = [(p, k) for p, k in files if unlike(model, k)]
    if 2 * len(odd) <= len(files):
        return
    path, kind = odd[0]
    fits = [d for d in sorted(Path(root).glob("*/model.json"), key=lambda p: p.stat().st_mtime, reverse=True)
            if (k := model_kind(d.parent)) is not None and not unlike(k, kind)]
    where = (f"models trained on such images: {', '.join(display_path(d.parent) for d in fits[:5])}; pass one with "
             "--model DIR" if fits else f"no model under {root}/ was trained on such images; train one "
             "(anomalyvae train --dataset folder --train-dir DIR)")
    raise DataError(f"the newest model, {display_path(newest)}, was trained on {model}, but {display_path(path)} "
                    f"is {kind}; {where}, or pass --model {display_path(newest)} to use it anyway")
