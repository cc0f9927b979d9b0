import json
import os
import pickle

import numpy as np
import pytest
import torch

from anomalyvae.estimator import AnomalyVAE
from anomalyvae.modeldir import latest_model
from anomalyvae.errors import ModelDirError
from anomalyvae.modeldir import MODEL_FILE, read_tensors, write_tensors


@pytest.fixture
def detector(tiny_detector):
    return tiny_detector  # conftest: untrained MLP, calibrated on random images


def test_round_trip_gives_identical_scores_and_threshold(detector, tmp_path):
    detector.save(tmp_path / "m")
    loaded = AnomalyVAE.load(tmp_path / "m")
    x = torch.randint(0, 256, (10, 28, 28), dtype=torch.uint8)
    a, b = detector.anomaly_scores(x), loaded.anomaly_scores(x)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-6)
    assert loaded.threshold_ == detector.threshold_ and loaded.config_ == detector.config_
    assert loaded.info_["normal_classes"] == [0]


def test_scores_are_deterministic_and_independent_of_batching(detector):
    x = torch.randint(0, 256, (9, 28, 28), dtype=torch.uint8)
    full = detector.anomaly_scores(x)
    for k, v in detector.anomaly_scores(x[4:5]).items():
        np.testing.assert_allclose(v, full[k][4:5], rtol=1e-5, atol=1e-5)  # float32 rounding of knn distances
    for k, v in detector.anomaly_scores(x).items():
        np.testing.assert_array_equal(v, full[k])


class _RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['PWNED_MARKER']}",))


def test_a_malicious_pickle_is_refused_without_running_it(detector, tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("PWNED_MARKER", str(marker))
    detector.save(tmp_path / "m")
    payload = pickle.dumps(_RunsCode())
    pickle.loads(payload)  # proves the payload is live: it creates the marker when unpickled
    assert marker.exists()
    marker.unlink()
    (tmp_path / "m" / MODEL_FILE).write_bytes(payload)
    with pytest.raises(ModelDirError, match="pickle"):
        AnomalyVAE.load(tmp_path / "m")
    assert not marker.exists()


def test_torch_save_file_is_refused(detector, tmp_path):
    detector.save(tmp_path / "m")
    torch.save(detector.model_.state_dict(), tmp_path / "m" / MODEL_FILE)
    with pytest.raises(ModelDirError, match="not a safetensors file|pickle"):
        AnomalyVAE.load(tmp_path / "m")


def _rewrite_header(path, edit):
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    meta = header["__metadata__"]
    edit(meta)
    new = json.dumps(header).encode()
    new += b" " * ((8 - len(new) % 8) % 8)
    path.write_bytes(len(new).to_bytes(8, "little") + new + raw[8 + n:])


def test_a_tampered_threshold_fails_the_checksum(detector, tmp_path):
    detector.save(tmp_path / "m")

    def edit(meta):
        inner = json.loads(meta["anomalyvae"])
        inner["threshold"] = 1e9
        meta["anomalyvae"] = json.dumps(inner, sort_keys=True)

    _rewrite_header(tmp_path / "m" / MODEL_FILE, edit)
    with pytest.raises(ModelDirError, match="checksum"):
        AnomalyVAE.load(tmp_path / "m")


def test_a_flipped_weight_byte_fails_the_checksum(detector, tmp_path):
    detector.save(tmp_path / "m")
    p = tmp_path / "m" / MODEL_FILE
    raw = bytearray(p.read_bytes())
    raw[-5] ^= 0xFF
    p.write_bytes(bytes(raw))
    with pytest.raises(ModelDirError, match="checksum"):
        AnomalyVAE.load(tmp_path / "m")


def test_another_format_version_is_named(tmp_path):
    p = tmp_path / MODEL_FILE
    write_tensors(p, {"x": torch.zeros(1)}, {})
    tensors, meta = read_tensors(p)

    def edit(m):
        inner = json.loads(m["anomalyvae"])
        inner["format_version"] = 99
        m["anomalyvae"] = json.dumps(inner, sort_keys=True)

    _rewrite_header(p, edit)
    with pytest.raises(ModelDirError, match="version 99"):
        read_tensors(p)


def test_weights_of_another_architecture_are_a_clear_error(detector, tmp_path):
    detector.save(tmp_path / "m")
    tensors, meta = read_tensors(tmp_path / "m" / MODEL_FILE)
    meta["config"]["hidden"] = 64  # claims a wider model than the weights hold
    write_tensors(tmp_path / "m" / MODEL_FILE, tensors, meta)
    with pytest.raises(ModelDirError, match="do not fit"):
        AnomalyVAE.load(tmp_path / "m")


def test_missing_model_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ModelDirError, match="does not exist"):
        AnomalyVAE.load(tmp_path / "nothing")
    with pytest.raises(ModelDirError, match="anomalyvae train"):
        latest_model(tmp_path)


def test_saving_over_a_model_replaces_it_whole(detector, tmp_path):
    detector.save(tmp_path / "m")
    detector.threshold_ = 123.0
    detector.save(tmp_path / "m")
    assert AnomalyVAE.load(tmp_path / "m").threshold_ == 123.0
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.json", MODEL_FILE]
