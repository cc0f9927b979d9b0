"""Tables: feature vectors are scored against a memory bank of normal rows, trained for a number of steps
whatever their size, and every scored row says which features made it anomalous."""

import numpy as np
import pandas as pd
import pytest
import torch

from anomalyvae import AnomalyVAE
from anomalyvae.config import FEATURE_STEPS, Config, feature_schedule
from anomalyvae.errors import InvalidInput
from anomalyvae.scores import available, check


def _table(n=300, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    return pd.DataFrame({"a": a, "b": 2 * a + rng.normal(scale=0.1, size=n), "c": rng.normal(size=n) * 100,
                         "d": rng.normal(size=n)})


@pytest.fixture(scope="module")
def fitted():
    return AnomalyVAE(epochs=5, random_state=0, threads=1).fit(_table())


def test_xknn_is_a_feature_vector_score_and_images_are_told_so():
    assert "xknn" in available("features") and "xknn" not in available("images")
    with pytest.raises(InvalidInput, match="'xknn' is for feature vectors"):
        check(["xknn"], "images")


def test_the_default_score_for_feature_vectors_is_the_nearest_neighbour_distance():
    assert Config(input_kind="features").validate().combine == "xknn"


def test_training_of_feature_vectors_is_counted_in_steps_whatever_the_number_of_rows():
    for n in (100, 250, 3_000, 100_000):
        epochs, patience, repeats = feature_schedule(n, 128, 5)
        per_epoch = -(-n * repeats // 128)
        assert FEATURE_STEPS <= epochs * per_epoch < FEATURE_STEPS + per_epoch
        assert per_epoch >= 20 and patience * per_epoch >= 400
    assert feature_schedule(250, 128, 5)[2] == 10  # 250 rows: 2 steps an epoch, repeated to 20


def test_a_near_constant_column_is_scaled_by_the_median_spread_not_its_own(fitted):
    X = _table()
    X["flat"] = 1.0 + 1e-6 * np.arange(len(X))
    est = AnomalyVAE(epochs=2, random_state=0, threads=1).fit(X)
    stds = X.std(ddof=0)  # flat: 9e-5; the median of the five: about 1
    assert float(est.model_.x_std[4]) == pytest.approx(float(stds.median()), rel=0.1)


def test_xknn_is_the_mean_distance_to_the_k_nearest_standardised_normal_rows(fitted):
    X = _table(20, seed=1)
    x = fitted.model_.prepare(torch.tensor(X.to_numpy(), dtype=torch.float32)).double()
    rows = fitted.state_.rows.double()
    want = torch.cdist(x, rows).topk(fitted.config_.knn_k, largest=False).values.mean(1).numpy()
    got = fitted.anomaly_scores(X, which=["xknn"])["xknn"]
    np.testing.assert_allclose(got, want, rtol=1e-4)


def test_a_row_far_from_the_normal_ones_is_flagged(fitted):
    X = _table(50, seed=2)
    X.loc[0, "d"] = 12.0
    assert fitted.predict(X)[0] == -1 and (fitted.predict(X) == 1).mean() > 0.8


def test_explain_names_the_feature_that_was_moved(fitted):
    X = _table(10, seed=3)
    X.loc[3, "d"] = 10.0
    X.loc[7, "c"] = -1500.0
    shares = fitted.explain(X)
    assert list(shares.columns) == ["a", "b", "c", "d"] and list(shares.index) == list(X.index)
    np.testing.assert_allclose(shares.sum(axis=1), 1.0, rtol=1e-9)
    assert (shares.to_numpy() >= 0).all()
    assert shares.loc[3].idxmax() == "d" and shares.loc[3, "d"] > 0.8
    assert shares.loc[7].idxmax() == "c" and shares.loc[7, "c"] > 0.8


def test_explain_of_the_likelihood_score_splits_the_gaussian_terms():
    X = _table()
    est = AnomalyVAE(epochs=5, random_state=0, threads=1, anomaly_score="recon").fit(X)
    T = _table(5, seed=4)
    T.loc[2, "a"] = 9.0  # breaks a's tie to b: the likelihood blames a (and b, which no longer fits it)
    assert set(est.explain(T).loc[2].nlargest(2).index) == {"a", "b"}


def test_explain_of_arrays_names_features_x0_x1(fitted):
    est = AnomalyVAE(epochs=2, random_state=0, threads=1).fit(_table().to_numpy())
    assert list(est.explain(_table(3).to_numpy()).columns) == ["x0", "x1", "x2", "x3"]


def test_explain_of_images_points_to_the_anomaly_map():
    imgs = np.random.default_rng(0).integers(0, 255, size=(20, 8, 8), dtype=np.uint8)
    est = AnomalyVAE(epochs=1, random_state=0, threads=1).fit(imgs)
    with pytest.raises(InvalidInput, match="anomaly map"):
        est.explain(imgs)


def test_a_never_negative_right_skewed_column_is_read_on_a_log_scale():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"amount": rng.lognormal(3, 1, 300), "signed": rng.normal(size=300) ** 3,
                      "plain": rng.normal(size=300)})
    est = AnomalyVAE(epochs=2, random_state=0, threads=1).fit(X)
    assert est.model_.x_log.tolist() == [1.0, 0.0, 0.0]
    x = est.model_.prepare(torch.tensor([[np.e - 1, 0.0, 0.0]], dtype=torch.float32))
    assert float(x[0, 0]) == pytest.approx((1.0 - float(est.model_.x_mean[0])) / float(est.model_.x_std[0]), rel=1e-5)


def test_a_table_model_saved_before_the_log_rule_loads_with_no_log_columns(fitted, tmp_path):
    from anomalyvae.modeldir import MODEL_FILE, read_tensors, write_tensors

    fitted.save(tmp_path / "m")
    tensors, meta = read_tensors(tmp_path / "m" / MODEL_FILE)
    del tensors["model.x_log"]
    write_tensors(tmp_path / "m" / MODEL_FILE, tensors, meta)
    loaded = AnomalyVAE.load(tmp_path / "m")
    assert loaded.model_.x_log.sum() == 0
