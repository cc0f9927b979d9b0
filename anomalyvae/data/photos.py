"""Real-photo inspection sets in the MVTec-AD layout: crops of real pictures that ship offline, with defects
planted in the test crops. Two kinds of source:
- scenes: scikit-learn's two sample photos (china.jpg, flower.jpg);
- textures: scikit-image's grey surface photos (brick, grass, gravel: 512 x 512), the typical inspection
  surface; they need the `bench` extra (`pip install -e '.[bench]'`: scikit-image's wheel holds the files).

    python -m anomalyvae.data.photos ROOT --normal china --n-train 300 --size 128 --seed 0
    python -m anomalyvae.data.photos ROOT --normal china --n-train 30 --mixed --seed 0
    python -m anomalyvae.data.photos ROOT --normal gravel --n-train 300 --seed 0    # texture: 5 defect kinds

writes ROOT/train/good/*, ROOT/test/good/*, ROOT/test/<defect>/* and ROOT/ground_truth/<defect>/<name>_mask.png.

The normal images are crops of one photo (the `normal` one) at random places and scales (the crop's side is
0.7 to 1.4 times the output side, resampled), so no test crop repeats a training crop pixel for pixel. With
`mixed`, every image has its own size (96 to 200 px a side, aspect ratios 0.6 to 1.6) and file format (PNG
RGB, PNG RGBA, JPEG), as a folder of real photos has. The defects, each sized for a 128 px side and scaled
with the image:
- paste:   a patch of the other photo pasted in (a foreign object);
- scratch: a thin line in a colour of the photo's own, drawn across the surface;
- smudge:  a soft disk where the picture is blurred and its contrast lowered (a stain, a wiped area);
- rotated: a patch of the same photo, rotated by 90 or 180 degrees (right texture, wrong orientation);
- stain:   a soft blot of coffee colour over part of the surface (colour where a grey texture has none);
- swirl:   a disk where the surface is twisted about its centre (a fold, a bent or pressed region: the
  texture's own pixels, moved);
  textures get these two besides the other four (TEXTURE_DEFECTS).
Texture images are saved as grey pixels (R = G = B) except where a stain adds colour.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import numpy as np

DEFECTS = ("paste", "scratch", "smudge", "rotated")
TEXTURE_DEFECTS = (*DEFECTS, "stain", "swirl")
SCENES = ("china", "flower")  # sklearn.datasets.load_sample_image's two pictures
TEXTURES = ("brick", "grass", "gravel")  # skimage.data's grey textures, shipped in its wheel
PHOTOS = (*SCENES, *TEXTURES)
COFFEE = np.array([0.45, 0.27, 0.10])  # the stain's RGB
SCALE = (0.7, 1.4)  # a crop covers this many times the output side of the photo
MIXED_SIDES = (96, 200)
MIXED_ASPECT = (0.6, 1.6)
FORMATS = ("png", "rgba.png", "jpg")
LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601, as images.py converts colour to grey


def photo(name: str) -> np.ndarray:
    """One of the source photos as float RGB (H, W, 3) in [0, 1] (a grey texture's three channels equal)."""
    if name not in PHOTOS:
        raise ValueError(f"unknown photo {name!r}; choose from {', '.join(PHOTOS)}")
    if name in SCENES:
        from sklearn.datasets import load_sample_image

        return load_sample_image(f"{name}.jpg").astype(np.float64) / 255.0
    try:
        import skimage.data
    except ImportError:
        raise ValueError(f"the {name} texture ships with scikit-image; install it: pip install -e '.[bench]'") from None
    return np.repeat(getattr(skimage.data, name)().astype(np.float64)[..., None] / 255.0, 3, axis=2)


def other_photo(name: str) -> str:
    """The source whose patches a `paste` defect puts into crops of `name`: another scene or texture."""
    group = SCENES if name in SCENES else TEXTURES
    return group[(group.index(name) + 1) % len(group)]


def _resample(img: np.ndarray, h: int, w: int) -> np.ndarray:
    from PIL import Image

    u8 = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(u8).resize((w, h), Image.Resampling.BILINEAR), dtype=np.float64) / 255.0


