import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
# why a browser test is skipped: `make test` installs nothing; the browser is an explicit step (issue 22, item 1)
NO_BROWSER = "chromium is not installed; `make browser` installs it (apt-get, as root) to run the browser tests"
MNIST = Path(os.environ.get("ANOMALYVAE_TEST_MNIST", ROOT.parent / "shared" / "datasets" / "mnist"))


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    if not (MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"MNIST IDX files not found in {MNIST}; set ANOMALYVAE_TEST_MNIST to their folder")
    return MNIST


def run_cli(*args, cwd, env=None, timeout=300):
    """Run the installed CLI the way a user does, in a clean working folder."""
    inherited = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}  # mlflow.set_tracking_uri
    # in an earlier in-process test exports it; the CLI's default store (mlflow.db in cwd) is what we test
    full_env = {**inherited, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"), **(env or {})}
    return subprocess.run([sys.executable, "-m", "anomalyvae", *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def write_png(tmp_path):
    from PIL import Image

    def write(name, array=None, mode="L", size=(28, 28)):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if array is None:
            array = np.random.default_rng(0).integers(0, 255, size=size[::-1] + ((3,) if mode == "RGB" else ()),
                                                      dtype=np.uint8)
        Image.fromarray(array).convert(mode).save(path)
        return path

    return write


@pytest.fixture
def cli(monkeypatch, capsys):
    """The CLI's main() in this process, without an interpreter start-up: call(*args) -> (exit code, out, err).

    MLflow's global tracking URI (which it also exports to the environment) is reset afterwards, so one
    test's tracking store never leaks into another's subprocesses.
    """
    from anomalyvae.cli.main import main

    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)

    def call(*args):
        monkeypatch.setattr(sys, "argv", ["anomalyvae", *map(str, args)])
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as e:
            code = e.code or 0
        out, err = capsys.readouterr()
        return code, out, err

    yield call
    if "mlflow" in sys.modules:
        sys.modules["mlflow"].set_tracking_uri(None)


@pytest.fixture
def tiny_detector():
    """A barely trained but complete detector (one epoch on random images, calibrated): scores files in ms."""
    import torch

    from anomalyvae.estimator import AnomalyVAE

    images = torch.randint(0, 256, (64, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    det = AnomalyVAE(arch="mlp", latent_dim=4, hidden=32, latent_components=2, epochs=1, val_fraction=0.25,
                     random_state=0, threads=1).fit(images)
    det.info_["normal_classes"] = [0]
    return det


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_server(proc, log) -> None:
    """End a server started with start_new_session: the CLI and its workers, SIGKILL if SIGTERM is ignored."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    log.close()
