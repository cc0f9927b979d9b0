"""The fast paths (issue 4) give the same answers as the plain ones: libpng vs Pillow, threads, precision, tracking."""

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from anomalyvae.data import images
from anomalyvae.vae import runtime
from anomalyvae.config import make_config
from anomalyvae.errors import AnomalyVAEError, DataError
from anomalyvae.data.images import load_image


def pillow_gray(path):
    return np.asarray(Image.open(path).convert("L"))[None]  # load_image's (1, H, W)


@pytest.fixture
def no_pillow(monkeypatch):
    """Make the Pillow path fail loudly, to prove a file went through libpng."""
    def refuse(*args):
        raise AssertionError("went through Pillow")

    monkeypatch.setattr(images, "_decode_pillow", refuse)


@pytest.mark.parametrize("seed", range(5))
def test_gray8_png_goes_through_libpng_and_matches_pillow(tmp_path, seed):
    arr = np.random.default_rng(seed).integers(0, 256, (28, 28), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "g.png", compress_level=seed)
    expected = pillow_gray(tmp_path / "g.png")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(images, "_decode_pillow", lambda *a: pytest.fail("went through Pillow"))
        out = load_image(tmp_path / "g.png", 28)
    assert out.dtype == np.uint8 and np.array_equal(out, expected)


def test_gray8_png_with_transparency_matches_pillow(tmp_path, no_pillow):
    arr = np.random.default_rng(3).integers(0, 256, (28, 28), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "t.png", transparency=int(arr[0, 0]))
    assert np.array_equal(load_image(tmp_path / "t.png", 28)[0], arr)


@pytest.mark.parametrize("make", [
    lambda a: Image.fromarray(a).convert("RGB"),  # colour: Pillow's luma, not libpng's
    lambda a: Image.fromarray(a).resize((40, 40)),  # another size: Pillow's resize
    lambda a: Image.fromarray(a.astype(np.uint16) * 257),  # 16-bit
    lambda a: Image.fromarray(a).convert("P"),  # palette
])
def test_other_pngs_keep_the_pillow_path(tmp_path, make):
    arr = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    make(arr).save(tmp_path / "x.png")
    seen = []
    real = images._decode_pillow
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(images, "_decode_pillow", lambda *a: seen.append(1) or real(*a))
        out = load_image(tmp_path / "x.png", 28)
    assert seen and out.shape == (1, 28, 28) and out.dtype == np.uint8


def test_corrupt_gray8_png_is_a_data_error_from_pillow(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)).save(tmp_path / "c.png")
    raw = bytearray((tmp_path / "c.png").read_bytes())
    raw[60:80] = b"\0" * 20  # the header still says gray 8-bit 28x28; the pixels are garbage
    (tmp_path / "c.png").write_bytes(bytes(raw))
    with pytest.raises(DataError):
        load_image(tmp_path / "c.png", 28)


def test_directory_and_missing_file_messages_are_unchanged(tmp_path):
    with pytest.raises(DataError, match="is a directory"):
        load_image(tmp_path, 28)
    with pytest.raises(DataError, match="cannot read"):
        load_image(tmp_path / "missing.png", 28)


def test_pick_threads_respects_the_user_then_the_load(monkeypatch):
    monkeypatch.setattr(runtime, "usable_cpus", lambda: 2)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert runtime.pick_threads(5) == 5
    assert runtime.pick_threads(None) == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    for load, want in ((0.1, 2), (0.7, 1), (1.4, 1), (6.0, 1)):
        monkeypatch.setattr(runtime.os, "getloadavg", lambda load=load: (load, load, load))
        assert runtime.pick_threads(None) == want


@pytest.mark.parametrize("native", [False, True])
def test_auto_precision_is_float32_everywhere_today_and_explicit_precision_is_kept(monkeypatch, native):
    monkeypatch.setattr(runtime, "native_bf16", lambda: native)
    for where in ("train", "score"):  # the README: bfloat16 is opt-in, scores must not depend on batching
        assert runtime.resolve_precision("auto", where) == "float32"
        assert runtime.resolve_precision("bfloat16", where) == "bfloat16"
        assert runtime.resolve_precision("float32", where) == "float32"


def test_auto_precision_takes_bfloat16_only_where_listed_and_native(monkeypatch):
    monkeypatch.setattr(runtime, "AUTO_BF16", frozenset({"score"}))
    monkeypatch.setattr(runtime, "native_bf16", lambda: True)
    assert [runtime.resolve_precision("auto", w) for w in ("train", "score")] == ["float32", "bfloat16"]
    monkeypatch.setattr(runtime, "native_bf16", lambda: False)  # emulated bfloat16 is slower: never
    assert [runtime.resolve_precision("auto", w) for w in ("train", "score")] == ["float32", "float32"]


