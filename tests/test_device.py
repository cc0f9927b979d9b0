"""Device choice (CPU / CUDA / MPS) and the torchrun backend that goes with it.

CI and this project's machines have no GPU: the CUDA cases run against torch.cuda reporting fake GPUs,
which checks the choices made here, not CUDA itself.
"""

import copy

import pytest
import torch

from anomalyvae.vae import device, distributed
from anomalyvae.config import make_config
from anomalyvae.estimator import AnomalyVAE
from anomalyvae.errors import AnomalyVAEError


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    for var in ("WORLD_SIZE", "LOCAL_RANK", "RANK"):
        monkeypatch.delenv(var, raising=False)


def test_auto_is_the_cpu_without_a_gpu_and_cuda_is_a_clear_error(no_gpu):
    assert device.resolve("auto") == torch.device("cpu")
    assert device.resolve("cpu") == torch.device("cpu")
    with pytest.raises(AnomalyVAEError, match=r"--device cuda: torch .*no CUDA GPU.*; use --device cpu"):
        device.resolve("cuda")
    with pytest.raises(AnomalyVAEError, match="no CUDA GPU"):
        device.resolve("cuda:1")


def test_mps_where_there_is_none_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(AnomalyVAEError, match="no Apple MPS device; use --device cpu"):
        device.resolve("mps")


