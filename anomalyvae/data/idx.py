"""Read IDX files (the MNIST format, http://yann.lecun.com/exdb/mnist/), gzipped or not, checking every field."""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError

# type code -> big-endian dtype, from the format's description
_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def parse_idx(raw: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode the bytes of one IDX file; anything short, long or malformed is a DataError naming the file."""
    if len(raw) < 4:
        raise DataError(f"{name}: only {len(raw)} bytes, too short to be an IDX file; re-download it")
    zero1, zero2, code, ndim = raw[0], raw[1], raw[2], raw[3]
    if zero1 != 0 or zero2 != 0 or code not in _DTYPES or ndim == 0:
        raise DataError(
            f"{name}: wrong magic number 0x{raw[:4].hex()} (not an IDX file); re-download the dataset file"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{name}: header cut short ({len(raw)} bytes); the file is truncated, re-download it")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_DTYPES[code])
    expected = math.prod(dims) * dtype.itemsize  # Python ints: no overflow on hostile headers
    got = len(raw) - header
    if got != expected:
        state = "truncated" if got < expected else "longer than its header says"
        raise DataError(
            f"{name}: {state}: header {dims} needs {expected} data bytes, file has {got}; re-download it"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return data.astype(dtype.newbyteorder("="), copy=False)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file; a .gz (by content, not name) is decompressed first."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise DataError(f"{p}: cannot read ({e.strerror or e}); check the path and its permissions") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as e:
            raise DataError(f"{p}: broken gzip data ({e}); the file is truncated or corrupt, re-download it") from None
    return parse_idx(raw, str(p))
