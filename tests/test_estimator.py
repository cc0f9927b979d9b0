"""AnomalyVAE keeps scikit-learn's outlier-detector contract, reads arrays by one rule, and shares the model
directory with the CLI."""

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from anomalyvae import AnomalyVAE
from anomalyvae.scores import NAMES


@parametrize_with_checks([AnomalyVAE(random_state=0, threads=1)])
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def _digits(n=120, seed=0):
    """Small real grey images (sklearn's 8x8 digits scaled to 0..255, upsampled to 16x16): normal = 0."""
    from sklearn.datasets import load_digits

    d = load_digits()
    imgs = np.kron(d.images, np.ones((2, 2))) * (255 / 16)
    return imgs.round().astype(np.uint8), d.target


@pytest.fixture(scope="module")
def image_model():
    imgs, y = _digits()
    return AnomalyVAE(epochs=3, random_state=0, threads=1).fit(imgs[y == 0]), imgs, y


def test_images_in_every_layout_and_container_give_the_same_scores(image_model):
    est, imgs, _ = image_model
    x = imgs[:7]
    ref = est.anomaly_scores(x)
    same = [x[:, :, :, None], x[:, None], torch.from_numpy(x), x.astype(np.int64),
            (x / 255.0).astype(np.float32), x.reshape(7, -1), pd.DataFrame(x.reshape(7, -1)), x.tolist()]
    # the float container holds exactly what the network makes of uint8 pixels (v / 255 in float32, every v)
    assert np.array_equal((np.arange(256) / 255.0).astype(np.float32), np.arange(256, dtype=np.float32) / 255)
    for variant in same:  # the same pixels in the same order and memory layout: the same sums, bit for bit
        got = est.anomaly_scores(variant)
        for k in ref:
            np.testing.assert_array_equal(got[k], ref[k], err_msg=f"{type(variant)} {np.shape(variant)} {k}")


def test_float_images_are_used_as_given_never_divided_by_255_again(image_model):
    est, imgs, _ = image_model
    as_float = est.anomaly_scores(imgs[:5] / 255.0)["recon"]
    np.testing.assert_allclose(as_float, est.anomaly_scores(imgs[:5])["recon"], rtol=1e-5)
    rescaled_twice = est.anomaly_scores((imgs[:5] / 255.0 / 255.0).astype(np.float32))["recon"]
    assert not np.allclose(as_float, rescaled_twice, rtol=1e-2)  # the check can tell the two apart


@pytest.mark.parametrize("bad, match", [(lambda x: x.astype(np.float32), r"\[0, 1\]"),
                                        (lambda x: x / 255.0 - 0.5, r"\[0, 1\]"),
                                        (lambda x: x.astype(np.int64) * 4, r"0\.\.255"),
                                        (lambda x: np.full(x.shape, np.nan), "NaN")])
def test_images_outside_their_range_are_a_value_error_naming_it(image_model, bad, match):
    est, imgs, _ = image_model
    with pytest.raises(ValueError, match=match):
        est.anomaly_scores(bad(imgs[:3]))


def test_the_sign_conventions_are_scikit_learns(image_model):
    est, imgs, y = image_model
    x = imgs[:60]
    anomaly = est.anomaly_scores(x, which=[est.score_])[est.score_]
    np.testing.assert_allclose(est.score_samples(x), -anomaly)
    np.testing.assert_allclose(est.decision_function(x), est.score_samples(x) - est.offset_)
    pred = est.predict(x)
    assert set(np.unique(pred)) <= {-1, 1}
    np.testing.assert_array_equal(pred == -1, anomaly > est.threshold_)


def test_every_named_score_is_available_through_one_method(image_model):
    from anomalyvae.scores import available

    est, imgs, _ = image_model
    names = available("images", "global")  # the global detector's; the local one's are in test_local.py
    got = est.anomaly_scores(imgs[:4], which=names)
    assert list(got) == list(names) and all(v.shape == (4,) and np.isfinite(v).all() for v in got.values())
    assert set(names) | {"local", "compare", "xknn", "class"} == set(NAMES)  # xknn: feature vectors; class: use_labels
    with pytest.raises(ValueError, match="--use-labels"):
        est.anomaly_scores(imgs[:4], which=["class"])
    with pytest.raises(ValueError, match="not computed by the global detector"):
        est.anomaly_scores(imgs[:4], which=["local"])
    with pytest.raises(ValueError, match="unknown score 'nope'.*recon"):
        est.anomaly_scores(imgs[:4], which=["nope"])


def test_detects_unseen_digits_better_than_chance(image_model):
    from sklearn.metrics import roc_auc_score

    est, imgs, y = image_model
    test = np.arange(120, 600)  # not used for fitting
    auroc = roc_auc_score(y[test] != 0, -est.score_samples(imgs[test]))
    assert auroc > 0.9


