"""Issue 21: the hidden-layer memory bank (hknn) and the opt-in classification head (use_labels, score 'class')."""

import numpy as np
import pytest

from anomalyvae import AnomalyVAE
from anomalyvae.config import make_config
from anomalyvae.errors import AnomalyVAEError, InvalidInput
from anomalyvae.data.idx import read_idx


@pytest.fixture(scope="module")
def digits(mnist_dir):
    x = read_idx(mnist_dir / "train-images-idx3-ubyte.gz")[:4000]
    y = read_idx(mnist_dir / "train-labels-idx1-ubyte.gz")[:4000].astype(np.int64)
    xt = read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz")[:1000]
    yt = read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz")[:1000].astype(np.int64)
    return x, y, xt, yt


@pytest.fixture(scope="module")
def labelled(digits, tmp_path_factory):
    """Digits 0-8 with their labels, 4 epochs on ~3,200 images (about 20 s on one thread)."""
    x, y, _, _ = digits
    det = AnomalyVAE(use_labels=True, epochs=4, random_state=0, threads=1).fit(x[y != 9], y[y != 9])
    path = det.save(tmp_path_factory.mktemp("labelled") / "m")
    return det, path


def test_the_head_learns_the_normal_classes_and_says_which_one_an_input_looks_like(labelled, digits):
    det, _ = labelled
    _, _, xt, yt = digits
    assert det.model_.classes.tolist() == list(range(9))
    normal = yt != 9
    picked = det.looks_like(xt[normal])
    assert set(np.unique(picked)) <= set(range(9))
    assert (picked == yt[normal]).mean() > 0.6  # chance is 1/9: the head learnt the labels it was given


def test_class_is_the_heads_entropy_and_joins_the_default_sum(labelled, digits):
    det, _ = labelled
    _, _, xt, yt = digits
    from anomalyvae.config import DEFAULT_COMBINE

    assert det.config_.combine_parts() == DEFAULT_COMBINE["labels"].split(",") and "class" in DEFAULT_COMBINE["labels"]
    assert det.model_.head.in_features == det.model_.fc_mu.in_features  # the head reads the last hidden layer
    s = det.anomaly_scores(xt, which=["class", "combined"])
    assert np.all(s["class"] >= -1e-6) and np.all(s["class"] <= np.log(9) + 1e-5)  # an entropy over 9 classes
    assert s["class"][yt != 9].mean() < 0.75 * np.log(9)  # sure of the normal digits, not uniform over them


def test_a_saved_labelled_model_loads_with_its_head_and_scores_the_same(labelled, digits):
    det, path = labelled
    _, _, xt, _ = digits
    back = AnomalyVAE.load(path)
    assert back.model_.classes.tolist() == list(range(9))
    np.testing.assert_allclose(back.anomaly_scores(xt[:64])["class"], det.anomaly_scores(xt[:64])["class"], atol=1e-5)
    np.testing.assert_array_equal(back.looks_like(xt[:64]), det.looks_like(xt[:64]))


def test_labels_are_checked_in_one_line(digits):
    x, y, _, _ = digits
    with pytest.raises(InvalidInput, match=r"call fit\(X, y\)"):
        AnomalyVAE(use_labels=True, epochs=1).fit(x[:50])
    with pytest.raises(InvalidInput, match="one class per sample"):
        AnomalyVAE(use_labels=True, epochs=1).fit(x[:50], y[:40])
    with pytest.raises(InvalidInput, match="non-negative integer"):
        AnomalyVAE(use_labels=True, epochs=1).fit(x[:50], -np.ones(50, dtype=int))
    with pytest.raises(AnomalyVAEError, match="--use-labels"):
        make_config(score="class", use_labels=False)
    with pytest.raises(AnomalyVAEError, match="use_labels.*does not have"):
        make_config(dataset="folder", train_dir=".", use_labels=True)


def test_a_model_without_labels_has_no_head_and_no_class_score(tiny_detector):
    assert tiny_detector.looks_like(np.zeros((2, 28, 28), np.uint8)) is None
    assert "class" not in tiny_detector.default_scores()


def test_hknn_keeps_only_live_hidden_units_and_ranks_noise_above_digits(labelled, digits):
    det, _ = labelled
    _, _, xt, _ = digits
    st = det.state_
    live = int(st.hidden_pick.sum())
    assert 0 < live == st.hidden_codes.shape[1] <= det.config_.conv_hidden
    assert len(st.hidden_codes) == det.info_["n_train"]  # every normal training input, under HIDDEN_BANK
    noise = np.random.default_rng(0).integers(0, 256, (50, 28, 28), dtype=np.uint8)
    s_noise, s_digits = (det.anomaly_scores(a, which=["hknn"])["hknn"] for a in (noise, xt[:200]))
    assert s_noise.min() > np.percentile(s_digits, 99)


def test_samples_of_one_class_are_read_back_as_that_class(labelled):
    from anomalyvae.vae.sampling import prior_samples

    det, _ = labelled
    agree = [(det.looks_like((prior_samples(det, 16, label=c) * 255).round().byte()) == c).mean() for c in range(9)]
    assert np.mean(agree) >= 0.4  # chance is 1/9 (this small model: about 0.6)
    with pytest.raises(InvalidInput, match="not one of the model's normal classes"):
        prior_samples(det, 4, label=9)


def test_sampling_a_class_needs_a_labelled_model(tiny_detector):
    from anomalyvae.vae.sampling import prior_samples

    with pytest.raises(InvalidInput, match="--use-labels"):
        prior_samples(tiny_detector, 4, label=0)


def test_a_labelled_model_is_named_so():
    from anomalyvae.tracking import lineage

    assert lineage.model_name(make_config(use_labels=True)) == "mnist-normal-0-8-conv-labels"
    assert lineage.model_name(make_config(use_labels=False)) == "mnist-normal-0-8-conv"


def test_labels_are_learnt_by_default_where_the_normal_data_has_classes():
    assert make_config(normal="0-8").use_labels is True  # the user named nine normal classes
    assert make_config(normal="3").use_labels is False  # one class: labels add nothing
    assert make_config(normal="0-8", use_labels=False).use_labels is False  # --no-labels
    assert make_config(dataset="folder", train_dir=".").use_labels is False  # photos have no classes


def test_fit_learns_the_labels_when_y_names_classes_and_ignores_other_y(digits):
    x, y, _, _ = digits
    assert AnomalyVAE(epochs=1, random_state=0).fit(x[:300], y[:300]).config_.use_labels
    assert not AnomalyVAE(epochs=1, random_state=0).fit(x[:300]).config_.use_labels
    assert not AnomalyVAE(epochs=1, random_state=0).fit(x[:300], np.where(y[:300] > 4, 1, -1)).config_.use_labels
    assert not AnomalyVAE(epochs=1, use_labels=False, random_state=0).fit(x[:300], y[:300]).config_.use_labels