def crop(src: np.ndarray, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """An (h, w) view of `src` at a random place and scale, resampled to (h, w)."""
    H, W = src.shape[:2]
    k = min(rng.uniform(*SCALE), (H - 1) / h, (W - 1) / w)
    ch, cw = max(2, round(h * k)), max(2, round(w * k))
    y, x = int(rng.integers(0, H - ch + 1)), int(rng.integers(0, W - cw + 1))
    return _resample(src[y:y + ch, x:x + cw], h, w)


def _draw(h: int, w: int, shape) -> np.ndarray:
    from PIL import Image, ImageDraw

    img = Image.new("L", (w, h), 0)
    shape(ImageDraw.Draw(img))
    return np.asarray(img) > 127


def _box(h: int, w: int, side_h: int, side_w: int, rng: np.random.Generator) -> tuple[int, int]:
    """The top-left corner of a (side_h, side_w) box that lies inside an (h, w) image, away from the border."""
    my, mx = max(0, h // 10), max(0, w // 10)
    return (int(rng.integers(my, max(my + 1, h - side_h - my + 1))),
            int(rng.integers(mx, max(mx + 1, w - side_w - mx + 1))))


def plant(img: np.ndarray, defect: str, normal: np.ndarray, other: np.ndarray,
          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A copy of `img` (float RGB) with one defect planted, and the defect's bool mask; `normal` is the photo
    the image was cropped from, `other` the foreign one."""
    h, w = img.shape[:2]
    s = min(h, w) / 128
    out = img.copy()
    mask = np.zeros((h, w), bool)
    if defect in ("paste", "rotated"):
        side = max(4, round(rng.uniform(14, 28) * s))
        y, x = _box(h, w, side, side, rng)
        if defect == "paste":
            patch = crop(other, side, side, rng)
        else:
            patch = np.rot90(crop(normal, side, side, rng), int(rng.choice([1, 2])))
        out[y:y + side, x:x + side] = patch
        mask[y:y + side, x:x + side] = True
    elif defect == "scratch":
        cx, cy = rng.uniform(0.25 * w, 0.75 * w), rng.uniform(0.25 * h, 0.75 * h)
        length, angle = rng.uniform(25, 60) * s, rng.uniform(0, math.pi)
        dx, dy = 0.5 * length * math.cos(angle), 0.5 * length * math.sin(angle)
        width = max(1, round(rng.uniform(1.5, 3) * s))
        mask = _draw(h, w, lambda d: d.line([(cx - dx, cy - dy), (cx + dx, cy + dy)], fill=255, width=width))
        flat = img.reshape(-1, 3)
        luma = flat @ LUMA
        # the image's own dark colour on a light surface, its light colour on a dark one: nothing foreign
        # about the colour, only the line
        dark = luma[mask.ravel()].mean() > np.median(luma)
        order = np.argsort(luma)
        out[mask] = flat[order[len(luma) // 50] if dark else order[-len(luma) // 50]]
    elif defect == "smudge":
        from scipy.ndimage import gaussian_filter

        cx, cy = rng.uniform(0.2 * w, 0.8 * w), rng.uniform(0.2 * h, 0.8 * h)
        r = rng.uniform(9, 16) * s
        yy, xx = np.mgrid[0:h, 0:w] + 0.5
        d = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2) / r
        blend = np.clip(1.5 - d, 0, 1)  # full inside half the radius, none beyond 1.5 radii
        blurred = gaussian_filter(img, sigma=(3 * s, 3 * s, 0))
        mean = blurred.reshape(-1, 3).mean(0)
        smeared = mean + 0.5 * (blurred - mean) + rng.uniform(-0.12, 0.12)
        out = img + blend[..., None] * (smeared - img)
        mask = blend > 0.5
    elif defect == "stain":
        cx, cy = rng.uniform(0.2 * w, 0.8 * w), rng.uniform(0.2 * h, 0.8 * h)
        rx, ry, angle = rng.uniform(7, 14) * s, rng.uniform(7, 14) * s, rng.uniform(0, math.pi)
        yy, xx = np.mgrid[0:h, 0:w] + 0.5
        u = (xx - cx) * math.cos(angle) + (yy - cy) * math.sin(angle)
        v = (yy - cy) * math.cos(angle) - (xx - cx) * math.sin(angle)
        d = np.sqrt((u / rx) ** 2 + (v / ry) ** 2)
        blend = np.clip(1.5 - d, 0, 1) * rng.uniform(0.35, 0.6)
        # the surface shows through: its brightness modulates the coffee colour
        luma = (img @ LUMA)[..., None]
        out = img + blend[..., None] * (COFFEE * (0.5 + luma) - img)
        mask = d < 1.0
    elif defect == "swirl":
        from scipy.ndimage import map_coordinates

        cx, cy = rng.uniform(0.25 * w, 0.75 * w), rng.uniform(0.25 * h, 0.75 * h)
        r = rng.uniform(12, 20) * s
        yy, xx = np.mgrid[0:h, 0:w] + 0.5
        dy, dx = yy - cy, xx - cx
        t = np.clip(1 - np.sqrt(dx ** 2 + dy ** 2) / r, 0, 1)
        turn = rng.choice([-1, 1]) * rng.uniform(1.5, 3.0) * t ** 2  # radians, most at the centre
        sy, sx = cy + dy * np.cos(turn) - dx * np.sin(turn), cx + dx * np.cos(turn) + dy * np.sin(turn)
        out = np.stack([map_coordinates(img[..., c], [sy - 0.5, sx - 0.5], order=1, mode="reflect")
                        for c in range(3)], axis=-1)
        mask = np.hypot(dx, dy) < 0.8 * r  # beyond, pixels move by under a pixel or two
    else:
        raise ValueError(f"unknown defect {defect!r}; choose from {', '.join(TEXTURE_DEFECTS)}")
    return np.clip(out, 0, 1), mask


def _save(path: Path, img: np.ndarray, fmt: str) -> Path:
    from PIL import Image

    path = path.with_name(f"{path.name}.{fmt}")
    path.parent.mkdir(parents=True, exist_ok=True)
    u8 = Image.fromarray(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8))
    if fmt == "rgba.png":
        u8 = u8.convert("RGBA")
    u8.save(path, **({"quality": 95} if fmt == "jpg" else {}))
    return path


def _shape(size: int, mixed: bool, rng: np.random.Generator) -> tuple[int, int]:
    if not mixed:
        return size, size
    side, aspect = rng.uniform(*MIXED_SIDES), rng.uniform(*MIXED_ASPECT)
    return max(16, round(side / math.sqrt(aspect))), max(16, round(side * math.sqrt(aspect)))


def generate(root: str | os.PathLike, normal: str = "china", n_train: int = 300, n_test_good: int = 40,
             n_per_defect: int = 20, size: int = 128, mixed: bool = False, seed: int = 0,
             defects: tuple[str, ...] | None = None) -> Path:
    """Write one protocol's dataset under `root` (MVTec-AD layout); the same arguments write the same bytes.
    `defects` None: DEFECTS for a scene, TEXTURE_DEFECTS for a texture."""
    root = Path(root)
    src = photo(normal)
    other = photo(other_photo(normal))
    defects = defects or (TEXTURE_DEFECTS if normal in TEXTURES else DEFECTS)

    def image(rng: np.random.Generator) -> tuple[np.ndarray, str]:
        h, w = _shape(size, mixed, rng)
        fmt = FORMATS[int(rng.integers(len(FORMATS)))] if mixed else "png"
        return crop(src, h, w, rng), fmt

    for i in range(n_train):
        img, fmt = image(np.random.default_rng([seed, 1, i]))
        _save(root / "train" / "good" / f"{i:03d}", img, fmt)
    for i in range(n_test_good):
        img, fmt = image(np.random.default_rng([seed, 2, i]))
        _save(root / "test" / "good" / f"{i:03d}", img, fmt)
    for k, defect in enumerate(defects):
        for i in range(n_per_defect):
            rng = np.random.default_rng([seed, 3, k, i])
            img, fmt = image(rng)
            img, mask = plant(img, defect, src, other, rng)
            stem = _save(root / "test" / defect / f"{i:03d}", img, fmt).name.rsplit(".", 1)[0]
            _save(root / "ground_truth" / defect / f"{stem}_mask", (mask * 1.0)[..., None].repeat(3, 2), "png")
    return root


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m anomalyvae.data.photos", description=__doc__.split("\n\n")[0])
    p.add_argument("root", help="folder to write (MVTec-AD layout)")
    p.add_argument("--normal", choices=PHOTOS, default="china",
                   help="the photo normal images are cropped from: a scene (china, flower) or a texture (brick, grass, "
                        "gravel; needs scikit-image)")
    p.add_argument("--n-train", type=int, default=300, help="normal training images [300]")
    p.add_argument("--n-test-good", type=int, default=40, help="normal test images [40]")
    p.add_argument("--n-per-defect", type=int, default=20, help="test images per defect kind [20]")
    p.add_argument("--size", type=int, default=128, help="image side in pixels, without --mixed [128]")
    p.add_argument("--mixed", action="store_true", help="every image its own size, aspect ratio and format")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    root = generate(a.root, a.normal, a.n_train, a.n_test_good, a.n_per_defect, a.size, a.mixed, a.seed)
    what = f"{MIXED_SIDES[0]}-{MIXED_SIDES[1]} px, mixed" if a.mixed else f"{a.size} px"
    defects = TEXTURE_DEFECTS if a.normal in TEXTURES else DEFECTS
    print(f"wrote {a.n_train} training and {a.n_test_good + a.n_per_defect * len(defects)} test crops of "
          f"{a.normal} ({what}; defects: {', '.join(defects)}) to {root}")


if __name__ == "__main__":
    main()
