"""Pixel AUROC and AUPRO on cases small enough to work out by hand, and AUPRO against its definition."""

import numpy as np
import pytest
from scipy import ndimage

from anomalyvae.evaluation.pixel_metrics import aupro, pixel_auroc, pro_curve


def test_a_map_equal_to_the_mask_scores_one():
    mask = np.zeros((8, 8), bool)
    mask[2:4, 2:5] = True
    mask[6, 6] = True
    assert aupro([mask.astype(float)], [mask]) == pytest.approx(1.0)
    assert pixel_auroc([mask.astype(float)], [mask]) == pytest.approx(1.0)


def test_an_inverted_map_scores_zero():
    mask = np.zeros((6, 6), bool)
    mask[1:3, 1:3] = True
    assert aupro([(~mask).astype(float)], [mask]) == pytest.approx(0.0)
    assert pixel_auroc([(~mask).astype(float)], [mask]) == pytest.approx(0.0)


def test_regions_count_once_whatever_their_size():
    # one row: a 2-pixel region found first, a 1-pixel region found last, 7 normal pixels between
    mask = np.array([[1, 1, 0, 0, 0, 1, 0, 0, 0, 0]], bool)
    scores = np.array([[0.9, 0.9, 0.5, 0.5, 0.5, 0.1, 0.5, 0.5, 0.5, 0.5]])
    # PRO is 1/2 (one region of two) from FPR 0 to 1: the area to 0.3 is 0.15, normalised 0.5
    assert aupro([scores], [mask]) == pytest.approx(0.5)
    # pixel AUROC weighs pixels instead: the two found pixels beat all 7 normal ones, the third none
    assert pixel_auroc([scores], [mask]) == pytest.approx(14 / 21)


def test_the_curve_is_cut_at_thirty_percent_fpr():
    # ten normal pixels scored 0.1 .. 1.0 and a one-pixel region scored 0.85: PRO jumps to 1 at FPR 0.2,
    # so the area to FPR 0.3 is 0.1, normalised 1/3
    scores = np.append(np.linspace(0.1, 1.0, 10), 0.85)[None]
    mask = np.zeros((1, 11), bool)
    mask[0, 10] = True
    assert aupro([scores], [mask]) == pytest.approx(1 / 3)
    assert aupro([scores], [mask], fpr_limit=0.5) == pytest.approx((0.5 - 0.2) / 0.5)


def test_pixels_of_equal_value_pass_the_threshold_together():
    # the region and half the normal pixels share one value: one step from (0, 0) to (0.5, 1)
    scores = np.array([[1.0, 1.0, 1.0, 0.0, 0.0]])
    mask = np.array([[1, 0, 0, 0, 0]], bool)
    fpr, pro = pro_curve([scores], [mask])
    assert list(fpr) == [0.0, 0.5, 1.0] and list(pro) == [0.0, 1.0, 1.0]
    assert aupro([scores], [mask]) == pytest.approx(0.3)  # pro = 2 fpr up to 0.3: area 0.09, / 0.3


def test_normal_images_add_false_positives_only():
    mask = np.zeros((4, 4), bool)
    mask[0, 0] = True
    scores = np.zeros((4, 4))
    scores[0, 0] = 1.0
    clean = np.zeros((4, 4), bool)
    hot = np.full((4, 4), 2.0)  # a normal image that outranks the defect: FPR 16/31 before PRO moves
    assert aupro([scores], [mask]) == pytest.approx(1.0)
    assert aupro([scores, hot], [mask, clean]) == pytest.approx(0.0)


def test_no_regions_gives_nan_not_an_error():
    assert np.isnan(aupro([np.ones((3, 3))], [np.zeros((3, 3), bool)]))
    assert np.isnan(pixel_auroc([np.ones((3, 3))], [np.zeros((3, 3), bool)]))


def test_maps_and_masks_of_different_shapes_are_refused():
    with pytest.raises(ValueError, match="map 0"):
        aupro([np.ones((3, 3))], [np.ones((3, 4), bool)])


def _aupro_by_definition(maps, masks, limit=0.3):
    """For every threshold: mean overlap of each 8-connected region, FPR over normal pixels; then the area."""
    regions = []
    for i, m in enumerate(masks):
        lab, n = ndimage.label(m, structure=np.ones((3, 3)))
        regions += [(i, lab == k) for k in range(1, n + 1)]
    normal = np.concatenate([(~m).ravel() for m in masks])
    flat = np.concatenate([a.ravel() for a in maps])
    points = [(0.0, 0.0)]
    for t in np.unique(flat)[::-1]:
        fpr = (flat[normal] >= t).mean()
        pro = np.mean([(maps[i][r] >= t).mean() for i, r in regions])
        points.append((fpr, pro))
    x, y = map(np.array, zip(*points))
    grid = np.linspace(0, limit, 30001)
    return np.trapezoid(np.interp(grid, x, y), grid) / limit


@pytest.mark.parametrize("seed", range(4))
def test_aupro_matches_its_definition_on_random_maps(seed):
    rng = np.random.default_rng(seed)
    masks = [ndimage.binary_dilation(rng.random((12, 12)) > 0.93) for _ in range(3)] + [np.zeros((12, 12), bool)]
    maps = [ndimage.gaussian_filter(m.astype(float) + rng.normal(0, 0.6, m.shape), 1) for m in masks]
    assert aupro(maps, masks) == pytest.approx(_aupro_by_definition(maps, masks), abs=1e-4)
