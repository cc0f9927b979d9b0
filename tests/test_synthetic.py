"""The synthetic inspection dataset: MVTec-AD layout, deterministic, defects where their masks say."""

import hashlib

import numpy as np
import pytest
from PIL import Image

from anomalyvae.data import synthetic
from anomalyvae.data.layouts import load_test_set, mvtec_test, recognise

LUMA = np.array([0.299, 0.587, 0.114])


def digest(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.png"))}


def test_the_layout_is_mvtec_with_a_binary_mask_per_defect_image(tmp_path):
    root = synthetic.generate(tmp_path / "s", n_train=3, n_test_good=2, n_per_defect=2, size=32)
    assert recognise(root) == "mvtec"
    ts = load_test_set(mvtec_test(root), 32, 3)  # checks every mask: present, same size, binary
    assert ts.names == ["good", *sorted(synthetic.DEFECTS)] and ts.images.shape == (10, 3, 32, 32)
    assert all(m.any() for m in ts.masks[2:]) and len(list((root / "train" / "good").iterdir())) == 3


def test_the_same_seed_writes_the_same_bytes_and_another_seed_others(tmp_path):
    a = digest(synthetic.generate(tmp_path / "a", 2, 1, 1, size=32, seed=3))
    assert a == digest(synthetic.generate(tmp_path / "b", 2, 1, 1, size=32, seed=3))
    c = digest(synthetic.generate(tmp_path / "c", 2, 1, 1, size=32, seed=4))
    assert a.keys() == c.keys() and not set(a.values()) & set(c.values())


def planted(defect, seed=0, size=128):
    product = synthetic.make_product(np.random.default_rng([seed, 0]))
    clean = synthetic.surface(product, size, np.random.default_rng([seed, 9]))
    img, mask = synthetic.plant(clean, defect, np.random.default_rng([seed, 10]))  # the same defect at any size
    return clean, img, mask


@pytest.mark.parametrize("seed", range(3))
def test_a_colour_blotch_changes_hue_but_not_luminance(seed):
    clean, img, mask = planted("colour", seed)
    grey = lambda a: np.asarray(Image.fromarray(np.round(a * 255).astype(np.uint8)).convert("L"), dtype=int)  # noqa: E731
    assert np.abs(grey(img) - grey(clean)).max() <= 1  # 8-bit rounding only: invisible in grey
    assert np.abs(img - clean)[mask].max(axis=-1).mean() > 0.15  # but clearly another colour


@pytest.mark.parametrize("defect", ["scratch", "spot", "missing"])
def test_structural_defects_change_luminance_inside_their_mask_only(defect):
    clean, img, mask = planted(defect)
    change = np.abs((img - clean) @ LUMA)
    assert change[mask].mean() > 0.15 and change[~mask].max() == 0


def test_defects_scale_with_the_image(tmp_path):
    small = planted("missing", size=64)[2].mean()
    large = planted("missing", size=128)[2].mean()
    assert small == pytest.approx(large, rel=0.2)  # the same fraction of the surface


def test_the_command_line_entry_point_writes_the_dataset(tmp_path, capsys):
    synthetic.main([str(tmp_path / "d"), "--n-train", "2", "--n-test-good", "1", "--n-per-defect", "1", "--size", "28"])
    assert "wrote 2 training and 5 test images" in capsys.readouterr().out
    assert Image.open(tmp_path / "d" / "test" / "spot" / "000.png").size == (28, 28)
