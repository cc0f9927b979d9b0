"""A synthetic inspection dataset in the MVTec-AD layout: colour textured surfaces with planted defects and masks.

    python -m anomalyvae.data.synthetic ROOT --n-train 300 --size 128 --seed 0

writes ROOT/train/good/*.png (normal), ROOT/test/good/*.png, ROOT/test/<defect>/*.png and
ROOT/ground_truth/<defect>/<name>_mask.png (0 / 255), every file determined by the seed.

A surface is a sum of a few sinusoidal gratings (three broad, one fine: the product's pattern, which each
image shifts and scales a little, as parts on a line are never placed or lit quite alike) plus fine grain,
coloured along a line between two colours of the product's palette, so its chroma follows its luminance.
The defects:
- scratch: a thin straight line, much darker or lighter than the surface;
- spot:    a small dark disk;
- colour:  a soft blotch whose hue is turned by 90 to 180 degrees at unchanged luminance (ITU-R 601 luma,
           the one grey conversion uses): the same pixels in grey, so only a colour model can see it;
- missing: a polygonal piece cut out, showing the dark background below.
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFECTS = ("scratch", "spot", "colour", "missing")
LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601, as images.py converts colour to grey
# YIQ: Y is the luma above; I and Q carry the colour
_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_RGB = np.linalg.inv(_YIQ)
# how far one normal surface departs from the product's pattern: phase (radians, sd), amplitude (+-), brightness (sd)
JITTER = {"phase": 0.35, "amplitude": 0.1, "brightness": 0.03}


@dataclass(frozen=True)
class Product:
    """What all surfaces of one dataset share: gratings and palette."""

    freqs: np.ndarray  # (K,) cycles per image side
    angles: np.ndarray  # (K,) radians
    weights: np.ndarray  # (K,)
    phases: np.ndarray  # (K,) radians: the product's pattern, which each surface shifts a little
    dark: np.ndarray  # RGB in [0, 1] at texture value 0
    light: np.ndarray  # RGB at texture value 1
    grain: float


def make_product(rng: np.random.Generator) -> Product:
    hue = rng.uniform(0, 1)
    dark = _hsv(hue, 0.55, 0.42)
    light = _hsv((hue + 0.06) % 1.0, 0.45, 0.78)
    # three broad gratings and one fine weave
    return Product(freqs=np.append(rng.uniform(1.5, 4.5, 3), rng.uniform(10, 14)), angles=rng.uniform(0, math.pi, 4),
                   weights=np.append(rng.uniform(0.6, 1.0, 3), 0.35), phases=rng.uniform(0, 2 * math.pi, 4),
                   dark=dark, light=light, grain=0.025)


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    import colorsys

    return np.array(colorsys.hsv_to_rgb(h, s, v))


def surface(product: Product, size: int, rng: np.random.Generator) -> np.ndarray:
    """One normal surface as float RGB (size, size, 3) in [0, 1]: the product's pattern, shifted and scaled a
    little (as parts on a line are never placed or lit quite alike), with fresh grain."""
    y, x = np.mgrid[0:size, 0:size] / size
    t = np.zeros((size, size))
    for f, a, w, p in zip(product.freqs, product.angles, product.weights, product.phases):
        phase = p + rng.normal(0, JITTER["phase"])
        t += w * rng.uniform(1 - JITTER["amplitude"], 1 + JITTER["amplitude"]) * np.sin(
            2 * math.pi * f * (x * math.cos(a) + y * math.sin(a)) + phase)
    t = 0.5 + 0.5 * t / product.weights.sum() + rng.normal(0, JITTER["brightness"])
    t = np.clip(t + rng.normal(0, product.grain, t.shape), 0, 1)
    return product.dark + t[..., None] * (product.light - product.dark)


def _draw(size: int, shape) -> np.ndarray:
    """A bool (size, size) mask from a Pillow drawing callback."""
    from PIL import Image, ImageDraw

    img = Image.new("L", (size, size), 0)
    shape(ImageDraw.Draw(img))
    return np.asarray(img) > 127


def _centre(rng: np.random.Generator, size: int, margin: float) -> tuple[float, float]:
    return tuple(rng.uniform(margin * size, (1 - margin) * size, 2))


def _set_luma(rgb: np.ndarray, luma: np.ndarray) -> np.ndarray:
    """Colours with the given luma: shift all three channels equally (the weights sum to 1), clip, repeat."""
    for _ in range(4):
        rgb = np.clip(rgb + (luma - rgb @ LUMA)[..., None], 0, 1)
    return rgb


def plant(img: np.ndarray, defect: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A copy of `img` (float RGB) with one defect planted, and the defect's bool mask."""
    size = img.shape[0]
    s = size / 128  # defect sizes are set for 128 px and scale with the image
    out = img.copy()
    if defect == "scratch":
        cx, cy = _centre(rng, size, 0.25)
        length, angle = rng.uniform(30, 70) * s, rng.uniform(0, math.pi)
        dx, dy = 0.5 * length * math.cos(angle), 0.5 * length * math.sin(angle)
        width = max(1, round(rng.uniform(1.5, 3) * s))
        mask = _draw(size, lambda d: d.line([(cx - dx, cy - dy), (cx + dx, cy + dy)], fill=255, width=width))
        shade = 0.08 if rng.random() < 0.5 else 0.95
        out[mask] = _set_luma(out[mask], np.full(mask.sum(), shade))
    elif defect == "spot":
        cx, cy = _centre(rng, size, 0.15)
        r = rng.uniform(3, 7) * s
        mask = _draw(size, lambda d: d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255))
        out[mask] = out[mask] * 0.25
    elif defect == "colour":
        cx, cy = _centre(rng, size, 0.2)
        rx, ry = rng.uniform(10, 20, 2) * s
        y, x = np.mgrid[0:size, 0:size] + 0.5
        d = np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2)
        blend = np.clip(1.5 - d, 0, 1)  # full inside 0.5 of the radius, fading to none at 1.5
        turn = rng.uniform(0.5, 1.0) * math.pi * rng.choice([-1, 1])
        yiq = img @ _YIQ.T
        c, si = math.cos(turn), math.sin(turn)
        i, q = yiq[..., 1] * c - yiq[..., 2] * si, yiq[..., 1] * si + yiq[..., 2] * c
        turned = _set_luma(np.stack([yiq[..., 0], i, q], -1) @ _RGB.T, yiq[..., 0])
        out = img + blend[..., None] * (turned - img)
        out = _set_luma(out, img @ LUMA)  # the blend of two colours of one luma keeps it; clipping may not
        mask = blend > 0.5
    elif defect == "missing":
        cx, cy = _centre(rng, size, 0.15)
        n = int(rng.integers(4, 7))
        angles = np.sort(rng.uniform(0, 2 * math.pi, n))
        radii = rng.uniform(8, 16, n) * s
        poly = [(cx + r * math.cos(a), cy + r * math.sin(a)) for a, r in zip(angles, radii)]
        mask = _draw(size, lambda d: d.polygon(poly, fill=255))
        out[mask] = np.array([0.06, 0.05, 0.05]) + rng.normal(0, 0.01, (mask.sum(), 3))
    else:
        raise ValueError(f"unknown defect {defect!r}; choose from {', '.join(DEFECTS)}")
    return np.clip(out, 0, 1), mask


