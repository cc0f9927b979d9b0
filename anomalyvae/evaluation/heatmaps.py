"""Where in an image the anomaly is: per-pixel anomaly maps, and the pictures that show them.

An anomaly map is the per-pixel reconstruction error at z = mu, squared error summed over the channels,
smoothed with a Gaussian of MAP_SIGMA of the image side (detectors.maps.pixel_map, which the `peak` score takes the
maximum of), computed at the model's size and resized bilinearly to the input's own height and width, the
inverse of the resize that prepared it (images.py). Pictures put the input, its
reconstruction and the map over the input side by side, with a colour bar and a caption; the colours run
from 0 to the model's `map_vmax` (the highest map value on its held-out normal images, stored at training),
so any pixel drawn at the top colour is more anomalous than every normal pixel the model was calibrated on.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..detectors.maps import MAP_SIGMA  # the one definition of the maps' smoothing

DISPLAY = (112, 384)  # pictures show an image with its longer side in this range (28 px digits x4, photos shrunk)
ALPHA = 0.5  # the map's weight over the image


def _colour(values: np.ndarray, vmax: float) -> np.ndarray:
    from matplotlib import colormaps

    return (colormaps["inferno"](np.clip(values / vmax, 0, 1))[..., :3] * 255).astype(np.uint8)


def anomaly_maps(model, images: torch.Tensor, sigma: float = MAP_SIGMA, batch_size: int | None = None) -> np.ndarray:
    """Per-pixel anomaly maps (N, S, S) float32 of uint8 images (N, C, S, S), at the model's size."""
    from ..detectors.whole import maps_and_recons

    return maps_and_recons(model, None, images, sigma, batch_size)[0]


