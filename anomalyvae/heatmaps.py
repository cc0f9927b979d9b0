"""Where in an image the anomaly is: the per-pixel reconstruction error, drawn beside input and reconstruction.

The error of pixel i is -log p(x_i | z = mu), the Bernoulli term whose sum over pixels is the `recon` score,
so a map shows exactly what the score adds up. Colours are on a fixed scale (0 to VMAX nats) so maps of
different images can be compared.
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

VMAX = 5.0  # nats per pixel drawn at full colour; a pixel the model predicts with p = 0.007 is at VMAX
SCALE = 4  # 28 px -> 112 px, nearest neighbour, so single pixels stay visible


@torch.inference_mode()
def pixel_errors(model, images: torch.Tensor, batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Reconstructions in [0, 1], (N, H, W) grey or (N, H, W, 3) colour, and per-pixel -log p(x | z = mu) in
    nats summed over channels, (N, H, W)."""
    from .scoring import reconstruct

    recs, errs = reconstruct(model, images, batch_size)
    return as_display(recs).numpy(), errs.sum(1).numpy()


def as_display(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, H, W) for grey, (N, H, W, 3) for colour: the layout PIL and matplotlib draw."""
    return images[:, 0] if images.shape[1] == 1 else images.permute(0, 2, 3, 1)


def _colour(err: np.ndarray) -> np.ndarray:
    from matplotlib import colormaps

    return (colormaps["inferno"](np.clip(err / VMAX, 0, 1))[..., :3] * 255).astype(np.uint8)


def panel(image: np.ndarray, recon: np.ndarray, err: np.ndarray, gap: int = 2) -> np.ndarray:
    """One RGB strip: input | reconstruction | error map, upscaled SCALE times."""
    grey = lambda a: a if a.ndim == 3 else np.repeat(a[..., None], 3, axis=2)  # noqa: E731
    parts = [grey(image.astype(np.uint8)), grey((recon * 255).round().astype(np.uint8)), _colour(err)]
    h = image.shape[0]
    sep = np.full((h, gap, 3), 128, np.uint8)
    strip = np.concatenate([parts[0], sep, parts[1], sep, parts[2]], axis=1)
    return strip.repeat(SCALE, axis=0).repeat(SCALE, axis=1)


def png_bytes(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


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


def annotate(strip: np.ndarray, text: str) -> np.ndarray:
    """The strip with a band below it: `text` (the score) on the left, under the error map a colour bar
    from 0 to VMAX nats, so a single PNG says what it shows."""
    from PIL import Image, ImageDraw

    h, w = strip.shape[:2]
    bar_w = w // 3 - 8
    band = Image.new("RGB", (w, 30), (255, 255, 255))
    draw = ImageDraw.Draw(band)
    draw.text((4, 9), text, fill=(0, 0, 0))
    ramp = _colour(np.linspace(0, VMAX, bar_w)[None, :].repeat(8, axis=0))
    band.paste(Image.fromarray(ramp), (w - bar_w - 4, 3))
    draw.text((w - bar_w - 4, 13), "0", fill=(0, 0, 0))
    label = f"{VMAX:g} nats"
    draw.text((w - 4 - draw.textlength(label), 13), label, fill=(0, 0, 0))
    return np.concatenate([strip, np.asarray(band)], axis=0)


def write_flagged(det, csv: Path, out_dir: Path, roots: Sequence[str | os.PathLike] = (),
                  chunk_size: int = 1024) -> list[Path]:
    """A heat-map strip (input | reconstruction | error, with the score and a colour bar) for every row of a
    scores CSV flagged as anomalous, named by `heatmap_name` relative to `roots`, the paths that were scored.

    Reads the CSV in chunks and re-decodes only the flagged files, so memory stays bounded for any size.
    """
    from .data import as_nchw
    from .images import load_image

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    taken: set[str] = set()
    for frame in pd.read_csv(csv, chunksize=chunk_size, keep_default_na=False):
        rows = frame[frame["is_anomaly"].astype(str).str.lower() == "true"]
        if rows.empty:
            continue
        flagged = rows["path"].tolist()
        images = as_nchw(np.stack([load_image(p, det.config_.image_size) for p in flagged]))
        recs, errs = pixel_errors(det.model_, images)
        for path, value, img, rec, err in zip(flagged, rows[det.score_].astype(float), as_display(images).numpy(),
                                              recs, errs):
            name = heatmap_name(path, roots)
            stem, n = name[:-len(".heatmap.png")], 1
            while name in taken:  # two scored folders may hold the same relative path
                n += 1
                name = f"{stem}-{n}.heatmap.png"
            taken.add(name)
            text = f"{det.score_} {value:.2f} > threshold {det.threshold_:.2f}"
            (out_dir / name).write_bytes(png_bytes(annotate(panel(img, rec, err), text)))
            written.append(out_dir / name)
    return written
