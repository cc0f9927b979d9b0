"""The local detector (anomalyvae/detectors/local.py): patches, memory banks, maps; the image-size rule; small-data warnings."""

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from anomalyvae.data import photos
from anomalyvae.config import AUTO_IMAGE_CAP, auto_image_size, make_config
from anomalyvae.estimator import AnomalyVAE

SIDE = 48


def crops(n: int, seed: int, photo: str = "china") -> np.ndarray:
    src = photos.photo(photo)
    rng = np.random.default_rng(seed)
    return np.stack([np.round(photos.crop(src, SIDE, SIDE, rng) * 255).astype(np.uint8) for _ in range(n)])


def pasted(images: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each image with a 12 px patch of the other photo pasted in, and where."""
    other, rng = photos.photo("flower"), np.random.default_rng(seed)
    out, masks = images.copy(), np.zeros(images.shape[:3], bool)
    for img, mask in zip(out, masks):
        y, x = rng.integers(4, SIDE - 16, 2)
        img[y:y + 12, x:x + 12] = np.round(photos.crop(other, 12, 12, rng) * 255).astype(np.uint8)
        mask[y:y + 12, x:x + 12] = True
    return out, masks


@pytest.fixture(scope="module")
def fitted():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AnomalyVAE(detector="local", epochs=2, random_state=0, threads=1).fit(crops(60, 0))


def test_the_local_detector_ranks_pasted_patches_above_normal_crops(fitted):
    normal = crops(20, 1)
    bad, _ = pasted(crops(20, 2), 3)
    s = fitted.anomaly_scores(np.concatenate([normal, bad]))["local"]
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score([0] * 20 + [1] * 20, s) > 0.75  # 0.84 measured; a broken map ranks at chance, 0.5


def test_its_map_is_brightest_on_the_pasted_patch(fitted):
    bad, masks = pasted(crops(20, 4), 5)
    maps, recs = fitted.maps_and_recons(torch.from_numpy(bad.transpose(0, 3, 1, 2).copy()))
    assert maps.shape == (20, SIDE, SIDE) and recs.shape == (20, 3, SIDE, SIDE)
    inside = np.mean([m[k].mean() > m[~k].mean() for m, k in zip(maps, masks)])
    assert inside >= 0.9


def test_a_local_model_is_saved_and_loaded_as_data_with_the_same_scores(fitted, tmp_path):
    x = crops(5, 6)
    fitted.save(tmp_path / "m")
    back = AnomalyVAE.load(tmp_path / "m")
    assert back.config_.detector == "local" and len(back.state_.banks) == len(fitted.state_.banks)
    np.testing.assert_allclose(back.anomaly_scores(x)["local"], fitted.anomaly_scores(x)["local"], rtol=1e-5)
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["local"]["scales"] == [1.0, 0.5, 0.25] and meta["info"]["bank_codes"]


def test_the_local_detector_has_one_score_and_refuses_the_global_ones():
    with pytest.raises(Exception, match="not computed by the local detector"):
        make_config(dataset="folder", train_dir="x", score="blur")
    assert make_config(dataset="folder", train_dir="x").score == "local"


def test_folders_default_to_the_local_detector_and_class_datasets_to_the_global_one():
    assert make_config(dataset="mvtec").detector == "local"
    assert make_config(dataset="folder", train_dir="x").detector == "local"
    assert make_config().detector == "global" and make_config().image_size == 28


def test_the_image_size_follows_the_images_median_shorter_side_up_to_the_cap():
    assert auto_image_size([(100, 60), (90, 70), (300, 64)], "mlp") == 64
    assert auto_image_size([(2000, 3000)] * 3, "mlp") == AUTO_IMAGE_CAP
    assert auto_image_size([(5, 900)], "mlp") == 16  # a sliver is not made smaller than 16 px
    assert auto_image_size([(100, 100)], "conv") == 96  # the global conv model takes 96, not 100


def _folder(path, sizes):
    path.mkdir(parents=True)
    src = photos.photo("china")
    for i, (h, w) in enumerate(sizes):
        arr = np.round(photos.crop(src, h, w, np.random.default_rng(i)) * 255).astype(np.uint8)
        Image.fromarray(arr).save(path / f"{i:02d}.png")
    return path


def test_a_folder_trains_at_its_own_size_and_any_aspect_ratio(cli, tmp_path):
    folder = _folder(tmp_path / "imgs", [(40, 72), (44, 300), (500, 40), (41, 41)] * 4)
    code, out, err = cli("train", "--dataset", "folder", "--train-dir", folder, "--epochs", "1", "--no-tracking",
                         "--out", tmp_path / "m")
    assert code == 0, err
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["input_shape"] == [3, 40, 40] and meta["config"]["detector"] == "local"
    code, out, err = cli("train", "--dataset", "folder", "--train-dir", folder, "--epochs", "1", "--image-size", "32",
                         "--no-tracking", "--out", tmp_path / "m32")
    assert code == 0, err
    assert json.loads((tmp_path / "m32" / "model.json").read_text())["input_shape"] == [3, 32, 32]


def test_little_data_gets_a_warning_that_says_what_to_do(cli, tmp_path):
    folder = _folder(tmp_path / "few", [(48, 48)] * 6)
    code, out, err = cli("train", "--dataset", "folder", "--train-dir", folder, "--epochs", "1", "--no-tracking",
                         "--out", tmp_path / "m")
    assert code == 0, err
    text = out + err
    assert "only 5 normal training images" in text and "add normal images" in text
    assert "threshold is set on 1 held-out images" in text


def test_heat_maps_for_every_image_on_request_with_labelled_panels(cli, tmp_path):
    from anomalyvae.evaluation.heatmaps import LABEL_H

    folder = _folder(tmp_path / "imgs", [(48, 48)] * 12)
    code, out, err = cli("train", "--dataset", "folder", "--train-dir", folder, "--epochs", "1", "--no-tracking",
                         "--out", tmp_path / "m")
    assert code == 0, err
    code, out, err = cli("score", folder, "--model", tmp_path / "m", "--heatmaps", tmp_path / "maps", "--all",
                         "--out", tmp_path / "s.csv")
    assert code == 0, err
    pictures = sorted((tmp_path / "maps").glob("*.heatmap.png"))
    assert len(pictures) == 12
    pic = np.asarray(Image.open(pictures[0]))
    assert (pic[:LABEL_H] < 128).any()  # the panels' names are written above them
    code, out, err = cli("score", folder, "--model", tmp_path / "m", "--all", "--out", tmp_path / "s.csv")
    assert code == 2 and "--heatmaps" in err


def test_sample_draws_what_the_model_thinks_is_normal_the_same_way_each_time(fitted, cli, tmp_path):
    from anomalyvae.vae.sampling import prior_samples

    a, b = prior_samples(fitted, 8), prior_samples(fitted, 8)
    assert a.shape == (8, 3, 8, 8) and torch.equal(a, b) and a.std() > 0  # patches of the local detector
    fitted.save(tmp_path / "m")
    code, out, err = cli("sample", "--model", tmp_path / "m", "--out", tmp_path / "g.png", "--n", "16")
    assert code == 0, err
    assert Image.open(tmp_path / "g.png").size[0] > 8 * 8
    code, out, err = cli("sample", "--model", tmp_path / "m", "--n", "0")
    assert code == 2 and "--n" in err


def test_a_collapsed_patch_code_gets_one_warning_with_its_kl_and_the_flag_to_lower(cli, tmp_path):
    folder = _folder(tmp_path / "imgs", [(48, 48)] * 24)
    code, out, err = cli("train", "--dataset", "folder", "--train-dir", folder, "--epochs", "2", "--beta", "1000",
                         "--no-tracking", "--out", tmp_path / "m")
    assert code == 0, err
    lines = [line for line in (out + err).splitlines() if "code is collapsed" in line]
    assert len(lines) == 1 and lines[0].startswith("warning: ") and lines[0].count("warning:") == 1, out + err
    kl = json.loads((tmp_path / "m" / "model.json").read_text())["info"]["kl_per_patch"]
    assert kl < 1 and f"KL {kl:.3g} nats a patch" in lines[0]
    assert "memory bank" in lines[0] and "--beta" in lines[0]


def test_a_working_patch_code_gets_no_collapse_warning(fitted):
    assert fitted.info_["kl_per_patch"] >= 1 and fitted.info_["recon_spread"] > 0.05
    assert not any("collapsed" in w for w in fitted.info_["warnings"])


def test_the_kl_per_patch_is_logged_with_the_training_metrics(tmp_path):
    from anomalyvae.pipeline.images import train_detector
    from anomalyvae.tracking.runs import Tracker

    class Recording(Tracker):
        logged: dict = {}

        def log_metrics(self, metrics, step=None):
            self.logged.update(metrics)

    folder = _folder(tmp_path / "imgs", [(48, 48)] * 12)
    cfg = make_config(dataset="folder", train_dir=str(folder), epochs=1, beta=1000.0)
    det, _ = train_detector(cfg, tmp_path / "m", tracker=Recording("e", enabled=False), log=lambda m: None)
    assert Recording.logged["kl_per_patch"] == det.info_["kl_per_patch"]