def resize_map(amap: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """One (S, S) map at another (H, W): bilinear, the inverse of the plain resize that prepared the image."""
    if amap.shape == tuple(shape):
        return amap
    t = torch.from_numpy(np.ascontiguousarray(amap, dtype=np.float32))[None, None]
    return torch.nn.functional.interpolate(t, size=tuple(shape), mode="bilinear", align_corners=False)[0, 0].numpy()


def display_shape(shape: tuple[int, int]) -> tuple[int, int]:
    """(H, W) to draw an image of `shape` at: small ones enlarged, large ones shrunk, aspect ratio kept."""
    h, w = shape
    lo, hi = DISPLAY
    m = max(h, w)
    scale = hi / m if m > hi else max(1, lo // m)  # whole-number zoom for small images: pixels stay square
    return max(1, round(h * scale)), max(1, round(w * scale))


def _rgb(image: np.ndarray) -> np.ndarray:
    """(C, H, W) uint8 or float in [0, 1] -> (H, W, 3) uint8."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        a = np.round(np.clip(a, 0, 1) * 255).astype(np.uint8)
    return np.repeat(a[0][..., None], 3, axis=2) if a.shape[0] == 1 else a.transpose(1, 2, 0)


def _fit(rgb: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    if rgb.shape[:2] == tuple(shape):
        return rgb
    grow = shape[0] >= rgb.shape[0] and shape[0] % rgb.shape[0] == 0  # whole-number zoom: keep pixels square
    resample = Image.Resampling.NEAREST if grow else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(rgb).resize((shape[1], shape[0]), resample))


def colour_bar(height: int, vmax: float, width: int = 14) -> np.ndarray:
    """A vertical bar from vmax (top) to 0 (bottom) with its three values written beside it."""
    from PIL import Image, ImageDraw

    ramp = np.linspace(vmax, 0, height)[:, None].repeat(width, axis=1)
    label_w = 44
    canvas = Image.new("RGB", (width + label_w, height), (255, 255, 255))
    canvas.paste(Image.fromarray(_colour(ramp, vmax)), (0, 0))
    draw = ImageDraw.Draw(canvas)
    for frac, value in ((0.0, vmax), (0.5, vmax / 2), (1.0, 0.0)):
        y = min(max(0, round(frac * (height - 1)) - 5), height - 11)
        draw.text((width + 3, y), f"{value:.3g}", fill=(0, 0, 0))
    return np.asarray(canvas)


PANELS = ("input", "reconstruction", "anomaly map")
LABEL_H = 14  # the strip above the panels that names them


def figure(image: np.ndarray, recon: np.ndarray, amap: np.ndarray, vmax: float, caption: str = "",
           gap: int = 4, labels: bool = False) -> np.ndarray:
    """One RGB picture: input | reconstruction | map over the input | colour bar, and a caption below; with
    `labels`, each panel's name above it (PANELS).

    `image` (C, H, W) is drawn at its own size (DISPLAY bounds it); `recon` (C, S, S) and `amap` (S, S) are
    resized to it, so the map lies on the pixels it came from.
    """
    from PIL import Image, ImageDraw

    shape = display_shape(image.shape[-2:])
    picture = _fit(_rgb(image), shape)
    rec = _fit(_rgb(recon), shape)
    heat = _colour(resize_map(amap, shape), vmax)
    over = np.round((1 - ALPHA) * picture + ALPHA * heat).astype(np.uint8)
    sep = np.full((shape[0], gap, 3), 255, np.uint8)
    strip = np.concatenate([picture, sep, rec, sep, over, sep, colour_bar(shape[0], vmax)], axis=1)
    if labels:
        head = Image.new("RGB", (strip.shape[1], LABEL_H), (255, 255, 255))
        draw = ImageDraw.Draw(head)
        for k, name in enumerate(PANELS):
            draw.text((k * (shape[1] + gap) + 2, 1), name, fill=(0, 0, 0))
        strip = np.concatenate([np.asarray(head), strip], axis=0)
    if not caption:
        return strip
    canvas = Image.new("RGB", (strip.shape[1], strip.shape[0] + 16), (255, 255, 255))
    canvas.paste(Image.fromarray(strip), (0, 0))
    ImageDraw.Draw(canvas).text((2, strip.shape[0] + 3), caption, fill=(0, 0, 0))
    return np.asarray(canvas)


def map_vmax(det, maps: np.ndarray | None = None) -> float:
    """The top of the colour scale: the model's stored value, else the highest value in `maps`."""
    v = det.info_.get("map_vmax") if hasattr(det, "info_") else None
    if v:
        return float(v)
    return float(maps.max()) if maps is not None and maps.size and maps.max() > 0 else 1.0


def png_bytes(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def shown_name(path: str | os.PathLike) -> str:
    """A file's name as captions show it: with the folder that holds it (scratch/002.png), so that files of one
    name in two folders (test/scratch/002.png, test/good/002.png) are told apart."""
    p = Path(path)
    return f"{p.parent.name}/{p.name}" if p.parent.name else p.name


def heatmap_name(path: str, roots: Sequence[str | os.PathLike] = ()) -> str:
    """The file name of a path's heat map: the path relative to the scored folder that holds it (a file scored
    by itself: its name), with / as __, and never a hidden name. `score ../imgs` gives sub__a.png.heatmap.png."""
    rel = os.path.basename(path)
    for root in map(os.fspath, roots):
        if os.path.isdir(root):
            inside = os.path.relpath(path, root)
            if inside != ".." and not inside.startswith(".." + os.sep):
                rel = inside
                break
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", rel.replace(os.sep, "__")).lstrip("._")
    return (stem[:180] or "image") + ".heatmap.png"


def write_flagged(det, csv: Path, out_dir: Path, roots: Sequence[str | os.PathLike] = (),
                  chunk_size: int = 256, every: bool = False) -> list[Path]:
    """A picture (input | reconstruction | map | colour bar, labelled, with name and score) per row of a scores
    CSV flagged as anomalous (`every`: per scored row, flagged or not), drawn at the file's own resolution (bounded by DISPLAY) and named by
    `heatmap_name` relative to `roots`, the paths that were scored.

    Reads the CSV in chunks and re-decodes only the flagged files, so memory stays bounded for any size.
    """
    from ..data.datasets import as_nchw
    from ..data.images import load_image

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    c, size = det.input_shape_[0], det.input_shape_[-1]
    written: list[Path] = []
    taken: set[str] = set()
    for frame in pd.read_csv(csv, chunksize=chunk_size, keep_default_na=False):
        scored = frame[det.score_].astype(str).str.strip() != ""
        flagged = frame[scored] if every else frame[frame["is_anomaly"].astype(str).str.lower() == "true"]
        if flagged.empty:
            continue
        paths = flagged["path"].tolist()
        images = as_nchw(np.stack([load_image(p, size, c) for p in paths]))
        maps, recs = det.maps_and_recons(images)
        vmax = map_vmax(det, maps)
        for path, score, rec, amap in zip(paths, flagged[det.score_].astype(float), recs, maps):
            name = heatmap_name(path, roots)
            stem, n = name[:-len(".heatmap.png")], 1
            while name in taken:  # two scored folders may hold the same relative path
                n += 1
                name = f"{stem}-{n}.heatmap.png"
            taken.add(name)
            own = load_image(path, None, 3)  # the file as it is, colour where it has colour
            side = ">" if score > det.threshold_ else "<="
            caption = f"{shown_name(path)}: {det.score_} {score:.3f} {side} threshold {det.threshold_:.3f}"
            (out_dir / name).write_bytes(png_bytes(figure(own, rec, amap, vmax, caption, labels=True)))
            written.append(out_dir / name)
    return written