def test_precision_is_validated():
    assert make_config(precision="float32").precision == "float32"
    with pytest.raises(AnomalyVAEError, match="precision"):
        make_config(precision="half")


def test_scores_in_bfloat16_rank_like_float32():
    from anomalyvae.vae.model import MLPVAE
    from anomalyvae.detectors.whole import WholeState, score_inputs

    torch.manual_seed(0)
    model = MLPVAE((1, 28, 28), 64, 8)
    imgs = torch.randint(0, 256, (300, 1, 28, 28), dtype=torch.uint8)
    cfg = make_config(arch="mlp", hidden=64, latent_dim=8)
    a = score_inputs(model, imgs, WholeState(), make_config(**{**cfg.to_dict(), "precision": "float32"}), ("recon", "elbo"))
    b = score_inputs(model, imgs, WholeState(), make_config(**{**cfg.to_dict(), "precision": "bfloat16"}), ("recon", "elbo"))
    for k in a:
        assert np.corrcoef(a[k], b[k])[0, 1] > 0.99
        assert np.allclose(a[k], b[k], rtol=0.01)


def test_training_in_bfloat16_ends_near_float32(mnist_dir):
    from anomalyvae.data.datasets import load_train
    from anomalyvae.vae.model import build_model
    from anomalyvae.vae.train import fit

    cfg = make_config(arch="mlp", latent_dim=20, data_dir=str(mnist_dir), limit=3000, epochs=2, use_labels=False)
    data = load_train(cfg)

    def val_loss(precision):
        torch.manual_seed(0)  # the same initial weights
        model = build_model(cfg, (1, 28, 28))
        return fit(make_config(**{**cfg.to_dict(), "precision": precision}), model, data.train, data.val).history[-1].val_loss

    losses = {p: val_loss(p) for p in ("float32", "bfloat16")}
    assert abs(losses["bfloat16"] - losses["float32"]) / losses["float32"] < 0.02


def test_score_paths_rows_match_pillow_decoding_and_keep_error_rows(tmp_path):
    from anomalyvae.estimator import AnomalyVAE
    from anomalyvae.pipeline.files import score_paths

    images = torch.randint(0, 256, (64, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    det = AnomalyVAE(arch="mlp", latent_dim=8, hidden=32, anomaly_score="elbo", epochs=1, random_state=0).fit(images)
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "9.png").write_bytes(b"not a png")
    summary = score_paths(det, [tmp_path], csv=tmp_path / "out" / "s.csv", top_k=3)
    rows = pd.read_csv(tmp_path / "out" / "s.csv", keep_default_na=False)
    assert summary.n_files == 6 and summary.n_errors == 1 and len(summary.top) == 3
    bad = rows[rows["error"] != ""]
    assert bad["path"].str.endswith("9.png").all() and bad["is_anomaly"].iloc[0] == ""
    good = rows[rows["error"] == ""]
    expected = det.anomaly_scores(np.stack([pillow_gray(p) for p in good["path"]]), ("elbo",))
    assert np.allclose(good["elbo"].astype(float), expected["elbo"], rtol=1e-5)
    assert [r["elbo"] for r in summary.top] == sorted(good["elbo"].astype(float), reverse=True)[:3]


def test_tracker_logs_in_call_order_and_finishes_the_run(tmp_path):
    import mlflow

    from anomalyvae.tracking.runs import Tracker

    t = Tracker("exp", f"sqlite:///{tmp_path / 'm.db'}")
    t.start("run")
    for step in range(3):
        t.log_metrics({"loss": float(step)}, step=step)
    run_id = t.run_id
    t.end()
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'm.db'}")
    assert [m.value for m in client.get_metric_history(run_id, "loss")] == [0.0, 1.0, 2.0]
    assert client.get_run(run_id).info.status == "FINISHED"


def test_a_failing_tracker_warns_once_and_reports_no_run(tmp_path):
    from anomalyvae.tracking.runs import Tracker

    warnings = []
    (tmp_path / "file").write_text("x")
    t = Tracker("exp", f"sqlite:///{tmp_path / 'file' / 'm.db'}", warn=warnings.append)
    t.start("run")
    t.log_metrics({"a": 1.0})
    assert t.run_id is None
    t.end()
    assert len(warnings) == 1 and not t.enabled