def _png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _u8(img: np.ndarray) -> np.ndarray:
    return np.round(img * 255).astype(np.uint8)


def generate(root: str | os.PathLike, n_train: int = 300, n_test_good: int = 40, n_per_defect: int = 20,
             size: int = 128, seed: int = 0, defects: tuple[str, ...] = DEFECTS) -> Path:
    """Write the dataset under `root` (MVTec-AD layout); the same arguments write the same bytes."""
    root = Path(root)
    product = make_product(np.random.default_rng([seed, 0]))
    for i in range(n_train):
        _png(root / "train" / "good" / f"{i:03d}.png", _u8(surface(product, size, np.random.default_rng([seed, 1, i]))))
    for i in range(n_test_good):
        _png(root / "test" / "good" / f"{i:03d}.png", _u8(surface(product, size, np.random.default_rng([seed, 2, i]))))
    for k, defect in enumerate(defects):
        for i in range(n_per_defect):
            rng = np.random.default_rng([seed, 3, k, i])
            img, mask = plant(surface(product, size, rng), defect, rng)
            _png(root / "test" / defect / f"{i:03d}.png", _u8(img))
            _png(root / "ground_truth" / defect / f"{i:03d}_mask.png", (mask * 255).astype(np.uint8))
    return root


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m anomalyvae.data.synthetic", description=__doc__.split("\n\n")[0])
    p.add_argument("root", help="folder to write (MVTec-AD layout)")
    p.add_argument("--n-train", type=int, default=300, help="normal training images [300]")
    p.add_argument("--n-test-good", type=int, default=40, help="normal test images [40]")
    p.add_argument("--n-per-defect", type=int, default=20, help="test images per defect type [20]")
    p.add_argument("--size", type=int, default=128, help="image side in pixels [128]")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    root = generate(a.root, a.n_train, a.n_test_good, a.n_per_defect, a.size, a.seed)
    print(f"wrote {a.n_train} training and {a.n_test_good + a.n_per_defect * len(DEFECTS)} test images "
          f"({', '.join(DEFECTS)}) of {a.size} px to {root}")


if __name__ == "__main__":
    main()
