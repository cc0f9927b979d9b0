"""Which image sizes the conv VAE takes and how deep it is for each: arithmetic only, without torch, so that
the configuration checks an image size before any data is read or torch imported."""

from __future__ import annotations

from ..errors import AnomalyVAEError

MAX_FINAL = 16  # the conv encoder halves the image until it is even and at most 8, and accepts a final side <= 16


def _halvings(size: int) -> tuple[int, int]:
    k, s = 0, size
    while s % 2 == 0 and (s > 8 or k == 0):  # small images (8, 16) still get one convolution
        s, k = s // 2, k + 1
    return k, s


def fits(size: int) -> bool:
    k, s = _halvings(size)
    return k > 0 and s <= MAX_FINAL


def conv_depth(size: int) -> int:
    """Stride-2 steps for a square image: halve while the side is even and above 8 (at least once); the rest
    stays dense. 28 -> 14 -> 7 (2 steps: the MNIST model), 8 -> 4 (1), 64 -> 8 (3), 128 -> 8 (4), 224 -> 7 (5)."""
    if not fits(size):
        near = [n for n in range(max(8, size - 24), size + 25) if fits(n)]
        raise AnomalyVAEError(
            f"the conv model cannot take image_size {size}: halving it in stride-2 steps must reach an odd side or 8, "
            f"at most {MAX_FINAL}; sizes near it that work: {', '.join(map(str, near[:8]))} (also 28, 32, 64, 128, 256)")
    return _halvings(size)[0]
