"""Folder layouts of image datasets, the one registry of them, and the ground-truth masks that go with them.

- mvtec:  the MVTec-AD layout, recognised from ROOT/train/good/: normal training images in train/good/,
          test images in test/good/ (normal) and test/<defect>/ (anomalous), and optionally one mask per
          anomalous image in ground_truth/<defect>/<name>_mask.png.
- folder: flat folders as anomalib's Folder takes them: --train-dir (normal training images); for
          evaluation --normal-dir and --anomaly-dir, and optionally --mask-dir holding one mask per anomalous
          image under the same relative path and name (any image extension, `_mask` suffix allowed).
Masks are binary (0 and 255, or 0 and 1) and have their image's own height and width; an anomalous image
without its mask (where masks exist), a mask of another size or a mask with other values is a one-line error
naming both files. Normal test images need no mask: all their pixels are normal.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from .images import IMAGE_EXTENSIONS, Found, display_path, iter_image_files, load_image

GOOD = "good"  # the MVTec-AD name of the normal class


@dataclass(frozen=True)
class TestImage:
    """One test file: its class (GOOD for normal, else the defect's name) and its mask, where there is one."""

    path: str
    defect: str
    mask: str | None = None

    @property
    def is_anomaly(self) -> bool:
        return self.defect != GOOD


@dataclass(frozen=True)
class Layout:
    name: str
    help: str
    recognise: Callable[[Path], bool]
    expected: str  # the layout in words, for errors


def _is_mvtec(root: Path) -> bool:
    return (root / "train" / GOOD).is_dir()


def _is_flat(root: Path) -> bool:
    return root.is_dir() and any(os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS for n in os.listdir(root))


LAYOUTS: dict[str, Layout] = {layout.name: layout for layout in (
    Layout("mvtec", "MVTec-AD: ROOT/train/good, ROOT/test/<good|defect>, ROOT/ground_truth/<defect>/<name>_mask.png",
           _is_mvtec, "ROOT/train/good/ (normal training images), ROOT/test/good/ and ROOT/test/<defect>/ "
                      "(test images), optional ROOT/ground_truth/<defect>/<name>_mask.png"),
    Layout("folder", "flat folders: --train-dir; --normal-dir, --anomaly-dir, optional --mask-dir",
           _is_flat, "a folder holding image files (searched recursively)"),
)}


def recognise(root: str | os.PathLike) -> str:
    """The name of the layout `root` is in; a DataError naming the layouts when it is in none."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{display_path(root)} is not a folder; pass the dataset's root folder")
    for layout in LAYOUTS.values():
        if layout.recognise(root):
            return layout.name
    raise DataError(f"{display_path(root)} is in no known layout; expected one of: "
                    + "; ".join(f"{n}: {layout.expected}" for n, layout in LAYOUTS.items()))


def _mvtec_root(root: str | os.PathLike) -> Path:
    root = Path(root)
    if not _is_mvtec(root):
        raise DataError(f"{display_path(root)} has no train/good/ folder; the MVTec-AD layout is "
                        f"{LAYOUTS['mvtec'].expected}")
    return root


def mvtec_train(root: str | os.PathLike) -> list[Found]:
    """The normal training files of an MVTec-AD root (train/good/), with any that cannot be opened."""
    return list(iter_image_files([_mvtec_root(root) / "train" / GOOD]))


def mvtec_test(root: str | os.PathLike) -> list[TestImage]:
    """The test files of an MVTec-AD root, normal first, then each defect in name order, with their masks."""
    root = _mvtec_root(root)
    test = root / "test"
    if not test.is_dir():
        raise DataError(f"{display_path(root)} has no test/ folder; the MVTec-AD layout is {LAYOUTS['mvtec'].expected}")
    classes = sorted((d.name for d in test.iterdir() if d.is_dir()), key=lambda n: (n != GOOD, n))
    truth = root / "ground_truth"
    items: list[TestImage] = []
    for defect in classes:
        for found in iter_image_files([test / defect]):
            mask = None
            if defect != GOOD and truth.is_dir():
                stem = os.path.splitext(os.path.basename(found.path))[0]
                mask = _find_mask(truth / defect, stem) or str(truth / defect / f"{stem}_mask.png")
            items.append(TestImage(found.path, defect, mask))
    if not any(i.is_anomaly for i in items) or not any(not i.is_anomaly for i in items):
        raise DataError(f"{display_path(test)} needs test/good/ and at least one test/<defect>/ folder with images")
    return items


def folder_test(normal_dir: str | os.PathLike, anomaly_dir: str | os.PathLike,
                mask_dir: str | os.PathLike | None = None) -> list[TestImage]:
    """Test files from flat folders: normal ones, then anomalous ones with their masks (when mask_dir is given)."""
    for flag, d in (("--normal-dir", normal_dir), ("--anomaly-dir", anomaly_dir), ("--mask-dir", mask_dir)):
        if d is not None and not os.path.isdir(d):
            raise DataError(f"{flag} {display_path(d)} is not a folder")
    items = folder_items(normal_dir)
    for found in iter_image_files([anomaly_dir]):
        mask = None
        if mask_dir is not None:
            rel = os.path.relpath(found.path, anomaly_dir)
            stem = os.path.splitext(os.path.basename(rel))[0]
            where = Path(mask_dir) / os.path.dirname(rel)
            mask = _find_mask(where, stem) or str(where / (stem + ".png"))
        items.append(TestImage(found.path, "anomaly", mask))
    return items


def folder_items(folder: str | os.PathLike, defect: str = GOOD) -> list[TestImage]:
    """Every image file under `folder` as a test image of one class, without masks."""
    if not os.path.isdir(folder):
        raise DataError(f"{display_path(folder)} is not a folder of images")
    return [TestImage(f.path, defect) for f in iter_image_files([folder])]


def _find_mask(folder: Path, stem: str) -> str | None:
    for name in (f"{stem}_mask", stem):
        for ext in (".png", *sorted(IMAGE_EXTENSIONS - {".png"})):
            if (folder / (name + ext)).is_file():
                return str(folder / (name + ext))
    return None


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) of an image file from its header, without decoding the pixels."""
    from PIL import Image

    with Image.open(path) as img:
        return img.size[1], img.size[0]


def load_mask(mask: str | None, image: str, shape: tuple[int, int]) -> np.ndarray:
    """The mask of `image` (whose own size is `shape` = (H, W)) as a bool (H, W) array, checked.

    A mask that is missing, unreadable, of another size or not binary is a DataError naming both files.
    """
    both = f"(image {display_path(image)})"
    if mask is None or not os.path.isfile(mask):
        raise DataError(f"mask {display_path(mask) if mask else '(none)'} is missing for anomalous image "
                        f"{display_path(image)}; add it or drop the masks folder")
    try:
        m = load_image(mask, None, 1)[0]
    except DataError as e:
        raise DataError(f"mask {display_path(mask)} cannot be used ({e}) {both}") from None
    if m.shape != tuple(shape):
        raise DataError(f"mask {display_path(mask)} is {m.shape[1]}x{m.shape[0]} but its image "
                        f"{display_path(image)} is {shape[1]}x{shape[0]}; a mask must have its image's size")
    values = np.unique(m)
    if not (set(values.tolist()) <= {0, 255} or set(values.tolist()) <= {0, 1}):
        shown = ", ".join(map(str, values[:6])) + (", ..." if len(values) > 6 else "")
        raise DataError(f"mask {display_path(mask)} is not binary (values {shown}); masks hold only 0 and 255 "
                        f"(or 0 and 1) {both}")
    return m > 0


@dataclass
class TestSet:
    """A decoded, labelled test set: images at the model's size and channels, and what pixel metrics need."""

    images: np.ndarray  # (N, C, S, S) uint8
    labels: np.ndarray  # (N,) int64: index into names (a class, or GOOD / a defect)
    names: list[str]
    anomalous: np.ndarray  # (N,) bool
    paths: list[str] | None = None  # the files, where the images came from files
    shapes: list[tuple[int, int]] | None = None  # each file's own (H, W): maps are drawn and compared at it
    masks: list[np.ndarray | None] | None = None  # bool (H, W) per anomalous image, None for normal ones;
    # None as a whole: no ground truth, so no pixel metrics
    skipped: list[Found] = field(default_factory=list)


def load_test_set(items: list[TestImage], size: int, channels: int, notes: set[str] | None = None) -> TestSet:
    """Decode the test files and check their masks before any scoring, so a bad mask fails in seconds."""
    names = [GOOD] + sorted({i.defect for i in items if i.is_anomaly})
    with_masks = any(i.mask is not None for i in items)
    arrays, labels, paths, shapes, masks, skipped = [], [], [], [], [], []
    for item in items:
        try:
            arr = load_image(item.path, size, channels, notes)
            shape = image_size(item.path)
        except DataError as e:
            skipped.append(Found(item.path, str(e)))
            continue
        if with_masks and item.is_anomaly:
            masks.append(load_mask(item.mask, item.path, shape))
        else:
            masks.append(None)
        arrays.append(arr)
        labels.append(names.index(item.defect))
        paths.append(item.path)
        shapes.append(shape)
    if not arrays:
        raise DataError("no readable test images" + (f"; e.g. {skipped[0].path}: {skipped[0].error}" if skipped else ""))
    labels = np.asarray(labels, dtype=np.int64)
    return TestSet(np.stack(arrays), labels, names, labels != 0, paths, shapes, masks if with_masks else None, skipped)
