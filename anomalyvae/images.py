"""Image files -> the model's input: one uint8 grayscale square per file, and the walk that finds the files.

Preprocessing (stored with every model, applied identically in training and scoring): the image is decoded
with Pillow, converted to 8-bit grayscale (RGB by ITU-R 601 luma, alpha dropped, palette expanded, 16-bit
scaled by 1/257), and resized to image_size x image_size with bilinear filtering, ignoring aspect ratio.
Like MNIST, the model expects light strokes on a dark background.
"""

from __future__ import annotations

import os
import stat
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from .errors import DataError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"})


def display_path(path: str | os.PathLike) -> str:
    """A printable, UTF-8-safe form of a path whose bytes may not be UTF-8."""
    return os.fsdecode(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def load_image(path: str | os.PathLike, size: int) -> np.ndarray:
    """Decode one file to a (size, size) uint8 array, or raise DataError saying why it cannot be used."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.draft("L", (size, size))  # JPEG: decode at reduced scale, cheap for huge photos
                img.load()
                arr = _to_gray(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DataError(f"refused: image too large ({e.args[0].split('could be')[0].strip()})") from None
    except UnidentifiedImageError:
        raise DataError("not a readable image (unknown or corrupt format)") from None
    except IsADirectoryError:
        raise DataError("is a directory, not an image file") from None
    except OSError as e:
        raise DataError(f"cannot read: {e.strerror or e}") from None
    except (ValueError, SyntaxError, EOFError, MemoryError) as e:
        raise DataError(f"corrupt image: {e}") from None
    if arr.shape != (size, size):
        arr = np.asarray(Image.fromarray(arr).resize((size, size), Image.Resampling.BILINEAR))
    return arr


def _to_gray(img) -> np.ndarray:
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return (np.asarray(img, dtype=np.uint16) // 257).astype(np.uint8)
    if img.mode in ("I", "F"):
        a = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if a.max(initial=0) > 255 else 255.0
        return np.clip(a * (255.0 / hi), 0, 255).astype(np.uint8)
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode != "L":
        img = img.convert("L")
    return np.asarray(img, dtype=np.uint8)


@dataclass(frozen=True)
class Found:
    """One entry of a walk: a file to read, or a path that failed before reading (error set)."""

    path: str
    error: str | None = None


def iter_image_files(paths: Iterable[str | os.PathLike]) -> Iterator[Found]:
    """Files named directly are always tried; folders are walked recursively for image extensions.

    Symlinked folders are not followed (no loops); unreadable folders, missing paths and special files
    (FIFOs, devices) become error entries instead of exceptions or hangs, so one bad path never hides the others.
    """
    for given in paths:
        p = os.fspath(given)
        if os.path.isdir(p):
            errors: list[OSError] = []
            for root, dirs, files in os.walk(p, onerror=errors.append):
                dirs.sort()
                for name in sorted(files):
                    if os.path.splitext(os.fsdecode(name))[1].lower() in IMAGE_EXTENSIONS:  # bytes names too
                        path = os.path.join(root, name)
                        yield Found(path, _not_a_file(path))
                while errors:
                    e = errors.pop(0)
                    yield Found(e.filename or p, f"cannot read folder: {e.strerror or e}")
        elif os.path.lexists(p) and not os.path.exists(p):
            yield Found(p, "broken symbolic link (or a symlink loop)")
        elif os.path.exists(p):
            yield Found(p, _not_a_file(p))
        else:
            yield Found(p, "does not exist")


def _not_a_file(path: str) -> str | None:
    """Why a listed path must not be opened: reading a FIFO blocks forever and a device never ends."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None  # a symlink loop or a race: opening it gives the precise error row
    return None if stat.S_ISREG(mode) else "not a regular file (a FIFO, socket or device)"


def load_folder(folder: str | os.PathLike, size: int) -> tuple[np.ndarray, list[str], list[Found]]:
    """All readable images under a folder as one (N, size, size) uint8 array, their paths, and the failures."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise DataError(f"{display_path(folder)} is not a folder; pass a folder of normal images to --train-dir")
    arrays, good, bad = [], [], []
    for found in iter_image_files([folder]):
        if found.error:
            bad.append(found)
            continue
        try:
            arrays.append(load_image(found.path, size))
            good.append(found.path)
        except DataError as e:
            bad.append(Found(found.path, str(e)))
    if not arrays:
        raise DataError(
            f"no readable images in {display_path(folder)} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})"
        )
    return np.stack(arrays), good, bad
