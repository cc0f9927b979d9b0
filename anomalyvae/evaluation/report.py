"""One self-contained HTML page per evaluation, for people: every figure inlined in base64 (a palette PNG, a JPEG
for photos), no scripts, no external files, so it can be mailed, attached to a ticket or opened from MLflow's
artifact view."""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import heatmaps

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1100px; color: #222; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 8px 0; } td, th { padding: 3px 10px; border-bottom: 1px solid #eee; }
th { text-align: left; background: #f6f6f6; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.kpi { display: flex; gap: 14px; flex-wrap: wrap; } .kpi div { background: #f4f6fa; padding: 8px 14px; border-radius: 6px; }
.kpi b { display: block; font-size: 20px; } .figs img { max-width: 49%; } .anom { color: #b00; }
.tp { color: #060; } .fp, .fn { color: #b00; }
.grid { display: flex; flex-wrap: wrap; gap: 12px; } figure { margin: 0; } figcaption { font-size: 12px; color: #555; }
"""


# (is an anomaly, is flagged) -> CSS class, caption, what the image is
OUTCOMES = {
    (True, True): ("tp", "true positive", "an anomaly, flagged"),
    (False, True): ("fp", "false positive", "normal, flagged"),
    (True, False): ("fn", "missed anomaly", "an anomaly, below the threshold"),
    (False, False): ("tn", "not flagged", "normal, below the threshold"),
}


def _img(png: bytes, alt: str) -> str:
    """The picture inline, light: MLflow's artifact view showed a 1.6 MB page blank for 20 s+ (issue 22, item 5).
    In 256 colours where that moves a pixel by under 3 of 255 on average (plots, digits: a third of the bytes,
    the MNIST report 450 KB -> 155 KB), else as a JPEG (photos, which a palette would band)."""
    from PIL import Image

    rgb = Image.open(io.BytesIO(png)).convert("RGB")
    few = rgb.quantize(256, method=Image.Quantize.FASTOCTREE)
    buf = io.BytesIO()
    if np.abs(np.asarray(few.convert("RGB"), np.int16) - np.asarray(rgb, np.int16)).mean() < 3:
        few.save(buf, format="PNG", optimize=True)
        kind = "png"
    else:
        rgb.save(buf, format="JPEG", quality=90, subsampling=0)  # 4:4:4 keeps the colour bar's labels sharp
        kind = "jpeg"
    data = base64.b64encode(buf.getvalue()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/{kind};base64,{data}">'


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else html.escape(str(v))


def _table(header: list[str], rows: list[list[Any]], numeric_from: int = 1) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f'<td{" class=n" if i >= numeric_from else ""}>{_fmt(v)}</td>'
                                    for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write(out: Path, result: dict[str, Any], det, images: torch.Tensor, labels: np.ndarray, scores: np.ndarray,
          figures: list[Path], top: int = 16, names: list[str] | None = None, paths: list[str] | None = None) -> Path:
    """Write out/report.html: headline numbers, curves and histograms (the PNGs in `figures`), per-class
    table and the `top` most anomalous test images, each beside its reconstruction and its anomaly map over
    it (at the file's own resolution where `paths` names the files), with a colour bar."""
    from ..data.images import load_image

    cfg = det.config_
    order = np.argsort(-scores)[:top]
    maps, recs = det.maps_and_recons(torch.as_tensor(images)[torch.from_numpy(order.copy())])
    vmax = heatmaps.map_vmax(det, maps)
    # the evaluation knows each class's truth: say which of the top images are right to be flagged
    truth = {r["label"]: r["anomaly"] for r in result["per_class"]}
    tiles, outcomes = [], []
    for rank, (i, rec, amap) in enumerate(zip(order, recs, maps), 1):
        label = int(labels[i])
        name = names[label] if names and 0 <= label < len(names) else str(label)
        outcome = OUTCOMES[(truth.get(label, False), bool(scores[i] > det.threshold_))]
        outcomes.append(outcome)
        shown = load_image(paths[i], None, 3) if paths is not None else np.asarray(images[i])
        what = heatmaps.shown_name(paths[i]) if paths is not None else f"test image {i}"
        picture = heatmaps.png_bytes(heatmaps.figure(shown, rec, amap, vmax))
        tiles.append(f"<figure>{_img(picture, what)}"
                     f"<figcaption>#{rank}: <b class=\"{outcome[0]}\">{outcome[1]}</b>: {html.escape(what)}, class "
                     f"{html.escape(name)} ({outcome[2]}), {det.score_} {scores[i]:.2f}</figcaption></figure>")
    tally = ", ".join(f"{outcomes.count(o)} {o[1]}" for o in OUTCOMES.values() if o in outcomes)
    kpis = [("AUROC", result["auroc"]), ("AUPRC", result["auprc"]), ("threshold", result["threshold"]),
            ("FPR on test normals", result["fpr"]), ("target FPR", cfg.fpr),
            ("FPR on held-out normals", det.info_.get("val_fpr", float("nan"))),
            ("precision", result["precision"]), ("recall", result["recall"]), ("F1", result["f1"])]
    pixel = "pixel_auroc" in result  # where the test set has ground-truth masks
    if pixel:
        kpis[2:2] = [("pixel AUROC", result["pixel_auroc"]), ("pixel AUPRO (to 30% FPR)", result["pixel_aupro"])]
    score_rows = [[k + (" (default)" if k == result["score"] else ""), v["auroc"], v["auprc"]]
                  for k, v in result["scores"].items()]
    class_rows = [[r["class"], "anomaly" if r["anomaly"] else "normal", r["n"], r["mean_score"], r.get("auroc", "")]
                  + ([r.get("pixel_auroc", ""), r.get("pixel_aupro", "")] if pixel else []) for r in result["per_class"]]
    class_header = ["class", "role", "n", f"mean {det.score_}", "AUROC vs normals"] + (
        ["pixel AUROC", "pixel AUPRO"] if pixel else [])
    figs = "".join(_img(Path(f).read_bytes(), Path(f).stem) for f in figures)
    from ..modeldir import learned

    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>anomalyvae evaluation: AUROC {result['auroc']:.4f}</title>
<style>{CSS}</style></head><body>
<h1>anomalyvae evaluation</h1>
<p>Model <code>{html.escape(str(result.get('model_dir') or ''))}</code>: {html.escape(learned(det))};
score <b>{html.escape(det.score_)}</b>.
Test set: {result['n_test']} images, {result['n_anomalies']} anomalies. Written
{dt.datetime.now().strftime('%Y-%m-%d %H:%M')}.</p>
<div class="kpi">{''.join(f'<div>{html.escape(k)}<b>{_fmt(float(v))}</b></div>' for k, v in kpis)}</div>
<p>An image is flagged when its {html.escape(det.score_)} score exceeds the threshold, set at the
{1 - cfg.fpr:.0%} quantile of the score on held-out normal training data. At that threshold:
tp {result['tp']}, fp {result['fp']}, tn {result['tn']}, fn {result['fn']}.</p>
<h2>Ranking quality of each score</h2>{_table(['score', 'AUROC', 'AUPRC'], score_rows)}
<h2>ROC and precision-recall curves, score histograms</h2><div class="figs">{figs}</div>
<h2>Per class</h2>{_table(class_header, class_rows, 2)}
<h2>The {len(order)} most anomalous test images</h2>
<p>{tally}. Each: input | reconstruction at z = mu | anomaly map over the input (per-pixel squared
reconstruction error summed over channels, smoothed) | colour bar, black 0 to yellow {vmax:.3g} (the highest map
value on the model's held-out normal images).</p><div class="grid">{''.join(tiles)}</div>
</body></html>
"""
    path = Path(out) / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
