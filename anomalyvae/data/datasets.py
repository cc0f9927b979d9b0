"""Datasets held whole in memory as uint8 tensors: MNIST, Fashion-MNIST (IDX files), or image files in one of
the folder layouts of layouts.py (MVTec-AD, flat folders)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .classes import parse_classes
from ..config import Config, auto_image_size
from ..errors import DataError
from .idx import read_idx
from .images import iter_image_files, load_files, load_folder
from .inputs import match_channels, resize

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# where each dataset's four files may lie, relative to the data folder (torchvision's layout included)
SUBDIRS = {"mnist": ["", "mnist", "MNIST/raw"], "fashion-mnist": ["", "fashion-mnist", "FashionMNIST/raw"]}
SYSTEM_DIRS = {"fashion-mnist": [Path("/usr/share/datasets/fashion-mnist")]}  # Debian: dataset-fashion-mnist
CLASS_NAMES = {
    "mnist": [str(i) for i in range(10)],
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
}


@dataclass
class Split:
    """Inputs (images as (N, C, H, W) uint8, or (N, D) feature vectors) and labels as (N,) int64 (-1 where
    unknown, as for a folder)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index: torch.Tensor) -> "Split":
        return Split(self.images[index], self.labels[index])


def _find(stem: str, folders: list[Path]) -> Path | None:
    for folder in folders:
        for name in (stem + ".gz", stem):
            if (folder / name).is_file():
                return folder / name
    return None


def _candidate_dirs(dataset: str, data_dir: Path) -> list[Path]:
    return [data_dir / sub for sub in SUBDIRS[dataset]] + SYSTEM_DIRS.get(dataset, [])


# MNIST and Fashion-MNIST files have the same names, so a flat folder of one looks like the other; their
# labels tell them apart: images per class in each official split
LABEL_COUNTS = {
    "mnist": {"train": [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
              "test": [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]},
    "fashion-mnist": {"train": [6000] * 10, "test": [1000] * 10},
}


def identify(labels_path: Path, split: str) -> str | None:
    """Which known dataset an official label file belongs to (None: another file, or unreadable)."""
    try:
        labels = read_idx(labels_path)
    except Exception:  # the loader reports what is wrong with it
        return None
    if labels.ndim != 1 or labels.size == 0 or labels.min() < 0 or labels.max() > 9:
        return None
    counts = np.bincount(labels.astype(np.int64), minlength=10).tolist()
    return next((name for name, c in LABEL_COUNTS.items() if c[split] == counts), None)


def _find_pair(dataset: str, split: str, folders: list[Path]) -> tuple[tuple[Path, Path] | None, list[str]]:
    """The first folder holding both files of the split that are not another known dataset's."""
    others = []
    for folder in folders:
        pair = [_find(stem, [folder]) for stem in FILES[split]]
        if all(pair):
            who = identify(pair[1], split)
            if who not in (None, dataset):
                others.append(f"{folder} holds {who}, not {dataset}")
                continue
            return (pair[0], pair[1]), others
    return None, others


def locate(dataset: str, data_dir: Path, split: str, download: bool = True) -> tuple[Path, Path]:
    """Paths of the image and label file of one split; downloads with torchvision when they are missing."""
    folders = _candidate_dirs(dataset, data_dir)
    found, others = _find_pair(dataset, split, folders)
    if found:
        return found
    reason = "download disabled"
    if download:
        try:
            _download(dataset, data_dir)
            found, others = _find_pair(dataset, split, folders)
            if found:
                return found
        except Exception as e:  # no internet, proxy, mirror down: all end in the same advice
            reason = f"download failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".strip()
    names = ", ".join(s + ".gz" for pair in FILES.values() for s in pair)
    where = f" (from {_mirror(dataset)})"
    system = " or `apt-get install dataset-fashion-mnist`" if dataset == "fashion-mnist" else ""
    raise DataError(
        f"{dataset} not found in {data_dir} ({'; '.join(others + [reason])}); get {names}{where} and put them in "
        f"{data_dir / dataset}, or pass --data-dir DIR (or set ANOMALYVAE_DATA_DIR) where they are{system}; "
        f"in a checkout, `make demo DATA=/path/to/{dataset}` copies them into ./data/{dataset}"
    )


def _torchvision_class(dataset: str):
    from torchvision import datasets

    return datasets.MNIST if dataset == "mnist" else datasets.FashionMNIST


def _mirror(dataset: str) -> str:
    cls = _torchvision_class(dataset)
    return (getattr(cls, "mirrors", None) or [cls.resources[0][0].rsplit("/", 1)[0] + "/"])[0]


def _download(dataset: str, data_dir: Path) -> None:
    """torchvision's download into data_dir/<Name>/raw; a failed one leaves no empty folders behind."""
    cls = _torchvision_class(dataset)
    made = [p for p in (data_dir, data_dir / cls.__name__, data_dir / cls.__name__ / "raw") if not p.exists()]
    try:
        for train in (True, False):
            cls(root=str(data_dir), train=train, download=True)
    except BaseException:
        for folder in reversed(made):  # only folders this download created, and only while empty
            try:
                folder.rmdir()
            except OSError:
                break
        raise


def load_idx_split(dataset: str, data_dir: Path, split: str, size: int = 28, download: bool = True) -> Split:
    images_path, labels_path = locate(dataset, data_dir, split, download)
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"{images_path}: expected a 3-d uint8 image array, got {images.ndim}-d {images.dtype}")
    if labels.ndim != 1:
        raise DataError(f"{labels_path}: expected a 1-d label array, got {labels.ndim}-d; it is not a label file")
    if len(labels) != len(images):
        raise DataError(
            f"{labels_path} has {len(labels)} labels but {images_path} has {len(images)} images; "
            "the files do not belong together, re-download them"
        )
    if labels.size and (labels.max() > 9 or labels.min() < 0):
        bad = labels.max() if labels.max() > 9 else labels.min()
        raise DataError(f"{labels_path}: label {bad} is out of range 0-9; the file is not a label file")
    out = resize(torch.from_numpy(images.copy()).unsqueeze(1), size)
    return Split(out, torch.from_numpy(labels.astype(np.int64)))


