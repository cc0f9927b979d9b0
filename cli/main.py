"""anomalyvae's commands. Each one parses flags into the library's Config, calls the library and prints.

Heavy imports (torch, mlflow) happen inside the commands so that `anomalyvae --help` stays instant.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.text import Text

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Find anomalies by variational-autoencoder reconstruction. "
         "Typical use: train, then evaluate, then score; review runs with `mlflow ui`.",
)
console = Console(soft_wrap=True)  # long paths and messages stay on one line, for grep and logs
err = Console(stderr=True, soft_wrap=True)
_debug = False

ConfigOpt = typer.Option(None, "--config", "-c", help="YAML file with Config keys (see configs/); flags override it.")
TrackingOpt = typer.Option(None, "--tracking-uri", help="MLflow tracking URI [default: $MLFLOW_TRACKING_URI, else sqlite mlflow.db].")
NoTrackOpt = typer.Option(False, "--no-tracking", help="Do not log to MLflow.")
ModelDirOpt = typer.Option(None, "--model", "-m", help="Model directory [default: the newest under models/].")
DeviceOpt = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N | mps [default: auto, a CUDA GPU when there is one].")


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")) -> None:
    global _debug
    _debug = debug


def _warn(message: str) -> None:
    err.print(Text("warning: ", style="yellow") + Text(message), highlight=False)


def _tracker(experiment: str, uri: Optional[str], disabled: bool, register: Optional[str] = None):
    from anomalyvae.tracking import Tracker

    return Tracker(experiment, uri or os.environ.get("MLFLOW_TRACKING_URI"), enabled=not disabled,
                   warn=_warn, register=register)


def _device(device: Optional[str]) -> str:
    """Check --device before anything else is looked up, so its error is the one shown."""
    from anomalyvae.device import resolve

    resolve(device or "auto")
    return device or "auto"


def _model_dir(model: Optional[Path]) -> Path:
    from anomalyvae.modeldir import latest_model

    return model if model is not None else latest_model()


@app.command()
def train(
    normal: Optional[str] = typer.Option(None, "--normal", "-n", help="Normal classes, e.g. 0-8, 0,2,4, 3, 1-3,7, or all [default: 0-8]."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="mnist | fashion-mnist | mvtec | folder [default: mnist]; mvtec trains on DATA_DIR/train/good."),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="Folder with the IDX files, or the MVTec-AD root [default: $ANOMALYVAE_DATA_DIR, else ./data]."),
    train_dir: Optional[str] = typer.Option(None, "--train-dir", help="With --dataset folder: a folder of normal images."),
    channels: Optional[int] = typer.Option(None, "--channels", help="1 (grey) or 3 (RGB) [default: 3 if any training image is colour, else 1]."),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="Images are resized to NxN, aspect ratio ignored [default: 28]."),
    arch: Optional[str] = typer.Option(None, "--model", help="Architecture: mlp | conv [default: conv]."),
    epochs: Optional[int] = typer.Option(None, "--epochs", "-e", help="Maximum epochs (early stopping may end sooner)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size"),
    lr: Optional[float] = typer.Option(None, "--lr", help="Adam learning rate."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Makes the run reproducible."),
    fpr: Optional[float] = typer.Option(None, "--fpr", help="Target false-positive rate for the threshold [default: 0.05]."),
    score: Optional[str] = typer.Option(None, "--score", help="Score the threshold applies to: recon | elbo | iwae | latent | combined."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Use at most this many normal training images (quick runs)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Model directory to write [default: models/<dataset>-<classes>-<arch>-<time>]."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted training in --out from its last complete epoch."),
    register: Optional[str] = typer.Option(None, "--register", help="Also register the MLflow model under this name in the Model Registry."),
    device: Optional[str] = DeviceOpt,
    config: Optional[Path] = ConfigOpt,
    tracking_uri: Optional[str] = TrackingOpt,
    no_tracking: bool = NoTrackOpt,
) -> None:
    """Learn what "normal" looks like from normal data only; writes one model directory."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from anomalyvae.config import make_config
    from anomalyvae.pipeline import train_detector

    if os.environ.get("RANK", "0") != "0":  # torchrun: only rank 0 talks
        console.quiet = err.quiet = True
    cfg = make_config(config, dataset=dataset, data_dir=data_dir, train_dir=train_dir, normal=normal, arch=arch,
                      channels=channels, image_size=image_size,
                      epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, fpr=fpr, score=score, limit=limit,
                      device=device, tracking_uri=tracking_uri)
    if register and no_tracking:
        from anomalyvae.errors import AnomalyVAEError

        raise AnomalyVAEError("--register needs MLflow tracking; drop --no-tracking")
    tracker = _tracker(cfg.experiment, cfg.tracking_uri, no_tracking, register)
    columns = (TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]:.2f}  val {task.fields[val]}"), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=False, disable=not err.is_terminal) as bar:
        task = bar.add_task("train", total=None, epoch=0, loss=float("nan"), val="-")

        def on_step(epoch: int, step: int, steps: int, loss: float) -> None:
            if step == 1 or step % 20 == 0 or step == steps:
                bar.update(task, completed=step, total=steps, epoch=epoch, loss=loss)

        def on_epoch(s) -> None:
            bar.update(task, val=f"{s.val_loss:.2f}")
            bar.console.print(f"epoch {s.epoch:3d}  loss {s.loss:8.2f}  recon {s.recon:8.2f}  kl {s.kl:6.2f}  "
                              f"val {s.val_loss:8.2f}  ({s.seconds:.1f}s)", highlight=False)

        det, model_dir = train_detector(cfg, out, resume, tracker, on_step=on_step, on_epoch=on_epoch,
                                        log=_warn)
    if det is None:  # a torchrun worker other than rank 0: rank 0 reports
        return
    info = det.info_
    console.print(f"trained {cfg.arch} on {info['n_train']} images in {info['train_seconds']:.1f}s "
                  f"(best epoch {info['best_epoch']}/{info['epochs_run']}); threshold {det.threshold_:.3f} on "
                  f"'{det.score_}' gives FPR {info['val_fpr']:.3f} on {info['n_val']} held-out normal images",
                  highlight=False)
    if tracker.run_id and tracker.enabled:
        console.print(f"MLflow run {tracker.run_id} ({tracker.uri})", highlight=False)
    if tracker.model_uri:
        also = f" = models:/{register}/{tracker.model_version}" if tracker.model_version else ""
        console.print(f"MLflow model: runs:/{tracker.run_id}/detector{also}", highlight=False)
    console.print(f"model: {model_dir}", highlight=False)


