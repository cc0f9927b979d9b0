"""Start-up of `anomalyvae score` (issue 15): what a one-file run imports is what it waits for."""

import subprocess
import sys

import numpy as np
from PIL import Image

# runs the CLI in-process, then names the mlflow modules it imported
PROBE = """
import sys
from anomalyvae.cli.main import main
try:
    main()
except SystemExit as e:
    assert not e.code, e.code
print(sorted(m for m in sys.modules if m.split('.')[0] == 'mlflow'))
"""


def test_score_with_a_model_directory_does_not_import_mlflow(tiny_detector, tmp_path):
    tiny_detector.save(tmp_path / "m")
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "one.png")
    r = subprocess.run([sys.executable, "-c", PROBE, "score", "one.png", "--model", "m", "--out", "s.csv"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "s.csv").read_text().count("one.png") == 1
