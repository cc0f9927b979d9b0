"""Folder layouts (MVTec-AD, flat folders), their recognition, and the checks on ground-truth masks."""

import numpy as np
import pytest
from PIL import Image

from anomalyvae.errors import DataError
from anomalyvae.data.layouts import (GOOD, folder_test, load_test_set, mvtec_test, mvtec_train, recognise)


def png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def img(seed, shape=(24, 24, 3)):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def mask(shape=(24, 24), value=255):
    m = np.zeros(shape, np.uint8)
    m[4:9, 4:9] = value
    return m


@pytest.fixture
def mvtec(tmp_path):
    root = tmp_path / "bottle"
    for i in range(3):
        png(root / "train" / "good" / f"{i:03d}.png", img(i))
    png(root / "test" / "good" / "000.png", img(10))
    for defect in ("crack", "blot"):
        for i in range(2):
            png(root / "test" / defect / f"{i:03d}.png", img(20 + i))
            png(root / "ground_truth" / defect / f"{i:03d}_mask.png", mask())
    return root


def test_an_mvtec_root_is_recognised_and_a_flat_folder_too(mvtec, tmp_path):
    assert recognise(mvtec) == "mvtec"
    assert recognise(mvtec / "train" / "good") == "folder"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no known layout.*train/good"):
        recognise(tmp_path / "empty")


def test_mvtec_trains_on_train_good_only(mvtec):
    assert [f.path.rsplit("/", 2)[-2:] for f in mvtec_train(mvtec)] == [["good", f"{i:03d}.png"] for i in range(3)]


def test_an_mvtec_root_without_train_good_names_the_layout_it_expected(tmp_path):
    png(tmp_path / "root" / "train" / "000.png", img(0))
    with pytest.raises(DataError, match=r"no train/good/ folder; the MVTec-AD layout is ROOT/train/good/.*ground_truth"):
        mvtec_train(tmp_path / "root")


def test_mvtec_test_lists_good_first_then_each_defect_with_its_mask(mvtec):
    items = mvtec_test(mvtec)
    assert [(i.defect, i.mask is not None) for i in items] == [(GOOD, False)] + [("blot", True)] * 2 + [("crack", True)] * 2
    assert items[1].mask.endswith("ground_truth/blot/000_mask.png")


def test_test_set_holds_labels_own_sizes_and_masks(mvtec):
    ts = load_test_set(mvtec_test(mvtec), 16, 3)
    assert ts.images.shape == (5, 3, 16, 16) and ts.names == [GOOD, "blot", "crack"]
    assert ts.labels.tolist() == [0, 1, 1, 2, 2] and ts.shapes == [(24, 24)] * 5
    assert ts.masks[0] is None and ts.masks[1].dtype == bool and ts.masks[1].sum() == 25


def test_without_ground_truth_there_are_no_masks(mvtec):
    import shutil

    shutil.rmtree(mvtec / "ground_truth")
    assert load_test_set(mvtec_test(mvtec), 16, 3).masks is None


def test_a_missing_mask_names_the_image_and_the_mask_it_expected(mvtec):
    (mvtec / "ground_truth" / "crack" / "001_mask.png").unlink()
    with pytest.raises(DataError, match=r"mask .*crack/001_mask.png is missing for anomalous image .*test/crack/001.png"):
        load_test_set(mvtec_test(mvtec), 16, 3)


def test_a_mask_of_another_size_names_both_files(mvtec):
    png(mvtec / "ground_truth" / "blot" / "000_mask.png", mask((24, 30)))
    with pytest.raises(DataError, match=r"mask .*blot/000_mask.png is 30x24 but its image .*test/blot/000.png is 24x24"):
        load_test_set(mvtec_test(mvtec), 16, 3)


def test_a_mask_that_is_not_binary_names_both_files(mvtec):
    soft = mask()
    soft[4, 4] = 128
    png(mvtec / "ground_truth" / "blot" / "001_mask.png", soft)
    with pytest.raises(DataError, match=r"mask .*blot/001_mask.png is not binary \(values 0, 128, 255\).*test/blot/001.png"):
        load_test_set(mvtec_test(mvtec), 16, 3)


def test_masks_of_zero_and_one_are_binary_too(mvtec):
    png(mvtec / "ground_truth" / "blot" / "001_mask.png", mask(value=1))
    assert load_test_set(mvtec_test(mvtec), 16, 3).masks[2].sum() == 25


def test_flat_folders_pair_masks_by_name(tmp_path):
    png(tmp_path / "normal" / "a.png", img(0))
    png(tmp_path / "bad" / "x.png", img(1))
    png(tmp_path / "bad" / "sub" / "y.jpg", img(2))
    png(tmp_path / "masks" / "x.png", mask())
    png(tmp_path / "masks" / "sub" / "y_mask.png", mask())
    items = folder_test(tmp_path / "normal", tmp_path / "bad", tmp_path / "masks")
    assert [(i.defect, i.mask and i.mask.rsplit("/", 1)[-1]) for i in items] == [
        (GOOD, None), ("anomaly", "x.png"), ("anomaly", "y_mask.png")]
    ts = load_test_set(items, 16, 3)
    assert ts.labels.tolist() == [0, 1, 1] and all(m.sum() == 25 for m in ts.masks[1:])


def test_an_anomaly_without_its_mask_in_the_mask_folder_is_an_error(tmp_path):
    png(tmp_path / "normal" / "a.png", img(0))
    png(tmp_path / "bad" / "x.png", img(1))
    (tmp_path / "masks").mkdir()
    with pytest.raises(DataError, match=r"mask .*masks/x.png is missing for anomalous image .*bad/x.png"):
        load_test_set(folder_test(tmp_path / "normal", tmp_path / "bad", tmp_path / "masks"), 16, 3)


def test_unreadable_test_images_are_skipped_and_reported(mvtec):
    (mvtec / "test" / "good" / "broken.png").write_bytes(b"not a png")
    ts = load_test_set(mvtec_test(mvtec), 16, 3)
    assert len(ts.paths) == 5 and ts.skipped[0].path.endswith("broken.png")