@app.command()
def evaluate(
    model: Optional[Path] = ModelDirOpt,
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="Where the dataset's test files are [default: as trained]."),
    normal_dir: Optional[Path] = typer.Option(None, "--normal-dir", help="Test on a folder of normal images (with --anomaly-dir or --anomalies)."),
    anomaly_dir: Optional[Path] = typer.Option(None, "--anomaly-dir", help="Test on a folder of anomalous images (with --normal-dir)."),
    mask_dir: Optional[Path] = typer.Option(None, "--mask-dir", help="Ground-truth masks of the --anomaly-dir images, same names (pixel AUROC and AUPRO)."),
    anomalies: Optional[str] = typer.Option(None, "--anomalies", help="mnist | fashion-mnist | DIR: these images are the anomalies, the model's own normal test images the normals."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for plots and metrics [default: MODEL/evaluation]."),
    metrics_out: Optional[Path] = typer.Option(None, "--metrics-out", help="Also write the metrics JSON here."),
    device: Optional[str] = DeviceOpt,
    tracking_uri: Optional[str] = TrackingOpt,
    no_tracking: bool = NoTrackOpt,
) -> None:
    """AUROC / AUPRC / F1 on the test split (every class not trained as normal is the anomaly), with plots;
    pixel AUROC / AUPRO where there are masks (MVTec-AD ground_truth, --mask-dir)."""
    import json

    from rich.table import Table

    from anomalyvae.estimator import AnomalyVAE
    from anomalyvae.modeldir import atomic_write_bytes
    from anomalyvae.pipeline import evaluate_detector
    from anomalyvae.testsets import build

    device = _device(device)
    model_dir = _model_dir(model)
    det = AnomalyVAE.load(model_dir, device)
    notes: set[str] = set()
    test = build(det, data_dir, normal_dir, anomaly_dir, mask_dir, anomalies, notes)
    for note in sorted(notes):
        _warn(note)
    if test.skipped:
        _warn(f"skipped {len(test.skipped)} unreadable test file(s), e.g. {test.skipped[0].path}: {test.skipped[0].error}")
    tracker = _tracker(det.config_.experiment, tracking_uri or det.config_.tracking_uri, no_tracking)
    res = evaluate_detector(det, out or model_dir / "evaluation", test=test, data_dir=data_dir, tracker=tracker,
                            model_dir=model_dir)
    if metrics_out is not None:
        atomic_write_bytes(metrics_out, json.dumps(res, indent=2).encode())
    table = Table(title=f"{model_dir}  ({res['n_test']} test images, {res['n_anomalies']} anomalies)")
    for col in ("score", "AUROC", "AUPRC"):
        table.add_column(col, justify="right" if col != "score" else "left")
    for name, r in res["scores"].items():
        mark = " (default)" if name == res["score"] else ""
        table.add_row(name + mark, f"{r['auroc']:.4f}", f"{r['auprc']:.4f}")
    console.print(table)
    console.print(f"at threshold {res['threshold']:.3f}: precision {res['precision']:.3f}  recall {res['recall']:.3f}  "
                  f"F1 {res['f1']:.3f}  FPR {res['fpr']:.3f}  (tp {res['tp']} fp {res['fp']} tn {res['tn']} fn {res['fn']})",
                  highlight=False)
    per = [r for r in res["per_class"] if "auroc" in r]
    if per:
        console.print("AUROC per anomaly class: " + "  ".join(f"{r['class']}={r['auroc']:.3f}" for r in per),
                      highlight=False)
    if "pixel_auroc" in res:
        console.print(f"pixel AUROC {res['pixel_auroc']:.4f}  pixel AUPRO {res['pixel_aupro']:.4f}", highlight=False)
    console.print(f"AUROC {res['auroc']:.4f}", highlight=False)


