"""Time series: the file rule (a time column, numeric channels, a regular grid with missing points masked), the
window VAE (every timestamp covered, causal windows, masking), the estimator's contract per timestamp, the CLI
round trip, and every bad input a one-line error with exit code 2 and nothing written."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from anomalyvae import AnomalyVAE
from anomalyvae.data.series import read_series
from anomalyvae.detectors.series import WindowVAE, windows
from anomalyvae.errors import InvalidInput

NAB = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "nab"
W = 16


def _values(t=600, d=1, seed=0):
    rng = np.random.default_rng(seed)
    i = np.arange(t)[:, None]
    return np.sin(2 * np.pi * i / 24 + np.arange(d)) + 0.05 * rng.normal(size=(t, d))


def _frame(t=600, d=1, seed=0, **extra):
    v = _values(t, d, seed)
    f = pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=t, freq="5min").astype(str)})
    for j in range(d):
        f[f"c{j}"] = v[:, j]
    for k, col in extra.items():
        f[k] = col
    return f


def _fit(x, **kw):
    return AnomalyVAE(input_kind="series", window=W, epochs=3, random_state=0, threads=1, **kw).fit(x)


@pytest.fixture(scope="module")
def model():
    return _fit(_values())


@pytest.fixture(scope="module")
def causal_model():
    return _fit(_values(), causal=True)


# -- the windowing -------------------------------------------------------------------------------------------
def test_every_timestamp_is_in_a_window_and_a_causal_window_ends_at_its_point():
    x = torch.arange(40, dtype=torch.float64).reshape(20, 2)
    win = windows(x, 5)
    assert win.shape == (16, 5, 2)
    covered = torch.zeros(20, dtype=torch.bool)
    for k in range(len(win)):
        covered[win[k, :, 0].long() // 2] = True
    assert covered.all()
    causal = windows(x, 5, causal=True)
    assert causal.shape == (20, 5, 2)
    assert torch.equal(causal[:, -1], x)  # window t ends at point t
    assert torch.isnan(causal[0, :-1]).all()  # padded in front with missing points


def test_scores_are_one_value_per_timestamp(model):
    x = _values(300, seed=1)
    for name, s in model.anomaly_scores(x).items():
        assert s.shape == (300,), name
    assert model.score_samples(x).shape == model.decision_function(x).shape == model.predict(x).shape == (300,)
    assert set(np.unique(model.predict(x))) <= {-1, 1}


def test_a_dataframe_and_a_one_channel_vector_score_like_the_array(model):
    x = _values(200, seed=2)
    a = model.score_samples(x)
    np.testing.assert_array_equal(a, model.score_samples(x[:, 0]))
    det = _fit(pd.DataFrame({"v": _values()[:, 0]}))
    assert det.score_samples(pd.DataFrame({"v": x[:, 0]})).shape == (200,)


def test_a_spike_scores_above_the_threshold(model):
    x = _values(300, seed=3)
    x[150] += 4.0
    s = model.anomaly_scores(x)["recon"]
    assert s[150] > model.threshold_ and s[150] == s.max()


# -- missing points ----------------------------------------------------------------------------------------
def test_a_missing_point_adds_nothing_to_the_reconstruction_term():
    m = WindowVAE(4, 1, 8, 2)
    x = torch.randn(3, 4, 1)
    x[1, 2, 0] = float("nan")
    out = torch.zeros(3, 4, 1)
    terms = m.nll_terms(out, x)
    assert terms[1, 2, 0] == 0 and torch.isfinite(terms).all()
    x2 = x.clone()
    x2[1, 2, 0] = 0.0
    assert (m.nll_terms(out, x2)[1, 2, 0] != 0)  # ... where an observed point would


def test_a_nan_never_contributes_to_training_and_has_no_score(model):
    x = _values()
    x[[100, 101, 250]] = np.nan
    det = _fit(x)  # trains: a NaN would make the loss NaN
    s = det.anomaly_scores(_values(200, seed=4) * np.where(np.arange(200) == 50, np.nan, 1.0)[:, None])
    assert np.isnan(s["recon"][50]) and np.isfinite(np.delete(s["recon"], 50)).all()


def test_a_missing_timestamp_is_put_on_the_grid_as_a_masked_point(tmp_path):
    f = _frame(100).drop(index=[10, 11, 40]).reset_index(drop=True)
    f.to_csv(tmp_path / "gap.csv", index=False)
    s = read_series(tmp_path / "gap.csv")
    assert len(s.values) == 100 and s.inserted == 3 and s.step == pd.Timedelta("5min")
    assert np.isnan(s.values[[10, 11, 40], 0]).all() and np.isfinite(np.delete(s.values[:, 0], [10, 11, 40])).all()


# -- the causal mode ---------------------------------------------------------------------------------------
def test_changing_the_future_does_not_change_a_causal_score(causal_model):
    x = _values(300, seed=5)
    y = x.copy()
    y[200:] = np.random.default_rng(9).normal(size=(100, 1)) * 3
    a, b = causal_model.anomaly_scores(x), causal_model.anomaly_scores(y)
    for name in a:
        np.testing.assert_array_equal(a[name][:200], b[name][:200], err_msg=name)
        assert not np.allclose(a[name][200:], b[name][200:])


def test_a_non_causal_score_sees_the_future(model):
    x = _values(300, seed=5)
    y = x.copy()
    y[200:] += 3.0
    assert not np.allclose(model.anomaly_scores(x)["recon"][190:200], model.anomaly_scores(y)["recon"][190:200])


def test_the_threshold_is_set_on_the_last_part_of_the_series_in_time_order():
    x = _values(600)
    x[:100] *= 5  # the start is wild: a shuffled hold-out would take some of it
    det = _fit(x, val_fraction=0.2)
    assert det.info_["n_train"] == 480 and det.info_["n_val"] == 120 + W - 1
    held = det.anomaly_scores(x)["recon"][480:]
    assert abs(np.mean(held > det.threshold_) - det.config_.fpr) < 0.03


# -- save and load -----------------------------------------------------------------------------------------
def test_save_and_load_give_identical_scores(model, tmp_path):
    model.save(tmp_path / "m")
    assert not list((tmp_path / "m").glob("*.pkl"))
    again = AnomalyVAE.load(tmp_path / "m")
    x = _values(250, seed=6)
    a, b = model.anomaly_scores(x), again.anomaly_scores(x)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert again.threshold_ == model.threshold_ and again.config_.window == W


# -- bad input: one line naming the column or row ------------------------------------------------------------
BAD = {
    "unparseable": (lambda f: f.assign(timestamp=f.timestamp.where(f.index != 7, "yesterday")),
                    "time column 'timestamp' holds 'yesterday' in data row 8"),
    "duplicated": (lambda f: f.assign(timestamp=f.timestamp.where(f.index != 5, f.timestamp[4])),
                   "repeats .* in data row 5 .* and data row 6"),
    "irregular": (lambda f: f.assign(timestamp=f.timestamp.where(
        f.index != 30, str(pd.Timestamp(f.timestamp[30]) + pd.Timedelta("2min")))), "irregularly sampled"),
    "text": (lambda f: f.assign(c0=f.c0.astype(object).where(f.index != 12, "oops")),
             "column 'c0' holds text 'oops' in data row 13"),
    "constant": (lambda f: f.assign(c1=3.0), "channel 'c1' is constant"),
    "short": (lambda f: f.head(W - 2), "fewer than one window of 16"),
    "no numeric column": (lambda f: f[["timestamp"]], "no numeric column"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_each_bad_series_is_one_line_exit_2_and_writes_nothing(case, tmp_path, cli):
    make, message = BAD[case]
    make(_frame(200)).to_csv(tmp_path / "bad.csv", index=False)
    code, out, err = cli("train", "--series", tmp_path / "bad.csv", "--window", W, "--epochs", 1,
                         "--out", tmp_path / "m", "--no-tracking")
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    import re

    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "m").exists()


def test_a_constant_array_channel_is_an_invalid_input():
    x = _values(300, 2)
    x[:, 1] = 1.0
    with pytest.raises(InvalidInput, match="channel 'x1' is constant"):
        _fit(x)


# -- the CLI round trip -----------------------------------------------------------------------------------------
def test_cli_train_score_evaluate_round_trip_with_two_channels(tmp_path, cli):
    f = _frame(500, 2, label=0)
    f.loc[400:405, "c1"] += 5
    f.loc[400:405, "label"] = 1
    f.to_csv(tmp_path / "s.csv", index=False)
    code, out, err = cli("train", "--series", tmp_path / "s.csv", "--exclude-columns", "label", "--window", W,
                         "--epochs", 3, "--out", tmp_path / "m", "--no-tracking")
    assert code == 0, err
    code, out, err = cli("score", tmp_path / "s.csv", "--model", tmp_path / "m", "--out", tmp_path / "scores.csv")
    assert code == 0, err
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert len(scores) == 500 and {"time", "recon", "is_anomaly", "channel"} <= set(scores.columns)
    assert scores.loc[scores.recon.idxmax(), "channel"] == "c1"
    code, out, err = cli("evaluate", "--series", tmp_path / "s.csv", "--label-column", "label", "--model",
                         tmp_path / "m", "--out", tmp_path / "ev", "--no-tracking")
    assert code == 0, err
    assert "point-adjusted F1" in out and (tmp_path / "ev" / "series.png").stat().st_size > 1000
    import json

    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["auroc"] > 0.8 and 0 <= metrics["pa_f1"] <= 1


@pytest.mark.skipif(not (NAB / "labels" / "combined_windows.json").is_file(), reason="no NAB corpus beside the checkout")
def test_cli_on_a_nab_file_with_its_label_file(tmp_path, cli):
    f = NAB / "data" / "artificialWithAnomaly" / "art_daily_jumpsup.csv"
    code, out, err = cli("train", "--series", f, "--causal", "--epochs", 2, "--out", tmp_path / "m", "--no-tracking")
    assert code == 0, err
    code, out, err = cli("evaluate", "--series", f, "--labels", NAB / "labels" / "combined_windows.json",
                         "--model", tmp_path / "m", "--out", tmp_path / "ev", "--no-tracking")
    assert code == 0, err
    assert "artificialWithAnomaly/art_daily_jumpsup.csv" in out and (tmp_path / "ev" / "series.png").is_file()
