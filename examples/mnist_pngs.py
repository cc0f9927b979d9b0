"""Write some MNIST test images as PNG files, so `anomalyvae score images/` has files to score after `make demo`.

    python examples/mnist_pngs.py [--data-dir data] [--out images] [--n 40]
    python examples/mnist_pngs.py --flagged scores.csv [--digit 9]

The first N test images, named by index and digit (00007-digit9.png): with the demo's model (normal 0-8)
the nines are the anomalies to find. `--flagged` reads the CSV `anomalyvae score images/ --out scores.csv`
wrote and says how many nines, and how many other digits, were flagged.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from PIL import Image

    from anomalyvae.data.datasets import load_test

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=os.environ.get("ANOMALYVAE_DATA_DIR", "data"))
    ap.add_argument("--out", default="images")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--flagged", type=Path, default=None, metavar="CSV", help="count what a score CSV flagged")
    ap.add_argument("--digit", type=int, default=9, help="the anomaly digit, for --flagged")
    args = ap.parse_args(argv)
    if args.flagged is not None:
        import pandas as pd

        scores = pd.read_csv(args.flagged)
        anomaly = scores["path"].str.contains(f"digit{args.digit}")
        flagged = scores["is_anomaly"].fillna(False).astype(bool)
        print(f"flagged {int(flagged[anomaly].sum())} of {int(anomaly.sum())} digit-{args.digit} images (the "
              f"anomaly) and {int(flagged[~anomaly].sum())} of {int((~anomaly).sum())} other digits")
        return 0
    test = load_test("mnist", Path(args.data_dir))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(min(args.n, len(test))):
        Image.fromarray(test.images[i, 0].numpy()).save(out / f"{i:05d}-digit{int(test.labels[i])}.png")
    print(f"{min(args.n, len(test))} MNIST test images -> {out}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
