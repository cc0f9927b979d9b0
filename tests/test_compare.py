"""The compare detector (anomalyvae/detectors/compare.py): made defects, a learned comparison that finds planted
ones, colour kept on a grey surface, save and load, the CLI."""

import json
import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from anomalyvae.config import make_config
from anomalyvae.data import photos
from anomalyvae.detectors import compare
from anomalyvae.estimator import AnomalyVAE

SIDE = 64


def grey_crops(n: int, seed: int) -> np.ndarray:
    """(n, SIDE, SIDE) uint8 crops of the gravel texture: a grey surface."""
    src = photos.photo("gravel")[..., 0]
    rng = np.random.default_rng(seed)
    return np.stack([np.round(photos.crop(src[..., None].repeat(3, 2), SIDE, SIDE, rng)[..., 0] * 255)
                     .astype(np.uint8) for _ in range(n)])


def chroma_blots(grey: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """RGB copies (n, SIDE, SIDE, 3) of grey images with a 14 px blot whose colour keeps each pixel's grey level
    (ITU-R 601 luma) and changes only its hue: converted to grey, the blot is gone. And where it is."""
    rng = np.random.default_rng(seed)
    rgb = grey[..., None].repeat(3, 3).astype(np.float64)
    masks = np.zeros(grey.shape, bool)
    for img, mask in zip(rgb, masks):
        y, x = rng.integers(8, SIDE - 22, 2)
        mask[y:y + 14, x:x + 14] = True
        v = img[mask][:, 0]
        # red up by a, green down by a * 0.299 / 0.587: luma unchanged; a kept where nothing clips
        a = np.minimum(40.0, np.minimum(255.0 - v, v * 0.587 / 0.299))
        img[mask] += a[:, None] * np.array([1.0, -0.299 / 0.587, 0.0])
    return np.round(rgb).astype(np.uint8), masks


@pytest.fixture(scope="module")
def fitted():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AnomalyVAE(detector="compare", epochs=25, random_state=0, threads=1).fit(grey_crops(64, 0))


def test_made_defects_change_only_their_masks_and_leave_a_share_clean():
    x = torch.rand(64, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    bad, masks = compare.make_defects(x, torch.Generator().manual_seed(1))
    assert bad.shape == x.shape and masks.shape == (64, 48, 48)
    assert set(masks.unique().tolist()) <= {0.0, 1.0}
    changed = (bad - x).abs().amax(1) > 1e-6
    assert not (changed & (masks == 0)).any()  # nothing outside a mask moves
    clean = masks.flatten(1).amax(1) == 0
    assert 16 <= clean.sum() <= 48  # about half of the batch stays clean
    assert (changed.flatten(1).sum(1)[~clean] >= 16).all()  # every defect is visible
    again, _ = compare.make_defects(x, torch.Generator().manual_seed(1))
    assert torch.equal(bad, again)  # the same generator makes the same defects


def test_a_grey_training_set_gives_a_colour_model(fitted):
    assert fitted.input_shape_ == (3, SIDE, SIDE) and fitted.config_.channels == 3


def test_a_blot_of_colour_invisible_in_grey_is_found_on_a_grey_surface(fitted):
    normal = grey_crops(20, 1)
    blotted, masks = chroma_blots(grey_crops(20, 2), 3)
    luma = np.round(blotted.astype(np.float64) @ [0.299, 0.587, 0.114])
    assert np.abs(luma - grey_crops(20, 2)).max() <= 1  # in grey the blot is not there at all
    s = fitted.anomaly_scores(np.concatenate([normal[..., None].repeat(3, 3), blotted]))["compare"]
    assert roc_auc_score([0] * 20 + [1] * 20, s) > 0.9  # a grey model ranks these at chance: it cannot see them
    maps, recs = fitted.maps_and_recons(torch.from_numpy(blotted.transpose(0, 3, 1, 2).copy()))
    assert maps.shape == (20, SIDE, SIDE) and recs.shape == (20, 3, SIDE, SIDE)
    assert np.mean([m[k].mean() > m[~k].mean() for m, k in zip(maps, masks)]) >= 0.9  # the map points at it


def test_a_compare_model_is_saved_and_loaded_as_data_with_the_same_scores(fitted, tmp_path):
    x = grey_crops(6, 4)
    fitted.save(tmp_path / "m")
    back = AnomalyVAE.load(tmp_path / "m")
    assert back.config_.detector == "compare" and isinstance(back.model_, compare.CompareNet)
    np.testing.assert_allclose(back.anomaly_scores(x)["compare"], fitted.anomaly_scores(x)["compare"], rtol=1e-5)
    assert back.threshold_ == fitted.threshold_
    assert not list((tmp_path / "m").glob("*.pt")) and not list((tmp_path / "m").glob("*.pkl"))


def test_the_compare_detector_has_one_score_works_in_rgb_and_learns_no_labels():
    cfg = make_config(dataset="mvtec", detector="compare")
    assert cfg.score == "compare" and cfg.channels == 3
    with pytest.raises(Exception, match="compare detector works in 3 channels"):
        make_config(dataset="mvtec", detector="compare", channels=1)
    with pytest.raises(Exception, match="not computed by the compare detector"):
        make_config(dataset="mvtec", detector="compare", score="local")
    with pytest.raises(Exception, match="use_labels"):
        make_config(dataset="mvtec", detector="compare", use_labels=True)


def test_images_smaller_than_the_restorers_code_are_one_line(cli, tmp_path):
    from PIL import Image

    root = tmp_path / "small" / "train" / "good"
    root.mkdir(parents=True)
    for i, img in enumerate(grey_crops(12, 5)):
        Image.fromarray(img[:16, :16]).save(root / f"{i}.png")
    code, out, err = cli("train", "--dataset", "mvtec", "--data-dir", tmp_path / "small", "--detector", "compare",
                         "--epochs", "1", "--no-tracking", "--out", tmp_path / "m")
    assert code == 2 and "smaller than the compare detector's 32 px" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m").exists()


def test_train_evaluate_and_score_a_texture_folder_from_the_cli(cli, tmp_path):
    root = photos.generate(tmp_path / "gravel", normal="gravel", n_train=24, n_test_good=4, n_per_defect=2,
                           size=SIDE, seed=0)
    code, out, err = cli("train", "--dataset", "mvtec", "--data-dir", root, "--detector", "compare", "--epochs", "2",
                         "--no-tracking", "--out", tmp_path / "m")
    assert code == 0, err
    assert "trained the compare detector" in out
    code, out, err = cli("evaluate", "--model", tmp_path / "m", "--no-tracking", "--metrics-out", tmp_path / "m.json")
    assert code == 0, err
    m = json.loads((tmp_path / "m.json").read_text())
    kinds = {r["class"] for r in m["per_class"] if r["anomaly"]}
    assert kinds == set(photos.TEXTURE_DEFECTS) and 0 <= m["pixel_aupro"] <= 1
    assert "compare (restoring VAE + learned comparison)" in out
    code, out, err = cli("score", root / "test" / "stain", "--model", tmp_path / "m", "--out", tmp_path / "s.csv")
    assert code == 0, err
    assert len((tmp_path / "s.csv").read_text().splitlines()) == 1 + 2
