import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
MNIST = Path(os.environ.get("ANOMALYVAE_TEST_MNIST", ROOT.parent / "shared" / "datasets" / "mnist"))


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    if not (MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"MNIST IDX files not found in {MNIST}; set ANOMALYVAE_TEST_MNIST to their folder")
    return MNIST


def run_cli(*args, cwd, env=None, timeout=300):
    """Run the installed CLI the way a user does, in a clean working folder."""
    full_env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"), **(env or {})}
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