def test_feature_vectors_skip_image_only_scores_and_refuse_them_clearly():
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    est = AnomalyVAE(random_state=0, threads=1).fit(X[y == 1])
    assert est.config_.arch == "mlp" and "blur" not in est.anomaly_scores(X[:3])
    with pytest.raises(ValueError, match="'blur' needs images"):
        est.anomaly_scores(X[:3], which=["blur"])
    with pytest.raises(ValueError, match="blur"):
        AnomalyVAE(anomaly_score="blur").fit(X[:50])


def test_a_colour_image_given_to_a_grey_model_is_converted_and_said_once(image_model):
    est, imgs, _ = image_model
    rgb = np.repeat(imgs[:3, :, :, None], 3, axis=3)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        got = est.anomaly_scores(rgb)["recon"]
        est.anomaly_scores(rgb)
    assert [str(w.message) for w in seen].count("colour images given to a grey model were converted to grey "
                                                "(ITU-R 601 luma)") == 1
    np.testing.assert_allclose(got, est.anomaly_scores(imgs[:3])["recon"], rtol=1e-4, atol=1e-3)


def test_colour_images_train_a_three_channel_model(image_model):
    _, imgs, y = image_model
    rgb = np.stack([imgs, imgs // 2, 255 - imgs], axis=-1)[y == 0]
    est = AnomalyVAE(epochs=1, random_state=0, threads=1).fit(rgb)
    assert est.input_shape_ == (3, 16, 16) and est.n_features_in_ == 3 * 16 * 16


def test_saved_and_loaded_as_a_model_directory_without_pickles(image_model, tmp_path):
    est, imgs, _ = image_model
    est.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.json", "model.safetensors"]
    loaded = AnomalyVAE.load(tmp_path / "m")
    for k, v in est.anomaly_scores(imgs[:9]).items():
        np.testing.assert_allclose(loaded.anomaly_scores(imgs[:9])[k], v, rtol=1e-6)
    np.testing.assert_array_equal(loaded.predict(imgs[:50]), est.predict(imgs[:50]))
    assert loaded.config_ == est.config_ and loaded.get_params()["latent_dim"] == est.config_.latent_dim


def test_the_cli_scores_with_an_estimator_saved_from_python(image_model, tmp_path, cli, write_png):
    est, imgs, _ = image_model
    est.save(tmp_path / "m")
    for i in range(3):
        write_png(f"imgs/{i}.png", imgs[i], size=(16, 16))
    code, out, err = cli("score", tmp_path / "imgs", "--model", tmp_path / "m", "--out", tmp_path / "s.csv")
    assert code == 0, err
    rows = pd.read_csv(tmp_path / "s.csv").sort_values("path")
    np.testing.assert_allclose(rows["combined"], est.anomaly_scores(imgs[:3])["combined"], rtol=1e-4)


def test_pickles_in_memory_and_clones(image_model):
    est, imgs, _ = image_model
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.decision_function(imgs[:20]), est.decision_function(imgs[:20]))
    fresh = clone(est)
    assert fresh.get_params() == est.get_params() and not hasattr(fresh, "model_")


def test_inside_a_pipeline_and_a_grid_search_on_a_table():
    from sklearn.datasets import load_breast_cancer
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_breast_cancer(return_X_y=True)
    benign, test = X[y == 1][:250], np.r_[X[y == 1][250:], X[y == 0]]
    truth = np.r_[np.zeros((y == 1).sum() - 250), np.ones((y == 0).sum())]
    pipe = make_pipeline(StandardScaler(), AnomalyVAE(random_state=0, threads=1)).fit(benign)
    assert roc_auc_score(truth, -pipe.score_samples(test)) > 0.9
    assert set(np.unique(pipe.predict(test))) == {-1, 1}

    def auroc(estimator, X_val, y_val=None):  # held-out benign rows vs all malignant rows
        return roc_auc_score(np.r_[np.zeros(len(X_val)), np.ones(50)],
                             -estimator.score_samples(np.r_[X_val, X[y == 0][:50]]))

    grid = GridSearchCV(AnomalyVAE(random_state=0, threads=1, epochs=5), {"latent_dim": [2, 4]}, scoring=auroc,
                        cv=2).fit(benign)
    assert grid.best_params_["latent_dim"] in (2, 4) and 0.5 < grid.best_score_ <= 1.0


def test_contamination_flags_that_fraction_of_the_fit_data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 5))
    est = AnomalyVAE(contamination=0.1, random_state=0, threads=1, epochs=3).fit(X)
    assert (est.predict(X) == -1).sum() == 40


def test_a_python_fit_stores_the_colour_scale_of_its_anomaly_pictures(image_model):
    """fit_splits fits everything, the maps' colour scale too (it was left to the CLI's train job): the highest
    map value over the held-out normal images, which is the largest `peak` score among them."""
    from anomalyvae.evaluation.heatmaps import anomaly_maps
    from anomalyvae.data.inputs import to_images

    est, imgs, y = image_model
    vmax = est.info_["map_vmax"]
    assert vmax > 0
    normal = to_images(imgs[y == 0], est.input_shape_)
    assert anomaly_maps(est.model_, normal).max() >= vmax * (1 - 1e-5)  # held-out images are among them
