"""Image files -> the model's input: one uint8 grayscale square per file, and the walk that finds the files.

Preprocessing (stored with every model, applied identically in training and scoring): the image is decoded
with Pillow (8-bit grayscale PNGs of the model's size by libpng, to the same pixels), converted to 8-bit
grayscale (RGB by ITU-R 601 luma, alpha dropped, palette expanded, 16-bit scaled by 1/257), and resized
to image_size x image_size with bilinear filtering, ignoring aspect ratio.
Like MNIST, the model expects light strokes on a dark background.
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import io
import os
import stat
import warnings
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .errors import DataError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"})


def display_path(path: str | os.PathLike) -> str:
    """A printable, UTF-8-safe form of a path whose bytes may not be UTF-8."""
    return os.fsdecode(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _is_gray8_png(data: bytes, size: int) -> bool:
    """An intact, non-interlaced 8-bit grayscale PNG of size x size, checked before libpng sees it.

    torchvision's libpng wrapper crashes the whole process (it does not raise) on a bad zlib checksum,
    so only files whose chunk CRCs, zlib stream and row filters all check out here take the fast path;
    anything else goes to Pillow, which raises the DataError that becomes the file's error row. The
    checks cost about 5 us for an MNIST-sized file.
    """
    if not (len(data) > 33 and data[:8] == _PNG_SIGNATURE and data[12:16] == b"IHDR" and data[24] == 8
            and data[25] == 0 and data[28] == 0 and int.from_bytes(data[16:20], "big") == size
            and int.from_bytes(data[20:24], "big") == size):
        return False
    view, pos, idat = memoryview(data), 8, []
    while True:
        if pos + 12 > len(data):
            return False  # no IEND
        n, kind = int.from_bytes(data[pos:pos + 4], "big"), data[pos + 4:pos + 8]
        end = pos + 12 + n
        if end > len(data) or zlib.crc32(view[pos + 4:end - 4]) != int.from_bytes(data[end - 4:end], "big"):
            return False
        if kind == b"IDAT":
            idat.append(view[pos + 8:end - 4])
        elif kind == b"IEND":
            break
        elif kind != b"IHDR" and kind[:1].isupper():
            return False  # another critical chunk (PLTE in a gray file...): Pillow decides
        pos = end
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error:
        return False
    return len(raw) == size * (size + 1) and max(raw[::size + 1]) <= 4  # one filter byte (0-4) per row


def load_image(path: str | os.PathLike, size: int) -> np.ndarray:
    """Decode one file to a (size, size) uint8 array, or raise DataError saying why it cannot be used.

    8-bit grayscale PNGs of the model's size (MNIST-like files) go through libpng (torchvision.io), which
    decodes the same pixels as Pillow in a fifth of the time; every other file goes through Pillow.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except IsADirectoryError:
        raise DataError("is a directory, not an image file") from None
    except OSError as e:
        raise DataError(f"cannot read: {e.strerror or e}") from None
    decode_png = _libpng() if _is_gray8_png(data, size) else None
    if decode_png is not None:
        try:
            return decode_png(torch.frombuffer(bytearray(data), dtype=torch.uint8))[0].numpy()
        except RuntimeError:
            pass  # corrupt: let Pillow say why
    return _decode_pillow(io.BytesIO(data), size)


@functools.cache
def _libpng():
    """torchvision's libpng decoding op, or None where it cannot be had: then every file goes through Pillow.

    The op is loaded from torchvision's image extension with torch.ops.load_library (4 ms) rather than by
    importing torchvision.io: that imports all of torchvision and, through it, torch._dynamo, 1.5-3.8 s
    here, more than decoding 10k files takes. torchvision 0.29 deprecates these decoders for TorchCodec;
    a self-test on a known file guards against the op changing or disappearing.
    """
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = spec.submodule_search_locations[0]
    for name in ("image_stable", "image"):
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = os.path.join(folder, name + suffix)
            if not os.path.exists(path):
                continue
            try:
                torch.ops.load_library(path)
                op = torch.ops.image.decode_png
                decode = lambda data: op(data, 0, False)  # 0: ImageReadMode.UNCHANGED, no EXIF rotation
                if decode(torch.frombuffer(bytearray(_PROBE_PNG), dtype=torch.uint8)).tolist() == [[[7, 200]]]:
                    return decode
            except (OSError, RuntimeError, AttributeError, TypeError):
                pass
    return None


# a 2x1 8-bit grayscale PNG with pixels 7 and 200, written by Pillow
_PROBE_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000002000000010800000000d14920560000000b49444154789c"
    "63603f010000d900d0d7a6223c0000000049454e44ae426082")


def _decode_pillow(file, size: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(file) as img:
                img.draft("L", (size, size))  # JPEG: decode at reduced scale, cheap for huge photos
                img.load()
                arr = _to_gray(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DataError(f"refused: image too large ({e.args[0].split('could be')[0].strip()})") from None
    except UnidentifiedImageError:
        raise DataError("not a readable image (unknown or corrupt format)") from None
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
