"""What people look at says what it shows: report captions tell true from false positives, legends leave the
curves visible, heat maps are named after the scored files and carry their score and colour scale."""

import re

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from anomalyvae.evaluation import heatmaps


@pytest.fixture
def labelled(tiny_detector):
    """8 normal and 8 anomalous test images: exactly the 16 the report shows."""
    from anomalyvae.data.layouts import TestSet

    images = torch.randint(0, 256, (16, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    labels = np.array([0] * 8 + [1] * 8)
    return TestSet(images.numpy(), labels, ["normal", "anomaly"], labels == 1)


def captions(page: str) -> list[tuple[str, str]]:
    """(outcome, class) of each tile, in order."""
    return re.findall(r'<figcaption>#\d+: <b class="\w+">([a-z ]+)</b>: test image \d+, class (\w+)', page)


@pytest.mark.parametrize("threshold, expected", [
    (-np.inf, {("false positive", "normal"): 8, ("true positive", "anomaly"): 8}),
    (np.inf, {("not flagged", "normal"): 8, ("missed anomaly", "anomaly"): 8}),
])
def test_report_captions_mark_true_and_false_positives_from_the_labels(tiny_detector, labelled, tmp_path,
                                                                        threshold, expected):
    from anomalyvae.pipeline.images import evaluate_detector

    tiny_detector.threshold_ = threshold
    evaluate_detector(tiny_detector, tmp_path, test=labelled)
    page = (tmp_path / "report.html").read_text()
    found = captions(page)
    assert len(found) == 16 and {k: found.count(k) for k in set(found)} == expected
    assert "flagged anomaly" not in page


def test_report_captions_agree_with_scores_and_labels_at_the_calibrated_threshold(tiny_detector, labelled, tmp_path):
    from anomalyvae.pipeline.images import evaluate_detector

    scores = tiny_detector.anomaly_scores(labelled.images)[tiny_detector.score_]
    evaluate_detector(tiny_detector, tmp_path, test=labelled)
    order = np.argsort(-scores)
    outcome = {(True, True): "true positive", (False, True): "false positive", (True, False): "missed anomaly",
               (False, False): "not flagged"}
    want = [(outcome[(bool(labelled.labels[i]), bool(scores[i] > tiny_detector.threshold_))],
             "anomaly" if labelled.labels[i] else "normal") for i in order]
    assert captions((tmp_path / "report.html").read_text()) == want


def test_curve_legends_do_not_cover_the_axes(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from anomalyvae.evaluation import plots

    overlaps, real_savefig = [], Figure.savefig

    def savefig(fig, *args, **kwargs):
        renderer = fig.canvas.get_renderer()
        for ax in fig.axes:
            overlaps.append(ax.get_legend().get_window_extent(renderer).overlaps(ax.get_window_extent(renderer)))
        return real_savefig(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(200), np.ones(200)].astype(bool)
    scores = {name: rng.normal(size=400) + y * k for k, name in enumerate(
        ["recon", "elbo", "iwae", "blur", "latent", "knn", "combined"])}
    assert [p.name for p in plots.curves(y, scores, tmp_path, "combined")] == ["roc.png", "pr.png"]
    assert overlaps == [False, False]


def test_heat_map_names_are_relative_to_the_scored_folder_and_never_hidden(tmp_path, monkeypatch):
    (tmp_path / "imgs" / "sub").mkdir(parents=True)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    roots = ["../imgs", "../one.png"]
    assert heatmaps.heatmap_name("../imgs/a.png", roots) == "a.png.heatmap.png"
    assert heatmaps.heatmap_name("../imgs/sub/b.png", roots) == "sub__b.png.heatmap.png"
    assert heatmaps.heatmap_name("../imgs/.hidden.png", roots) == "hidden.png.heatmap.png"
    assert heatmaps.heatmap_name("../one.png", roots) == "one.png.heatmap.png"
    assert heatmaps.heatmap_name("../imgs/sub/b.png", ["../imgs/"]) == "sub__b.png.heatmap.png"


def test_write_flagged_names_each_strip_and_adds_its_score_and_a_colour_bar(tiny_detector, tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    (tmp_path / "imgs" / "sub").mkdir(parents=True)
    for name in ("imgs/a.png", "imgs/sub/b.png", "imgs/.c.png", "imgs/d.png"):
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(tmp_path / name)
    monkeypatch.chdir(tmp_path / "imgs")
    score = tiny_detector.score_
    pd.DataFrame({"path": ["../imgs/a.png", "../imgs/sub/b.png", "../imgs/.c.png", "../imgs/d.png"],
                  score: [1.5, 22.25, 3.0, -1.0], "is_anomaly": [True, True, True, False], "error": ""}
                 ).to_csv(tmp_path / "s.csv", index=False)
    written = heatmaps.write_flagged(tiny_detector, tmp_path / "s.csv", tmp_path / "maps", roots=["../imgs"])
    assert sorted(p.name for p in written) == ["a.png.heatmap.png", "c.png.heatmap.png", "sub__b.png.heatmap.png"]
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == sorted(p.name for p in written)
    strips = {p.name: np.asarray(Image.open(p).convert("RGB")) for p in written}
    h = heatmaps.display_shape((28, 28))[0]  # 28 px digits drawn enlarged
    a, b = strips["a.png.heatmap.png"], strips["sub__b.png.heatmap.png"]
    top = heatmaps.LABEL_H  # the panels' names above them
    assert a.shape[0] > top + h + 10 and a.shape[1] > 3 * h  # input | reconstruction | map, then a caption
    assert (a[:top].min(axis=2) < 100).any()  # the names: dark text on white
    band_a, band_b = a[top + h:], b[top + h:]
    assert not np.array_equal(band_a, band_b)  # the caption differs: a.png 1.500 vs b.png 22.250
    assert (band_a.min(axis=2) < 100).any()  # dark text on white
    from matplotlib import colormaps

    ends = (np.array([colormaps["inferno"](v)[:3] for v in (0.0, 1.0)]) * 255).round()
    bar = a[top:top + h, 3 * h:]  # right of the three panels
    for colour in ends:  # the colour bar's two ends: inferno at 0 and at the top of the scale
        assert (np.abs(bar.astype(int) - colour).max(axis=2) <= 3).any()


def test_the_mnist_report_is_light_enough_for_mlflows_artifact_view(cli, tmp_path, mnist_dir):
    # MLflow's artifact view showed a 1.6 MB report blank for 20 s+ (issue 22, item 5); the full test split's
    # 10,000 images give the curves their real weight
    code, _, err = cli("train", "--normal", "0-8", "--limit", "300", "--epochs", "1", "--data-dir", mnist_dir,
                       "--no-tracking", "--out", tmp_path / "m")
    assert code == 0, err
    code, _, err = cli("evaluate", "--model", tmp_path / "m", "--no-tracking", "--out", tmp_path / "ev")
    assert code == 0, err
    report = tmp_path / "ev" / "report.html"
    assert report.stat().st_size < 400_000
    assert report.read_text().count("<img") == 19  # curves, histogram and the 16 most anomalous test images
