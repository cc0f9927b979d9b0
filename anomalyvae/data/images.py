"""Image files -> the model's input: one uint8 (C, size, size) array per file, and the walk that finds the files.

Preprocessing (stored with every model, applied identically in training and scoring):
- decode with Pillow (8-bit grayscale PNGs of the model's size by libpng, to the same pixels);
- channels: grey stays one channel, colour becomes three (RGB): alpha is dropped (not composited), palettes
  expanded, 16-bit grey scaled by 1/257. A colour file whose pixels all have R = G = B counts as grey. A
  model's channels come from its training data (any colour image -> 3) unless given (`--channels 1|3`);
  a file of the other kind is converted to the model's: colour to grey by ITU-R 601 luma (Pillow's
  convert("L")), grey to RGB by repeating the channel;
- size: one rule for every shape, a plain bilinear resize to size x size that ignores the aspect ratio
  (as anomalib's default Resize). Nothing is cropped away, so a defect near the border stays in view and
  an anomaly map resized back to the file's own height and width lands on the pixels it came from; masks
  are compared at the file's own resolution, never cropped or padded.
Files of no pixels or of more than MAX_PIXELS are refused before decoding (DataError: an error row).
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

from ..errors import DataError
from .preflight import display_path

CHANNELS = (1, 3)  # grey, RGB
MAX_PIXELS = 100_000_000  # larger files are refused from their header: 100 MP of RGB is 300 MB decoded
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"})


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


def load_image(path: str | os.PathLike, size: int | None, channels: int = 1, notes: set[str] | None = None) -> np.ndarray:
    """Decode one file to a (channels, size, size) uint8 array, or raise DataError saying why it cannot be used.

    size None keeps the file's own height and width (the report draws maps over the original). `notes`, when
    given, collects a sentence for each kind of conversion the model's channels forced (colour to grey, grey
    to colour), so a caller can say it once. 8-bit grayscale PNGs of the model's size (MNIST-like files) go
    through libpng (torchvision.io), which decodes the same pixels as Pillow in a fifth of the time; every
    other file goes through Pillow.
    """
    if channels not in CHANNELS:
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except IsADirectoryError:
        raise DataError("is a directory, not an image file") from None
    except OSError as e:
        raise DataError(f"cannot read: {e.strerror or e}") from None
    if not data:
        raise DataError("empty file (0 bytes)")
    if data[:8] == _PNG_SIGNATURE and data[12:16] == b"IHDR" and not (data[16:20].strip(b"\0") and data[20:24].strip(b"\0")):
        # Pillow calls such a file unidentifiable; say what is wrong with it
        raise DataError(f"image has no pixels ({int.from_bytes(data[16:20], 'big')} x {int.from_bytes(data[20:24], 'big')})")
    decode_png = _libpng() if size is not None and _is_gray8_png(data, size) else None
    if decode_png is not None:
        try:
            grey = decode_png(torch.frombuffer(bytearray(data), dtype=torch.uint8)).numpy()
            if channels == 3 and notes is not None:
                notes.add(GREY_TO_COLOUR)
            return np.repeat(grey, channels, axis=0) if channels == 3 else grey
        except RuntimeError:
            pass  # corrupt: let Pillow say why
    return _decode_pillow(io.BytesIO(data), size, channels, notes)


GREY_TO_COLOUR = "grey images given to a colour model were repeated to RGB"
COLOUR_TO_GREY = "colour images given to a grey model were converted to grey (ITU-R 601 luma)"


def other_size_note(size: tuple[int, int], trained: list[tuple[int, int]], side: int) -> str:
    """The line that says, once, what happens to test images of another size (W, H) than the training files'."""
    seen = ", ".join(f"{w}x{h}" for w, h in trained[:3]) + (" ..." if len(trained) > 3 else "")
    return (f"test images of another size than the training images ({size[0]}x{size[1]}; trained on {seen}) were "
            f"resized to the model's {side}x{side} as those were (bilinear, aspect ratio ignored, nothing cropped); "
            "their maps are drawn at each file's own size")


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


