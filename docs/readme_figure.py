"""The README's picture, docs/assets/heatmaps.png: the colour model's four rows of the synthetic-inspection figure.

    python docs/readme_figure.py

benchmarks/synthetic_inspection.py draws one row per defect type and model (input | reconstruction | anomaly
map with its colour bar, 150 px a row, colour and grey rows alternating); this keeps the colour model's rows
(scratch, spot, colour, missing) in a 2 x 2 grid, as a 256-colour PNG. Rerun it after that benchmark.
"""

from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
ROW = 150  # pixels per row of the benchmark's figure


def main() -> None:
    src = Image.open(ROOT / "benchmarks" / "results" / "synthetic-inspection.png").convert("RGB")
    rows = [src.crop((0, i * ROW, src.width, (i + 1) * ROW)) for i in (0, 2, 4, 6)]  # the colour model's rows
    grid = Image.new("RGB", (2 * src.width, 2 * ROW), "white")
    for k, row in enumerate(rows):
        grid.paste(row, ((k % 2) * src.width, (k // 2) * ROW))
    out = ROOT / "docs" / "assets" / "heatmaps.png"
    grid.quantize(256, method=Image.Quantize.FASTOCTREE).save(out, optimize=True)
    print(f"{out.relative_to(ROOT)}: {grid.width}x{grid.height}, {out.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
