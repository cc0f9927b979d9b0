"""Write some MNIST test images as PNG files, so `anomalyvae score images/` has files to score after `make demo`.

    python examples/mnist_pngs.py [--data-dir data] [--out images] [--n 40]
    python examples/mnist_pngs.py --flagged scores.csv [--digit 9] [--metrics m.json --results FILE]

The first N test images, named by index and digit (00007-digit9.png): with the demo's model (normal 0-8)
the nines are the anomalies to find. `--flagged` reads the CSV `anomalyvae score images/ --out scores.csv`
wrote and says how many nines, and how many other digits, were flagged. With `--metrics` (what
`anomalyvae evaluate --metrics-out` wrote) and `--results`, it also writes those counts and the evaluation's
AUROC and recall as one line of key=value pairs: `make demo` writes benchmarks/results/demo.txt, the figures the README's
demo sentence states (tests/test_docs.py checks them against it).
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
    ap.add_argument("--metrics", type=Path, default=None, help="the evaluation's metrics JSON, for --results")
    ap.add_argument("--results", type=Path, default=None, help="write the counts (and --metrics' figures) here")
    args = ap.parse_args(argv)
    if args.flagged is not None:
        import pandas as pd

        scores = pd.read_csv(args.flagged)
        anomaly = scores["path"].str.contains(f"digit{args.digit}")
        flagged = scores["is_anomaly"].fillna(False).astype(bool)
        counts = {"images": len(scores), "digit": args.digit, "digit_images": int(anomaly.sum()),
                  "digit_flagged": int(flagged[anomaly].sum()), "other_images": int((~anomaly).sum()),
                  "other_flagged": int(flagged[~anomaly].sum())}
        print(f"flagged {counts['digit_flagged']} of {counts['digit_images']} digit-{args.digit} images (the "
              f"anomaly) and {counts['other_flagged']} of {counts['other_images']} other digits")
        if args.results is not None:
            write_results(args.results, counts, args.metrics)
            print(f"wrote {args.results}")
        return 0
    test = load_test("mnist", Path(args.data_dir))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(min(args.n, len(test))):
        Image.fromarray(test.images[i, 0].numpy()).save(out / f"{i:05d}-digit{int(test.labels[i])}.png")
    print(f"{min(args.n, len(test))} MNIST test images -> {out}/")
    return 0


def write_results(path: Path, counts: dict, metrics: Path | None) -> None:
    """One line of key=value pairs (as the other results files, for docs/hooks.py's [[demo.txt:KEY]]) under a
    comment naming the command: the flagged counts, and from the evaluation's metrics its AUROC and recall, with the
    false-positive rate the model's threshold was calibrated for (its config's `fpr`)."""
    import json

    lines = ["# written by `make demo` (examples/mnist_pngs.py --flagged scores.csv --metrics m.json --results ...):",
             "# `anomalyvae train --normal 0-8`, `evaluate`, then `score images/` on the first test digits"]
    values = dict(counts)
    if metrics is not None:
        m = json.loads(metrics.read_text())
        values.update(auroc=round(m["auroc"], 4), recall=round(m["recall"], 4), score=m["score"])
        if m.get("model_dir"):
            config = json.loads((Path(m["model_dir"]) / "model.json").read_text())["config"]
            values["target_fpr"] = config["fpr"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines + [" ".join(f"{k}={v}" for k, v in values.items())]) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