def as_nchw(arr: np.ndarray) -> torch.Tensor:
    """A stack of decoded images, (N, H, W) grey or (N, C, H, W), as one (N, C, H, W) tensor."""
    t = torch.from_numpy(arr)
    return t.unsqueeze(1) if t.ndim == 3 else t


def with_channels(images: torch.Tensor, channels: int | None) -> torch.Tensor:
    """IDX images (grey) in the channels asked for: None and 1 keep them grey, 3 repeats them to RGB."""
    return images if channels in (None, images.shape[1]) else match_channels(images, channels)[0]


@dataclass
class TrainData:
    train: Split
    val: Split  # held-out normal data: early stopping and threshold calibration
    skipped: list  # image files that could not be read
    sizes: list = field(default_factory=list)  # the image files' own distinct (W, H), at most SIZES_KEPT; [] when more


SIZES_KEPT = 16  # distinct file sizes a model remembers; a folder of more sizes has no usual size to compare with


def _file_sizes(paths) -> list[tuple[int, int]]:
    """The files' distinct own (W, H), from their headers, sorted; [] when there are more than SIZES_KEPT."""
    from .matching import file_kind

    sizes = set()
    for p in paths:
        if (k := file_kind(p)) is not None:
            sizes.add((k.width, k.height))
            if len(sizes) > SIZES_KEPT:
                return []
    return sorted(sizes)


def _own_size(files, arch: str) -> int:
    """config.auto_image_size of the images' own sizes, read from their headers (unreadable ones left out:
    loading reports them, with the reason)."""
    from .matching import file_kind

    # a FIFO or a device (an error entry) is never opened: opening it would block
    kinds = [file_kind(getattr(f, "path", f)) for f in files if not getattr(f, "error", None)]
    return auto_image_size([(k.height, k.width) for k in kinds if k is not None], arch)


def load_train(cfg: Config) -> TrainData:
    """The normal training data with a seeded hold-out; anomaly classes never enter it.

    Image files are decoded at cfg.image_size in cfg.channels; channels None follows the files (images.py)."""
    skipped: list = []
    sizes: list = []
    if cfg.dataset in ("folder", "mvtec"):
        if cfg.dataset == "folder":
            size = cfg.image_size or _own_size(iter_image_files([cfg.train_dir]), cfg.arch)
            arr, good, skipped = load_folder(cfg.train_dir, size, cfg.channels)
        else:
            from .layouts import mvtec_train

            root = cfg.resolved_data_dir()
            files = list(mvtec_train(root))
            arr, good, skipped = load_files(files, cfg.image_size or _own_size(files, cfg.arch), cfg.channels)
            if not len(arr):
                raise DataError(f"no readable images in {root / 'train' / 'good'}"
                                + (f" (e.g. {skipped[0].path}: {skipped[0].error})" if skipped else ""))
        folder = cfg.train_dir if cfg.dataset == "folder" else cfg.resolved_data_dir() / "train" / "good"
        if len(arr) > 1 and (arr == arr[:1]).all():
            raise DataError(f"all {len(arr)} images in {folder} are the same picture; the detector needs varied "
                            "normal images to learn what normal looks like: add normal images that differ")
        data = Split(as_nchw(arr), torch.full((len(arr),), -1, dtype=torch.int64))
        sizes = _file_sizes(good)
    else:
        normal = parse_classes(cfg.normal)
        full = load_idx_split(cfg.dataset, cfg.resolved_data_dir(), "train", cfg.image_size)
        data = full.subset(torch.isin(full.labels, torch.tensor(normal)).nonzero().squeeze(1))
        data = Split(with_channels(data.images, cfg.channels), data.labels)
    gen = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(data), generator=gen)
    if cfg.limit is not None:
        order = order[: cfg.limit]
    n_val = max(1, int(round(len(order) * cfg.val_fraction)))
    if len(order) - n_val < 1:
        raise DataError(f"only {len(order)} training images; need at least 2 (one to train, one to validate)")
    return TrainData(data.subset(order[n_val:]), data.subset(order[:n_val]), skipped, sizes)


def load_test(dataset: str, data_dir: Path, size: int = 28) -> Split:
    return load_idx_split(dataset, data_dir, "test", size)