def test_auto_takes_the_gpu_and_an_index_must_exist(two_gpus):
    assert device.resolve("auto") == torch.device("cuda", 0)
    assert device.resolve("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(AnomalyVAEError, match=r"GPU 2 does not exist, torch sees 2 \(cuda:0 .. cuda:1\)"):
        device.resolve("cuda:2")


def test_under_torchrun_each_process_takes_its_local_rank_gpu_and_nccl(two_gpus, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    dev = device.resolve("auto")
    assert dev == torch.device("cuda", 1) and distributed.backend(dev) == "nccl"
    assert distributed.backend(torch.device("cpu")) == "gloo"
    with pytest.raises(AnomalyVAEError, match="every process on one GPU; use --device cuda"):
        device.resolve("cuda:0")
    monkeypatch.setenv("LOCAL_RANK", "2")  # a third process on a two-GPU node
    with pytest.raises(AnomalyVAEError, match="run at most that many processes per node"):
        device.resolve("cuda")


@pytest.mark.parametrize("bad", ["gpu", "cuda:", "cuda:x", "tpu", ""])
def test_config_refuses_an_unknown_device(bad):
    with pytest.raises(AnomalyVAEError, match="'device' is .*choose auto, cpu, cuda, cuda:N or mps"):
        make_config(device=bad)


def test_a_model_trained_on_a_gpu_loads_and_scores_on_the_cpu(tiny_detector, tmp_path, no_gpu):
    """The device is where a job runs, not part of the model: a 'cuda' config must not stop a CPU load."""
    import dataclasses

    trained_on_gpu = copy.deepcopy(tiny_detector)
    trained_on_gpu.config_ = dataclasses.replace(tiny_detector.config_, device="cuda")
    trained_on_gpu.save(tmp_path / "m")
    det = AnomalyVAE.load(tmp_path / "m")
    assert det.config_.device == "auto" and device.of(det.model_) == torch.device("cpu")
    images = torch.randint(0, 256, (10, 28, 28), dtype=torch.uint8)
    assert (det.decision_function(images) == tiny_detector.decision_function(images)).all()
    with pytest.raises(AnomalyVAEError, match="no CUDA GPU"):
        AnomalyVAE.load(tmp_path / "m", device="cuda")


def test_cli_device_cuda_without_a_gpu_is_one_line_and_exit_2(cli, tmp_path, monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("train", "--limit", "50", "--epochs", "1", "--device", "cuda", "--no-tracking",
                         "--data-dir", "nowhere", "--out", "m")
    # the device is checked before any data is read or any file is written
    assert code == 2 and err.count("\n") == 1 and "no CUDA GPU" in err and "--device cpu" in err
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("command", [["evaluate"], ["score", "x.png"]])
def test_evaluate_and_score_check_the_device_first(cli, tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)  # no models/ here: the device error must come before "no trained model"
    code, _, err = cli(*command, "--device", "tpu")
    assert code == 2 and "'device' is 'tpu'; choose auto, cpu, cuda, cuda:N or mps" in err


def test_on_a_fake_gpu_scoring_and_the_elbo_keep_every_tensor_on_it():
    """torch's FakeTensorMode makes CUDA tensors without a GPU and, like CUDA, refuses an op that mixes
    devices: this runs the scoring and forward paths on 'cuda:0' with the CPU-side inputs the library gets
    (uint8 images, CPU score state, the CPU validation generator). Backward and the optimiser need a real
    CUDA context, so the training step itself is only covered on a GPU (the skipped tests here)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from anomalyvae.config import Config
    from anomalyvae.vae.model import build_model, elbo_terms
    from anomalyvae.scores import available

    NAMES = available("images", "global")  # the local detector scores on the CPU path of test_local.py
    from anomalyvae.detectors.scoring import encode_mu
    from anomalyvae.detectors.whole import WholeState, score_batch

    cfg = Config(arch="conv", use_labels=False).validate()
    mode = FakeTensorMode()
    fake = mode.from_tensor
    state = WholeState(gmm_log_weights=fake(torch.zeros(3)), gmm_means=fake(torch.zeros(3, 16)),
                       gmm_prec_chol=fake(torch.eye(16).repeat(3, 1, 1)), codes=fake(torch.randn(100, 16)),
                       hidden_pick=fake(torch.eye(256)), hidden_mean=fake(torch.zeros(256)),
                       hidden_scale=fake(torch.ones(256)), hidden_codes=fake(torch.randn(100, 256)),
                       mean=dict.fromkeys(NAMES, 0.0), std=dict.fromkeys(NAMES, 1.0))
    images = fake(torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8))
    gpu = torch.device("cuda", 0)
    with mode:
        with gpu:
            model = build_model(cfg, (1, 28, 28))
        out = score_batch(model, images, state.to(gpu), cfg, NAMES)
        assert set(out) == set(NAMES) and {v.device for v in out.values()} == {gpu}
        rec, kl = elbo_terms(model, model.prepare(images), step=distributed.wrap(model, gpu))  # the training pass
        assert rec.device == kl.device == gpu
        rec, kl = elbo_terms(model, model.prepare(images), torch.Generator().manual_seed(0))  # validation
        assert rec.device == gpu
        assert encode_mu(model, images).device == torch.device("cpu")  # codes come back for the mixture fit
        # the check can fail: the mixture left on the CPU (knn's search takes its codes where the query is:
        # knn.KnnIndex, whose faiss index lives on the CPU anyway)
        with pytest.raises(RuntimeError, match="device"):
            score_batch(model, images, state, cfg, ["latent"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none here; CI has none)")
def test_training_and_scoring_on_a_gpu_match_the_cpu(tmp_path, mnist_dir, cli):
    """One short training on the GPU; the saved model scores alike on the GPU and the CPU."""
    from anomalyvae.data.idx import read_idx

    code, _, err = cli("train", "--normal", "1", "--limit", "1000", "--epochs", "2", "--device", "cuda",
                       "--no-tracking", "--data-dir", mnist_dir, "--out", tmp_path / "m")
    assert code == 0, err
    x = torch.from_numpy(read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz")[:500].copy())
    gpu, cpu = AnomalyVAE.load(tmp_path / "m", "cuda"), AnomalyVAE.load(tmp_path / "m", "cpu")
    assert device.of(gpu.model).type == "cuda"
    a, b = gpu.anomaly_scores(x), cpu.anomaly_scores(x)
    for name in a:
        assert torch.allclose(torch.from_numpy(a[name]), torch.from_numpy(b[name]), rtol=1e-3, atol=1e-3), name
