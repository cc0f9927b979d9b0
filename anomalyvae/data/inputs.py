"""How an array becomes model input: one documented rule for images and feature vectors.

The rule (`input_kind="auto"`):
- 2-D (N, D): feature vectors. With input_kind="images", each row is one image flattened row-major:
  (C*H*W) for a fitted model's shape, else a square grey image (D = S*S).
- 3-D (N, H, W): grey images.
- 4-D: channels-last (N, H, W, C) when the last axis is 1, 3 or 4, else channels-first (N, C, H, W) when
  axis 1 is; a 4th channel (alpha) is dropped.
Images are uint8 in 0..255 or floats in [0, 1], never rescaled twice: floats outside [0, 1] (or other
integers outside 0..255) are a ValueError naming the range. Feature vectors are any finite numbers.
numpy arrays, torch tensors, pandas DataFrames and nested lists are accepted alike.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..errors import InvalidInput

KINDS = ("auto", "images", "features", "series")  # series: only when asked for (a (T, D) array)


def _as_array(X: Any) -> np.ndarray | torch.Tensor:
    if isinstance(X, torch.Tensor):
        return X.detach().cpu()
    if hasattr(X, "to_numpy") and hasattr(X, "columns"):  # pandas
        X = X.to_numpy()
    return X


def kind_of(X: Any, requested: str = "auto") -> str:
    """'images' or 'features' for X under the rule above."""
    if requested not in KINDS:
        raise InvalidInput(f"input_kind is {requested!r}; choose one of {', '.join(KINDS)}")
    if requested != "auto":
        return requested
    X = _as_array(X)
    ndim = X.ndim if isinstance(X, (np.ndarray, torch.Tensor)) else np.asarray(X).ndim
    return "features" if ndim <= 2 else "images"


def _strides(shape) -> tuple[int, ...]:
    """The strides of a C-contiguous tensor of this shape."""
    out, step = [], 1
    for n in reversed(shape):
        out.append(step)
        step *= n
    return tuple(reversed(out))


def to_images(X: Any, shape: tuple[int, int, int] | None = None) -> torch.Tensor:
    """Images as a (N, C, H, W) tensor: uint8 as given, floats as float32 in [0, 1]."""
    X = _as_array(X)
    if not isinstance(X, torch.Tensor):
        X = np.asarray(X)
        if X.dtype == object or X.dtype.kind not in "biuf":
            raise InvalidInput(f"images must be numbers, got dtype {X.dtype}")
        X = torch.from_numpy(np.array(X, copy=True))  # writable and owned: torch warns on read-only arrays
    if X.ndim == 2:
        n, d = X.shape
        if shape is not None and math.prod(shape) == d:
            X = X.reshape(n, *shape)
        elif shape is None and math.isqrt(d) ** 2 == d:
            s = math.isqrt(d)
            X = X.reshape(n, 1, s, s)
        else:
            want = f"{math.prod(shape)} values ({'x'.join(map(str, shape))})" if shape else "a square number of pixels"
            raise InvalidInput(f"each row of flattened images must hold {want}, got {d}")
    elif X.ndim == 3:
        X = X.unsqueeze(1)
    elif X.ndim == 4:
        if X.shape[-1] in (1, 3, 4):
            X = X.permute(0, 3, 1, 2)
        elif X.shape[1] not in (1, 3, 4):
            raise InvalidInput(f"cannot tell the channel axis of images shaped {tuple(X.shape)}; "
                             "use (N, H, W, C) or (N, C, H, W) with C = 1, 3 or 4")
        if X.shape[1] == 4:
            X = X[:, :3]  # alpha is not part of what the image shows
    else:
        raise InvalidInput(f"images must be 3-D (N, H, W) or 4-D (N, H, W, C) / (N, C, H, W), got {X.ndim}-D; "
                         "2-D input is read as feature vectors")
    if X.shape[0] == 0 or X.numel() == 0:
        raise InvalidInput(f"got {tuple(X.shape)}: at least one image with pixels is needed")
    # one memory layout for every container: (N, H, W, 1) permuted passes as contiguous with channels-last
    # strides, and torch's convolutions then sum in another order (scores off in the 4th digit)
    X = X.clone(memory_format=torch.contiguous_format) if X.stride() != _strides(X.shape) else X
    if X.dtype == torch.uint8:
        return X
    if X.dtype == torch.bool:
        raise InvalidInput("images are bool; pass uint8 0..255 or floats in [0, 1]")
    if X.is_floating_point():
        X = X.float()
        lo, hi = float(X.min()), float(X.max())
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise InvalidInput("images contain NaN or infinity; float images must lie in [0, 1]")
        if lo < 0.0 or hi > 1.0:
            raise InvalidInput(f"float images must lie in [0, 1], got values in [{lo:g}, {hi:g}]; "
                             "divide 0..255 pixels by 255 or pass them as uint8")
        return X
    lo, hi = int(X.min()), int(X.max())
    if lo < 0 or hi > 255:
        raise InvalidInput(f"integer images must lie in 0..255, got values in [{lo}, {hi}]")
    return X.to(torch.uint8)


def match_channels(X: torch.Tensor, channels: int) -> tuple[torch.Tensor, str | None]:
    """Convert grey <-> RGB to the model's channels; returns the tensor and a note when it converted."""
    c = X.shape[1]
    if c == channels:
        return X, None
    if channels == 3 and c == 1:
        return X.expand(-1, 3, -1, -1).contiguous(), "grey images given to a colour model were repeated to RGB"
    if channels == 1 and c == 3:
        w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)  # ITU-R 601 luma, as Pillow's convert("L")
        grey = (X.float() * w).sum(1, keepdim=True)
        grey = grey.round().clamp(0, 255).to(torch.uint8) if X.dtype == torch.uint8 else grey
        return grey, "colour images given to a grey model were converted to grey (ITU-R 601 luma)"
    raise InvalidInput(f"images have {c} channels; the model takes {channels}")


def resize(X: torch.Tensor, size: int) -> torch.Tensor:
    """Square resize with antialiased bilinear filtering (aspect ratio ignored), keeping the dtype."""
    if X.shape[-2:] == (size, size):
        return X
    y = torch.nn.functional.interpolate(X.float(), size=(size, size), mode="bilinear", antialias=True,
                                        align_corners=False)
    return y.round().clamp(0, 255).to(torch.uint8) if X.dtype == torch.uint8 else y.clamp(0, 1)


def to_features(X: Any, n_features: int | None = None) -> torch.Tensor:
    """Feature vectors as a (N, D) float32 tensor; scikit-learn's check_array does the checks and messages."""
    from sklearn.utils.validation import check_array

    X = _as_array(X)
    if isinstance(X, torch.Tensor):
        X = X.numpy()
    arr = check_array(X, dtype=[np.float64, np.float32], ensure_2d=True, ensure_min_samples=1)
    if n_features is not None and arr.shape[1] != n_features:
        raise InvalidInput(f"X has {arr.shape[1]} features, but AnomalyVAE is expecting {n_features} features as input")
    return torch.from_numpy(np.array(arr, dtype=np.float32, copy=True))
