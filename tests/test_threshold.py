import numpy as np
import pytest

from anomalyvae.errors import AnomalyVAEError
from anomalyvae.evaluation.threshold import calibrate, flag, realized_fpr


@pytest.mark.parametrize("fpr", [0.01, 0.05, 0.2])
def test_realized_fpr_on_calibration_data_is_at_most_the_target(fpr):
    s = np.random.default_rng(0).normal(size=5000)
    t = calibrate(s, fpr)
    assert realized_fpr(s, t) <= fpr
    assert realized_fpr(s, t) > fpr - 0.002  # and not much lower: the smallest such threshold


def test_threshold_generalises_to_fresh_normal_data():
    rng = np.random.default_rng(1)
    t = calibrate(rng.normal(size=20000), 0.05)
    assert abs(realized_fpr(rng.normal(size=20000), t) - 0.05) < 0.01


def test_flag_rule_is_strictly_greater():
    assert flag(np.array([1.0, 2.0, 3.0]), 2.0).tolist() == [False, False, True]


@pytest.mark.parametrize("scores, fpr", [([], 0.05), ([1.0, np.nan], 0.05), ([1.0, 2.0], 0.0), ([1.0], 1.0)])
def test_bad_calibration_input_is_an_error(scores, fpr):
    with pytest.raises(AnomalyVAEError):
        calibrate(np.array(scores), fpr)


def test_no_calibration_score_sits_on_the_threshold():
    s = np.random.default_rng(2).normal(size=101)
    t = calibrate(s, 0.1)
    assert not np.any(s == t)
    assert realized_fpr(s, t) == realized_fpr(s, float(np.quantile(s, 0.9, method="higher")))


@pytest.mark.parametrize("scores", [[1.0, 2.0], [3.0], [0.0, 0.0, 5.0]])
def test_the_largest_calibration_score_is_not_on_the_threshold_either(scores):
    s = np.array(scores)
    t = calibrate(s, 0.05)
    assert realized_fpr(s, t) == 0.0 and t > s.max()