@app.command()
def score(
    paths: list[Path] = typer.Argument(..., help="Image files and/or folders (searched recursively)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model directory, or an MLflow model URI "
                                        "(models:/NAME/1, runs:/RUN_ID/detector) [default: the newest under models/]."),
    out: Path = typer.Option(Path("scores.csv"), "--out", "-o", help="CSV with one row per file."),
    top: int = typer.Option(20, "--top", help="Rows shown on screen (the most anomalous)."),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow tracking URI for --model URIs [default: $MLFLOW_TRACKING_URI, else sqlite mlflow.db]."),
    heatmaps: Optional[Path] = typer.Option(None, "--heatmaps", help="Write a PNG of each flagged image here: input | reconstruction | anomaly map over the input | colour bar, with its score."),
    device: Optional[str] = DeviceOpt,
) -> None:
    """Flag anomalies in image files: a table on screen and a CSV (path, scores, is_anomaly, error)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from anomalyvae.errors import DataError
    from anomalyvae.estimator import AnomalyVAE
    from anomalyvae.inference import score_paths
    from anomalyvae.mlflow_model import load_detector

    device = _device(device)
    det = load_detector(model, tracking_uri, device) if model is not None else AnomalyVAE.load(_model_dir(None), device)
    with Progress(SpinnerColumn(), TextColumn("scored {task.completed} files"), TimeElapsedColumn(),
                  console=err, transient=True) as bar:
        task = bar.add_task("score", total=None)
        summary = score_paths(det, paths, out, top_k=top, on_chunk=lambda n: bar.advance(task, n))
    if summary.n_files == 0:
        raise DataError(f"no image files found in {', '.join(map(str, paths))}; "
                        "looked for .png .jpg .jpeg .bmp .gif .tif .tiff .webp .pgm .ppm")
    table = Table(title=f"most anomalous of {summary.n_scored} scored (score '{det.score_}', threshold {det.threshold_:.3f})")
    table.add_column("path", overflow="fold")
    table.add_column(det.score_, justify="right")
    table.add_column("anomaly")
    for row in summary.top:
        table.add_row(Text(row["path"]), f"{row[det.score_]:.3f}", "[red]yes[/]" if row["is_anomaly"] else "no")
    console.print(table)
    for row in summary.errors:
        err.print(Text("skipped ", style="yellow") + Text(f"{row['path']}: {row['error']}"), highlight=False)
    for note in sorted(summary.notes):
        _warn(note)
    if heatmaps is not None:
        from anomalyvae.heatmaps import write_flagged

        maps = write_flagged(det, out, heatmaps)
        console.print(f"{len(maps)} heat maps -> {heatmaps}", highlight=False)
    console.print(f"{summary.n_files} files: {summary.n_anomalies} anomalies, {summary.n_scored - summary.n_anomalies} "
                  f"normal, {summary.n_errors} unreadable -> {out}", highlight=False)


def _end_active_run(e: BaseException) -> None:
    """A run left open by an error would be closed by MLflow's exit hook as FINISHED; record what happened."""
    mlflow = sys.modules.get("mlflow")
    if mlflow is None:
        return
    try:
        if mlflow.active_run() is not None:
            mlflow.end_run("KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
    except Exception:  # tracking trouble must not hide the error being reported
        pass


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM outside the training loop: the same clean exit as Ctrl-C (130)


def main() -> None:
    """Entry point: user errors become one line on stderr and a documented non-zero exit code."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:  # recent typer (0.29 here) returns Ctrl-C as 130
            raise KeyboardInterrupt if code == 130 else SystemExit(code)
    except SystemExit:
        raise
    except BaseException as e:
        import click

        _end_active_run(e)
        # recent typer (0.29 here) raises its own vendored copies of click's exceptions: accept both
        if isinstance(e, (click.exceptions.Exit, typer.Exit)):
            sys.exit(e.exit_code)
        if isinstance(e, (click.ClickException, getattr(typer, "TyperException", click.ClickException))):
            e.show()
            sys.exit(e.exit_code)
        if isinstance(e, (click.exceptions.Abort, typer.Abort, KeyboardInterrupt)):
            err.print("interrupted")
            sys.exit(130)
        from anomalyvae.errors import AnomalyVAEError

        if _debug:
            raise
        if isinstance(e, AnomalyVAEError):
            err.print(Text("error: ", style="red") + Text(str(e)), highlight=False)
            sys.exit(e.exit_code)
        err.print(Text("internal error: ", style="red") + Text(f"{type(e).__name__}: {e} (rerun with --debug for the traceback)"),
                  highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