def _decode_pillow(file, size: int | None, channels: int, notes: set[str] | None = None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # Pillow warns from 89 megapixels; our own limit (MAX_PIXELS) is checked from the header below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(file) as img:
                w, h = img.size
                if w * h == 0:
                    raise DataError(f"image has no pixels ({w} x {h})")
                if w * h > MAX_PIXELS:
                    raise DataError(f"refused: image too large to decode safely ({w} x {h} = {w * h / 1e6:.0f} "
                                    f"megapixels; the limit is {MAX_PIXELS / 1e6:.0f})")
                if size is not None:
                    img.draft("RGB" if channels == 3 else "L", (size, size))  # JPEG: decode at reduced scale
                img.load()
                pic, native = _to_8bit(img, channels)
                if size is not None and pic.size != (size, size):
                    pic = pic.resize((size, size), Image.Resampling.BILINEAR)
                arr = np.asarray(pic, dtype=np.uint8)
    except Image.DecompressionBombError as e:
        raise DataError(f"refused: image too large to decode safely (over {MAX_PIXELS / 1e6:.0f} megapixels: "
                        f"{e.args[0].split(' exceeds')[0].strip()})") from None
    except UnidentifiedImageError:
        raise DataError("not a readable image (unknown or corrupt format)") from None
    except OSError as e:
        raise DataError(f"cannot read: {e.strerror or e}") from None
    except (ValueError, SyntaxError, EOFError, MemoryError) as e:
        raise DataError(f"corrupt image: {e}") from None
    if notes is not None and native != channels:
        notes.add(GREY_TO_COLOUR if channels == 3 else COLOUR_TO_GREY)
    return arr[None] if arr.ndim == 2 else np.ascontiguousarray(arr.transpose(2, 0, 1))


_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"})


def _to_8bit(img, channels: int):
    """An 8-bit "L" or "RGB" Pillow image of `img`, and the channels the file itself holds (1 or 3).

    Alpha is dropped (not composited), palettes expanded, 16-bit and 32-bit grey scaled to 0..255; a colour
    file whose pixels are all grey (R = G = B) counts as grey.
    """
    from PIL import Image

    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        grey = Image.fromarray((np.asarray(img, dtype=np.uint16) // 257).astype(np.uint8))
    elif img.mode in ("I", "F"):
        a = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if a.max(initial=0) > 255 else 255.0
        grey = Image.fromarray(np.clip(a * (255.0 / hi), 0, 255).astype(np.uint8))
    elif img.mode in _GREY_MODES:
        grey = img.convert("L")
    else:
        rgb = (img.convert("RGBA") if img.mode in ("P", "PA") else img).convert("RGB")
        a = np.asarray(rgb)
        if not ((a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()):
            return (rgb if channels == 3 else rgb.convert("L")), 3
        grey = Image.fromarray(a[..., 0])  # R = G = B: luma is R exactly (Pillow's weights sum to 65536)
    return (grey.convert("RGB") if channels == 3 else grey), 1


def is_colour(images: np.ndarray | torch.Tensor) -> bool:
    """True when any pixel of (N, 3, H, W) or (3, H, W) images has R, G and B not all equal."""
    a = images if isinstance(images, np.ndarray) else images.numpy()
    if a.shape[-3] != 3:
        return False
    c = np.moveaxis(a, -3, 0)
    return bool((c[0] != c[1]).any() or (c[1] != c[2]).any())


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


def load_files(paths: Iterable[str | os.PathLike], size: int, channels: int | None = None,
               notes: set[str] | None = None) -> tuple[np.ndarray, list[str], list[Found]]:
    """The readable files among `paths` as one (N, C, size, size) uint8 array, their paths, and the failures.

    channels None decides from the files: three if any of them is colour, else one (decoded as RGB, then
    reduced to the one channel, which equals a grey decode: R = G = B is its own luma).
    """
    arrays, good, bad = [], [], []
    for found in paths if not isinstance(paths, (str, bytes, os.PathLike)) else [paths]:
        found = found if isinstance(found, Found) else Found(os.fspath(found), _not_a_file(os.fspath(found)))
        if found.error:
            bad.append(found)
            continue
        try:
            arrays.append(load_image(found.path, size, channels or 3, notes))
            good.append(found.path)
        except DataError as e:
            bad.append(Found(found.path, str(e)))
    if not arrays:
        return np.zeros((0, channels or 1, size, size), np.uint8), good, bad
    arr = np.stack(arrays)
    if channels is None and not is_colour(arr):
        arr = np.ascontiguousarray(arr[:, :1])
    return arr, good, bad


def load_folder(folder: str | os.PathLike, size: int, channels: int | None = None,
                notes: set[str] | None = None) -> tuple[np.ndarray, list[str], list[Found]]:
    """All readable images under a folder as one (N, C, size, size) uint8 array, their paths, and the failures."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise DataError(f"{display_path(folder)} is not a folder; pass a folder of images")
    arr, good, bad = load_files(iter_image_files([folder]), size, channels, notes)
    if not good:
        raise DataError(
            f"no readable images in {display_path(folder)} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})"
            + (f"; e.g. {display_path(bad[0].path)}: {bad[0].error}" if bad else "")
        )
    return arr, good, bad
