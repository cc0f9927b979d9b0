"""torchrun with 2 processes (DistributedDataParallel: gloo on CPUs, nccl on GPUs) gives a valid model, logged
once, close to the single-process one. The GPU case runs only where torch sees two GPUs (never in CI)."""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from conftest import run_cli

ARGS = ["--normal", "1", "--limit", "2000", "--epochs", "1", "--seed", "3"]


def _auroc(model_dir, mnist_dir):
    from sklearn.metrics import roc_auc_score

    from anomalyvae.estimator import AnomalyVAE
    from anomalyvae.data.idx import read_idx

    x = torch.from_numpy(read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz")[:2000].copy())
    y = read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz")[:2000] != 1
    return roc_auc_score(y, -AnomalyVAE.load(model_dir).score_samples(x))  # higher = more normal: negate


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    torch.cuda.device_count() < 2, reason="needs two CUDA GPUs for nccl; this machine has "
    f"{torch.cuda.device_count()}"))])
def test_torchrun_two_processes_trains_a_model_like_one_process(tmp_path, mnist_dir, device):
    args = [*ARGS, "--device", device]
    r = run_cli("train", *args, "--data-dir", mnist_dir, "--out", "models/single", "--no-tracking", cwd=tmp_path,
                env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "anomalyvae", "train", *args, "--data-dir", str(mnist_dir), "--out", "models/ddp"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:  # torchrun passes SIGTERM on to its workers (they run in sessions of their own)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, stderr[-3000:]
    assert stdout.count("model: models/ddp") == 1  # rank 0 reports, rank 1 stays quiet
    meta = json.loads((tmp_path / "models" / "ddp" / "model.json").read_text())
    assert meta["info"]["n_train"] == 1800 and meta["config"]["batch_size"] == 128  # global, not per process
    assert meta["config"]["device"] == device
    single, ddp = _auroc(tmp_path / "models" / "single", mnist_dir), _auroc(tmp_path / "models" / "ddp", mnist_dir)
    assert ddp > 0.9 and abs(ddp - single) < 0.03, (single, ddp)

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("anomalyvae").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"  # only rank 0 logged
    assert len(client.get_metric_history(runs[0].info.run_id, "val_loss")) == 1
