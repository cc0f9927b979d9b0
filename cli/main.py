"""anomalyvae's commands. Each one parses flags into the library's Config, calls the library and prints.

Heavy imports (torch, mlflow) happen inside the commands so that `anomalyvae --help` stays instant; the
names and defaults shown in --help come from the torch-free Config and score registry, never retyped.
"""

from __future__ import annotations

import atexit
import gc
import os
import signal
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text
from typer.core import TyperArgument, TyperCommand, TyperGroup

from anomalyvae import __version__
from anomalyvae.config import ARCHS, AUTO_IMAGE_CAP, DATASETS, DETECTORS, IDX_DATASETS, Config
from anomalyvae.detectors.registry import image_help as image_detectors_help
from anomalyvae.vae.resume import MAY_CHANGE
from anomalyvae.scores import NAMES as SCORE_NAMES

class _Command(TyperCommand):
    """Types in --help as a person reads them: typer 0.29 labels the help flag <bool> and a variadic argument
    with its annotation, <list[Path]>; a flag takes no value, and the argument's name (PATH) says what it takes."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for param in self.params:
            if isinstance(param, TyperArgument):
                param.display_type_rich = lambda ctx: None

    def get_help_option(self, ctx):
        return _no_type(super().get_help_option(ctx))


class _Group(TyperGroup):
    def get_help_option(self, ctx):
        return _no_type(super().get_help_option(ctx))


def _no_type(option):
    if option is not None:
        option.metavar = ""
    return option


app = typer.Typer(
    cls=_Group,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    help="Find anomalies by variational-autoencoder reconstruction. "
         "Typical use: train, then evaluate, then score; review runs with `mlflow ui`.",
)
console = Console(soft_wrap=True)  # long paths and messages stay on one line, for grep and logs
err = Console(stderr=True, soft_wrap=True)
_debug = False
_stopped: Optional[str] = None  # how an interrupted training ended: where its model is, how to resume


def _help(text: str, default: object = None) -> str:
    """Help text ending in its default. Escaped: rich reads "[default: 0-8]" as markup and deletes it."""
    return escape(text if default is None else f"{text} [default: {default}]")


def _flag(name: str, help: str) -> typer.Option:
    return typer.Option(False, name, help=escape(help), metavar="")  # a flag takes no value: no <bool>


ConfigOpt = typer.Option(None, "--config", "-c", metavar="FILE",
                         help=_help("YAML file of Config keys (see configs/); flags override it.", "none"))
TrackingOpt = typer.Option(None, "--tracking-uri", metavar="URI",
                           help=_help("MLflow tracking URI.", "$MLFLOW_TRACKING_URI, else sqlite:///mlflow.db"))
NoTrackOpt = _flag("--no-tracking", "Do not log to MLflow (train and evaluate track by default).")
ModelOpt = typer.Option(None, "--model", "-m", metavar="DIR|URI", help=_help(
    "Model directory, or an MLflow model URI (models:/NAME/1, runs:/RUN_ID/MODEL_NAME).", "the newest under models/"))
TableOpt = typer.Option(None, "--table", metavar="FILE", help=_help(
    "A table (.csv or .parquet) of feature columns instead of images: numbers as they are, text with at most 20 "
    "values one-hot encoded (anomalyvae/data/tables.py).", "none"))
SeriesOpt = typer.Option(None, "--series", metavar="FILE", help=_help(
    "A time series (.csv or .parquet): a time column and numeric channels, on a regular grid (missing timestamps "
    "are masked); a score per timestamp (anomalyvae/data/series.py, detectors/series.py).", "none"))
DeviceOpt = typer.Option(None, "--device", metavar="DEVICE", help=_help(
    "auto | cpu | cuda | cuda:N | mps; auto takes a CUDA GPU when there is one.", Config.device))
DebugOpt = _flag("--debug", "Show full tracebacks on errors.")


def _version(value: bool) -> None:
    if value:
        console.print(f"anomalyvae {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(debug: bool = DebugOpt,
          version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, metavar="",
                                       help="Print the version and exit.")) -> None:
    _set_debug(debug)


def _set_debug(debug: bool) -> None:
    """--debug works before and after the command's name."""
    global _debug
    _debug = _debug or debug


def _warn(message: str) -> None:
    err.print(Text("warning: ", style="yellow") + Text(message), highlight=False)


def _tracker(experiment: str, uri: Optional[str], disabled: bool, register: Optional[str] = None):
    from anomalyvae.tracking.runs import Tracker

    return Tracker(experiment, uri or os.environ.get("MLFLOW_TRACKING_URI"), enabled=not disabled,
                   warn=_warn, register=register)


def _print_run(tracker) -> None:
    """Where to see the run: the server's page, or `mlflow ui`'s default address for a local store."""
    if not (tracker.run_id and tracker.enabled):
        return
    uri = tracker.uri or ""
    how = "" if uri.startswith(("http://", "https://")) else f" (after `mlflow ui --backend-store-uri {uri}`)"
    console.print(f"MLflow run {tracker.run_id}: {tracker.ui_url(tracker.run_id)}{how}", highlight=False, soft_wrap=True)
    console.print(f"All runs of experiment {tracker.experiment}, with their AUROC: {tracker.ui_url()}", highlight=False,
                  soft_wrap=True)


def _check_device(device: Optional[str]) -> None:
    """--device's spelling, first of all flags (no torch needed); whether the machine has it is _device's."""
    from anomalyvae.vae.device import check

    check(device or "auto")


def _device(device: Optional[str]) -> str:
    """Check --device before anything else is looked up, so its error is the one shown."""
    from anomalyvae.vae.device import resolve

    resolve(device or "auto")
    return device or "auto"


def _load(model: Optional[str], tracking_uri: Optional[str], device: str):
    """The model asked for, else the newest under models/; says which, so no command uses one silently."""
    from anomalyvae.modeldir import describe, latest_model

    source = model if model is not None else latest_model()
    if os.path.exists(source):  # a model directory loads without importing MLflow (1.5 s of `score one.png`)
        from anomalyvae.estimator import AnomalyVAE

        det = AnomalyVAE.load(source, device)
    else:
        from anomalyvae.tracking.mlflow_model import load_detector

        det = load_detector(source, tracking_uri, device)
    console.print(describe(det, source), highlight=False)
    return det, source


class _Stopper:
    """The CLI's Ctrl-C and SIGTERM while it trains (the library installs no handlers).

    Before the first step: abort at once (nothing to keep). During training: say at once what happens, and
    stop after the current batch (on_step raises KeyboardInterrupt there; the library then saves the best
    model so far). After training: finish saving. A second signal always aborts at once.
    """

    def __init__(self):
        self.received: Optional[str] = None
        self.phase = "loading"  # loading -> training -> finishing

    def handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.received or self.phase == "loading":
            raise KeyboardInterrupt
        self.received = name
        what = ("stopping after this batch; then the best model so far is calibrated, saved and logged"
                if self.phase == "training" else "finishing: the model is being saved")
        # plain bytes to stderr, no rich: the signal may land while the main thread is inside rich (a lazy
        # import of its emoji table once failed as "partially initialized module" when this printed with it)
        if not err.quiet:
            os.write(2, f"{name}: {what} (Ctrl-C again to abort)\n".encode())

    def on_step(self) -> None:
        self.phase = "training"
        if self.received:
            raise KeyboardInterrupt(self.received)

    def __enter__(self):
        self._old = {sig: signal.signal(sig, self.handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


@app.command(cls=_Command)
def train(
    normal: Optional[str] = typer.Option(None, "--normal", "-n", metavar="CLASSES", help=_help(
        "Normal classes, e.g. 0-8, 0,2,4, 3, 1-3,7, or all (every class: evaluate with --anomalies); every other "
        "class is an anomaly.", Config.normal)),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", metavar="NAME", help=_help(
        " | ".join(DATASETS) + "; mvtec trains on DATA_DIR/train/good.", Config.dataset)),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", metavar="DIR", help=_help(
        "Folder with the dataset's IDX files, or the MVTec-AD root.", "$ANOMALYVAE_DATA_DIR, else ./data")),
    train_dir: Optional[str] = typer.Option(None, "--train-dir", metavar="DIR", help=_help(
        "With --dataset folder: a folder of normal images.", "none")),
    channels: Optional[int] = typer.Option(None, "--channels", metavar="1|3", help=_help(
        "Image channels: 1 (grey) or 3 (RGB).", "3 if any training image is colour, else 1")),
    image_size: Optional[int] = typer.Option(None, "--image-size", metavar="N", help=_help(
        "Images are resized to NxN (aspect ratio not kept, as torchvision's Resize((N, N))).",
        f"28 for mnist / fashion-mnist; folders: their images' median shorter side, a multiple of 8, at most "
        f"{AUTO_IMAGE_CAP}")),
    detector: Optional[str] = typer.Option(None, "--detector", metavar="KIND", help=_help(
        " | ".join(DETECTORS) + ": " + image_detectors_help() + "; auto is local for mvtec / folder, else global.",
        Config.detector)),
    arch: Optional[str] = typer.Option(None, "--arch", metavar="ARCH", help=_help(
        "Architecture: " + " | ".join(ARCHS) + "; auto is conv for images of side >= 16, else mlp.", Config.arch)),
    epochs: Optional[int] = typer.Option(None, "--epochs", "-e", metavar="N", help=_help(
        "Maximum epochs (early stopping may end sooner).", "auto, about 2,300 optimiser steps, 6 to 30 epochs")),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", metavar="N", help=_help(
        "Training images per optimiser step.", Config.batch_size)),
    lr: Optional[float] = typer.Option(None, "--lr", metavar="X", help=_help("Adam learning rate.", Config.lr)),
    beta: Optional[float] = typer.Option(None, "--beta", metavar="X", help=_help(
        "Weight of the KL term (beta-VAE).", "1")),
    free_bits: Optional[float] = typer.Option(None, "--free-bits", metavar="X", help=_help(
        "Nats per latent dimension below which KL is not penalised (against posterior collapse).",
        Config.free_bits)),
    use_labels: Optional[bool] = typer.Option(None, "--use-labels/--no-labels", metavar="", help=_help(
        "Learn the normal classes' labels with a classification head; adds the score 'class' to the default sum, "
        "and the scored table says which normal class each input looks like. --no-labels: the unsupervised "
        "detector.", "labels where the normal data has two or more classes (mnist, fashion-mnist)")),
    seed: Optional[int] = typer.Option(None, "--seed", metavar="N", help=_help(
        "Seeds the hold-out split, the weights and the batch order.", Config.seed)),
    fpr: Optional[float] = typer.Option(None, "--fpr", metavar="X", help=_help(
        "Target false-positive rate of the threshold on held-out normal data.", Config.fpr)),
    val_fraction: Optional[float] = typer.Option(None, "--val-fraction", metavar="X", help=_help(
        "Fraction of the normal training data held out for early stopping and the threshold.",
        Config.val_fraction)),
    score: Optional[str] = typer.Option(None, "--score", metavar="NAME", help=_help(
        "Score the threshold applies to: " + " | ".join(SCORE_NAMES) + ".", Config.score)),
    limit: Optional[int] = typer.Option(None, "--limit", metavar="N", help=_help(
        "Use at most this many normal training images (quick runs).", "all")),
    out: Optional[Path] = typer.Option(None, "--out", "-o", metavar="DIR", help=_help(
        "Model directory to write.", "a new folder in models/ named for the dataset, the normal classes, the model "
        "and the time")),
    resume: bool = _flag("--resume", "Continue the interrupted training in --out from its last complete epoch "
                         "with the settings it was started with; given again, only these may differ: "
                         + ", ".join(MAY_CHANGE) + "."),
    register: Optional[str] = typer.Option(None, "--register", metavar="NAME", help=_help(
        "Also register the MLflow model under this name in the Model Registry.", "none")),
    table: Optional[Path] = TableOpt,
    exclude_columns: Optional[str] = typer.Option(None, "--exclude-columns", metavar="A,B", help=_help(
        "With --table or --series: columns to leave out (ids, free text, the label).", "none")),
    series: Optional[Path] = SeriesOpt,
    time_column: Optional[str] = typer.Option(None, "--time-column", metavar="NAME", help=_help(
        "With --series: the time column.", "a column named timestamp or time, else the first of dates")),
    window: Optional[int] = typer.Option(None, "--window", metavar="N", help=_help(
        "With --series: points per sliding window.", Config.window)),
    causal: bool = _flag("--causal", "With --series: score each point from the window that ends at it (past data "
                         "only, for streaming)."),
    device: Optional[str] = DeviceOpt,
    config: Optional[Path] = ConfigOpt,
    tracking_uri: Optional[str] = TrackingOpt,
    no_tracking: bool = NoTrackOpt,
    debug: bool = DebugOpt,
) -> None:
    """Learn what "normal" looks like from normal data only; writes one model directory."""
    from anomalyvae.config import make_config
    from anomalyvae.errors import AnomalyVAEError, TrainingInterrupted
    from anomalyvae.data.preflight import check_train_flags
    from anomalyvae.vae.resume import resume_config

    _set_debug(debug)
    if os.environ.get("RANK", "0") != "0":  # torchrun: only rank 0 talks
        console.quiet = err.quiet = True
    check_train_flags(dataset, normal, train_dir)  # flags and paths before torch is imported
    if series is not None or time_column is not None or window is not None or causal:
        return _train_series(series, table, time_column, exclude_columns, dict(
            arch=arch, epochs=epochs, batch_size=batch_size, lr=lr, beta=beta, free_bits=free_bits, seed=seed,
            fpr=fpr, val_fraction=val_fraction, score=score, limit=limit, device=device, tracking_uri=tracking_uri,
            window=window, causal=causal or None), config, out, register, no_tracking, image_flags=dict(
                dataset=dataset, normal=normal, data_dir=data_dir, train_dir=train_dir, channels=channels,
                image_size=image_size, detector=detector, resume=resume or None, use_labels=use_labels or None))
    if table is not None or exclude_columns is not None:
        return _train_table(table, exclude_columns, dict(arch=arch, epochs=epochs, batch_size=batch_size, lr=lr,
                            beta=beta, free_bits=free_bits, seed=seed, fpr=fpr, val_fraction=val_fraction,
                            score=score, limit=limit, device=device, tracking_uri=tracking_uri),
                            config, out, register, no_tracking, image_flags=dict(
                                dataset=dataset, normal=normal, data_dir=data_dir, train_dir=train_dir,
                                channels=channels, image_size=image_size, detector=detector, resume=resume or None))
    given = dict(dataset=dataset, data_dir=data_dir, train_dir=train_dir, normal=normal, arch=arch,
                 channels=channels, image_size=image_size, detector=detector, epochs=epochs, batch_size=batch_size, lr=lr, beta=beta, free_bits=free_bits, seed=seed,
                 use_labels=use_labels, fpr=fpr, val_fraction=val_fraction, score=score, limit=limit, device=device, tracking_uri=tracking_uri)
    cfg = resume_config(out, config, **given) if resume else make_config(config, **given)
    check_train_flags(cfg.dataset, normal, None)  # the dataset may come from --config
    if register and no_tracking:
        raise AnomalyVAEError("--register needs MLflow tracking; drop --no-tracking")
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from anomalyvae.pipeline.images import default_out, train_detector

    out = out if out is not None else default_out(cfg)  # named here: an abort must say where the checkpoint is
    tracker = _tracker(cfg.experiment, cfg.tracking_uri, no_tracking, register)
    columns = (TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]:.2f}  val {task.fields[val]}"), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=False, disable=not err.is_terminal) as bar, _Stopper() as stop:
        task = bar.add_task("train", total=None, epoch=0, loss=float("nan"), val="-")

        def on_step(epoch: int, step: int, steps: int, loss: float) -> None:
            if step == 1 or step % 20 == 0 or step == steps:
                bar.update(task, completed=step, total=steps, epoch=epoch, loss=loss)
            stop.on_step()

        def on_epoch(s) -> None:
            bar.update(task, val=f"{s.val_loss:.2f}")
            bar.console.print(f"epoch {s.epoch:3d}  loss {s.loss:8.2f}  recon {s.recon:8.2f}  kl {s.kl:6.2f}  "
                              f"val {s.val_loss:8.2f}  ({s.seconds:.1f}s)", highlight=False)

        def on_phase(line: str) -> None:
            if stop.phase == "training":  # a phase after the steps: calibrating, saving, logging
                stop.phase = "finishing"
            bar.console.print(line, highlight=False)

        try:
            det, model_dir = train_detector(cfg, out, resume, tracker, on_step=on_step, on_epoch=on_epoch,
                                            log=_warn, on_phase=on_phase)
        except TrainingInterrupted as e:
            global _stopped  # typer turns any KeyboardInterrupt into exit code 130: keep what main() reports
            _stopped = str(e)
            raise
        except KeyboardInterrupt:  # a second Ctrl-C: no saving, but the last complete epoch's checkpoint is there
            _stopped = _aborted(out)
            raise
    if det is None:  # a torchrun worker other than rank 0: rank 0 reports
        return
    info = det.info_
    what = f"the {cfg.detector} detector" if cfg.detector != "global" else cfg.arch
    console.print(f"trained {what} on {info['n_train']} images in {info['train_seconds']:.1f}s "
                  f"(best epoch {info['best_epoch']}/{info['epochs_run']}); threshold {det.threshold_:.3f} on "
                  f"'{det.score_}' gives FPR {info['val_fpr']:.3f} on {info['n_val']} held-out normal images",
                  highlight=False)
    _print_run(tracker)
    if tracker.model_uri:
        also = f" = models:/{register}/{tracker.model_version}" if tracker.model_version else ""
        console.print(f"MLflow model: runs:/{tracker.run_id}/{tracker.model_name}{also}", highlight=False)
    console.print(f"model: {model_dir}", highlight=False)


def _train_table(table, exclude_columns, given, config, out, register, no_tracking, image_flags) -> None:
    """train --table: the library's tables.train_table, and one line of what it made."""
    from anomalyvae.config import make_config
    from anomalyvae.errors import AnomalyVAEError

    if table is None:
        raise AnomalyVAEError("--exclude-columns needs --table FILE")
    _check_file_mode("--table", table, image_flags, register, no_tracking)
    from anomalyvae.pipeline.tables import train_table

    cfg = make_config(config, input_kind="features", **given)
    tracker = _tracker(cfg.experiment, cfg.tracking_uri, no_tracking, register)
    exclude = [c.strip() for c in (exclude_columns or "").split(",") if c.strip()]
    det, model_dir = train_table(cfg, table, exclude, out, tracker, say=lambda line: console.print(line, highlight=False),
                                 warn=_warn)
    info = det.info_
    console.print(f"trained on {info['n_train']} rows in {info['train_seconds']:.1f}s; threshold "
                  f"{det.threshold_:.3f} on '{det.score_}' gives FPR {info['val_fpr']:.3f} on {info['n_val']} "
                  "held-out normal rows", highlight=False)
    _print_run(tracker)
    if tracker.model_uri:
        console.print(f"MLflow model: runs:/{tracker.run_id}/{tracker.model_name}", highlight=False)
    console.print(f"model: {model_dir}", highlight=False)


def _check_file_mode(flag: str, path, image_flags: dict, register: bool, no_tracking: bool) -> None:
    """What train --table and --series refuse before reading anything: image flags, a missing file, --register
    without tracking."""
    from anomalyvae.data.preflight import check_paths
    from anomalyvae.errors import AnomalyVAEError

    image_only = [f"--{k.replace('_', '-')}" for k, v in image_flags.items() if v is not None]
    if image_only:
        raise AnomalyVAEError(f"{', '.join(image_only)} is for images; drop it with {flag}")
    check_paths([path])
    if register and no_tracking:
        raise AnomalyVAEError("--register needs MLflow tracking; drop --no-tracking")


def _train_series(series, table, time_column, exclude_columns, given, config, out, register, no_tracking,
                  image_flags) -> None:
    """train --series: the library's series.train_series, and one line of what it made."""
    from anomalyvae.config import make_config
    from anomalyvae.errors import AnomalyVAEError

    if series is None:
        raise AnomalyVAEError("--time-column, --window and --causal need --series FILE")
    if table is not None:
        raise AnomalyVAEError("--table and --series are two kinds of input; give one")
    _check_file_mode("--series", series, image_flags, register, no_tracking)
    from anomalyvae.pipeline.series import train_series

    cfg = make_config(config, input_kind="series", **given)
    tracker = _tracker(cfg.experiment, cfg.tracking_uri, no_tracking, register)
    exclude = [c.strip() for c in (exclude_columns or "").split(",") if c.strip()]
    det, model_dir = train_series(cfg, series, time_column, exclude, out, tracker,
                                  say=lambda line: console.print(line, highlight=False), warn=_warn)
    info = det.info_
    console.print(f"trained on {info['n_train']} points in {info['train_seconds']:.1f}s; threshold "
                  f"{det.threshold_:.3f} on '{det.score_}' gives FPR {info['val_fpr']:.3f} on the last "
                  f"{info['n_val'] - cfg.window + 1} points (held out){' (causal)' if cfg.causal else ''}",
                  highlight=False)
    _print_run(tracker)
    console.print(f"model: {model_dir}", highlight=False)


@app.command(cls=_Command)
def sample(
    model: Optional[str] = ModelOpt,
    out: Path = typer.Option(Path("samples.png"), "--out", "-o", metavar="FILE", help="The grid, a PNG."),
    n: int = typer.Option(64, "--n", metavar="N", help="How many samples (8 a row)."),
    seed: int = typer.Option(0, "--seed", metavar="N", help="Seeds the codes drawn from the prior."),
    label: Optional[int] = typer.Option(None, "--class", metavar="C", help=(
        "One normal class (models trained with the normal classes' labels): the prior draws the classification head is "
        "surest show class C.")),
    tracking_uri: Optional[str] = TrackingOpt,
    device: Optional[str] = DeviceOpt,
    debug: bool = DebugOpt,
) -> None:
    """What the model thinks is normal: a grid decoded from codes drawn from the prior N(0, I)."""
    from anomalyvae.data.preflight import check_model

    _set_debug(debug)
    _check_device(device)
    check_model(model)
    if n < 1:
        from anomalyvae.errors import InvalidInput

        raise InvalidInput(f"--n is {n}; ask for at least one sample")
    from anomalyvae.vae.sampling import sample_grid

    det, _ = _load(model, tracking_uri, _device(device))
    what = "patches" if det.config_.detector == "local" else "images"
    of = f" of class {label}" if label is not None else ""
    console.print(f"{n} {what}{of} from the prior -> {sample_grid(det, out, n, seed, label)}", highlight=False)


def _aborted(out: Path) -> Optional[str]:
    """What an aborted training left: the checkpoint of its last complete epoch and how to resume from it."""
    from anomalyvae.modeldir import CHECKPOINT_FILE

    if not (Path(out) / CHECKPOINT_FILE).is_file():
        return f"no epoch had completed, so {out} holds no checkpoint; start again with `anomalyvae train`"
    return (f"the last checkpoint was kept in {Path(out) / CHECKPOINT_FILE}; resume with "
            f"`anomalyvae train --resume --out {out}`")


@app.command(cls=_Command)
def evaluate(
    model: Optional[str] = ModelOpt,
    data_dir: Optional[str] = typer.Option(None, "--data-dir", metavar="DIR", help=_help(
        "Where the dataset's test files are (IDX files, or the MVTec-AD root).", "as trained")),
    normal_dir: Optional[Path] = typer.Option(None, "--normal-dir", metavar="DIR", help=_help(
        "Test on a folder of normal images (with --anomaly-dir or --anomalies).", "the dataset's test split")),
    anomaly_dir: Optional[Path] = typer.Option(None, "--anomaly-dir", metavar="DIR", help=_help(
        "Test on a folder of anomalous images (with --normal-dir).", "the dataset's test split")),
    mask_dir: Optional[Path] = typer.Option(None, "--mask-dir", metavar="DIR", help=_help(
        "Ground-truth masks of the --anomaly-dir images, same names (pixel AUROC and AUPRO).", "none")),
    anomalies: Optional[str] = typer.Option(None, "--anomalies", metavar="NAME|DIR", help=_help(
        " | ".join(IDX_DATASETS) + " | DIR: these images are the anomalies, the model's own normal test images "
        "the normals.", "the classes not trained as normal")),
    out: Optional[Path] = typer.Option(None, "--out", "-o", metavar="DIR", help=_help(
        "Folder for the report, plots and metrics.", "MODEL/evaluation, or ./evaluation for a URI")),
    metrics_out: Optional[Path] = typer.Option(None, "--metrics-out", metavar="FILE", help=_help(
        "Also write the metrics JSON here.", "none")),
    table: Optional[Path] = TableOpt,
    label_column: Optional[str] = typer.Option(None, "--label-column", metavar="NAME", help=_help(
        "With --table or --series: the column that marks anomalies (1/0, true/false, yes/no, anomaly/normal).",
        "none")),
    series: Optional[Path] = SeriesOpt,
    labels: Optional[Path] = typer.Option(None, "--labels", metavar="FILE", help=_help(
        "With --series: NAB's labelled windows (labels/combined_windows.json), instead of --label-column.",
        "none")),
    device: Optional[str] = DeviceOpt,
    tracking_uri: Optional[str] = TrackingOpt,
    no_tracking: bool = NoTrackOpt,
    debug: bool = DebugOpt,
) -> None:
    """AUROC / AUPRC / F1 on the test split (every class not trained as normal is the anomaly), with a report;
    pixel AUROC / AUPRO where there are masks (MVTec-AD ground_truth, --mask-dir)."""
    from anomalyvae.data.preflight import check_model, check_paths, is_model_uri

    _set_debug(debug)
    _check_device(device)
    check_model(model)  # paths before torch is imported
    check_paths(p for p in (normal_dir, anomaly_dir, mask_dir, table, series, labels) if p is not None)
    if series is not None:
        return _evaluate_series(model, series, label_column, labels, out, metrics_out, device, tracking_uri,
                                no_tracking)
    if labels is not None:
        from anomalyvae.errors import AnomalyVAEError

        raise AnomalyVAEError("--labels is NAB's label file for a series: evaluate --series FILE --labels FILE")
    if (table is None) != (label_column is None):
        from anomalyvae.errors import AnomalyVAEError

        raise AnomalyVAEError("--table and --label-column go together: evaluate --table test.csv --label-column NAME")
    import json

    from rich.table import Table

    from anomalyvae.tracking.lineage import test_origin
    from anomalyvae.modeldir import atomic_write_bytes
    from anomalyvae.pipeline.images import evaluate_detector
    from anomalyvae.data.testsets import build

    device = _device(device)
    det, source = _load(model, tracking_uri, device)
    model_dir = None if is_model_uri(source) else Path(source)
    tracker = _tracker(det.config_.experiment, tracking_uri or det.config_.tracking_uri, no_tracking)
    if table is not None:
        from anomalyvae.pipeline.tables import evaluate_table

        res = evaluate_table(det, table, label_column, tracker, model_dir)
    else:
        notes: set[str] = set()
        test = build(det, data_dir, normal_dir, anomaly_dir, mask_dir, anomalies, notes)
        for note in sorted(notes):
            _warn(note)
        if test.skipped:
            _warn(f"skipped {len(test.skipped)} unreadable test file(s), e.g. {test.skipped[0].path}: "
                  f"{test.skipped[0].error}")
        origin = test_origin(det.config_, list(det.info_.get("normal_classes", [])), normal_dir, anomaly_dir,
                             anomalies, data_dir)
        out = out or (model_dir / "evaluation" if model_dir else Path("evaluation"))
        res = evaluate_detector(det, out, test=test, data_dir=data_dir, tracker=tracker, model_dir=model_dir,
                                origin=origin)
    if metrics_out is not None:
        atomic_write_bytes(metrics_out, json.dumps(res, indent=2).encode())
    what = "rows" if table is not None else "images"
    grid = Table(title=f"{source}  ({res['n_test']} test {what}, {res['n_anomalies']} anomalies)")
    for col in ("score", "AUROC", "AUPRC"):
        grid.add_column(col, justify="right" if col != "score" else "left")
    for name, r in res["scores"].items():
        mark = " (default)" if name == res["score"] else ""
        grid.add_row(name + mark, f"{r['auroc']:.4f}", f"{r['auprc']:.4f}")
    console.print(grid)
    console.print(f"at threshold {res['threshold']:.3f}: precision {res['precision']:.3f}  recall {res['recall']:.3f}  "
                  f"F1 {res['f1']:.3f}  FPR {res['fpr']:.3f}  (tp {res['tp']} fp {res['fp']} tn {res['tn']} fn {res['fn']})",
                  highlight=False)
    per = [r for r in res["per_class"] if "auroc" in r]
    if per:
        console.print("AUROC per anomaly class: " + "  ".join(f"{r['class']}={r['auroc']:.3f}" for r in per),
                      highlight=False)
    pixel = [r for r in res["per_class"] if "pixel_auroc" in r]
    if pixel:
        console.print("pixel AUROC per anomaly class: " + "  ".join(f"{r['class']}={r['pixel_auroc']:.3f}"
                                                                   for r in pixel), highlight=False)
        console.print("pixel AUPRO per anomaly class: " + "  ".join(f"{r['class']}={r['pixel_aupro']:.3f}"
                                                                   for r in pixel), highlight=False)
    if "pixel_auroc" in res:
        console.print(f"pixel AUROC {res['pixel_auroc']:.4f}  pixel AUPRO {res['pixel_aupro']:.4f}", highlight=False)
    console.print(f"AUROC {res['auroc']:.4f}", highlight=False)
    if table is None:
        console.print(f"report: {out / 'report.html'}", highlight=False)
    _print_run(tracker)


def _evaluate_series(model, series, label_column, labels, out, metrics_out, device, tracking_uri,
                     no_tracking) -> None:
    """evaluate --series: AUROC, AUPRC, point-adjusted F1, and the plot of the series with its score."""
    import json

    from anomalyvae.data.preflight import is_model_uri
    from anomalyvae.modeldir import atomic_write_bytes
    from anomalyvae.pipeline.series import evaluate_series

    det, source = _load(model, tracking_uri, _device(device))
    model_dir = None if is_model_uri(source) else Path(source)
    tracker = _tracker(det.config_.experiment, tracking_uri or det.config_.tracking_uri, no_tracking)
    res = evaluate_series(det, series, label_column, labels, out, tracker, model_dir)
    if metrics_out is not None:
        atomic_write_bytes(metrics_out, json.dumps(res, indent=2).encode())
    for name, r in res["scores"].items():
        mark = " (default)" if name == res["score"] else ""
        console.print(f"{name}{mark}: AUROC {r['auroc']:.4f}  AUPRC {r['auprc']:.4f}", highlight=False)
    console.print(f"{res['n_test']} points, {res['n_anomalies']} labelled anomalous ({res['labels']}), "
                  f"{res['n_unscored']} missing (unscored); at threshold {res['threshold']:.3f}: point-adjusted "
                  f"F1 {res['pa_f1']:.3f} (precision {res['pa_precision']:.3f}, recall {res['pa_recall']:.3f}), "
                  f"raw F1 {res['f1']:.3f}", highlight=False)
    console.print(f"AUROC {res['auroc']:.4f}", highlight=False)
    console.print(f"plot: {res['figure']}", highlight=False)
    _print_run(tracker)


@app.command(cls=_Command)
def score(
    paths: list[Path] = typer.Argument(..., metavar="PATH", help=escape(
        "Image files and/or folders (searched recursively), or one table (.csv, .parquet) for a model trained "
        "with --table or --series.")),
    model: Optional[str] = ModelOpt,
    out: Path = typer.Option(Path("scores.csv"), "--out", "-o", metavar="FILE", help="CSV with one row per file."),
    top: int = typer.Option(20, "--top", metavar="N", help="Rows shown on screen (the most anomalous)."),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", metavar="URI", help=_help(
        "MLflow tracking URI for --model URIs.", "$MLFLOW_TRACKING_URI, else sqlite:///mlflow.db")),
    heatmaps: Optional[Path] = typer.Option(None, "--heatmaps", metavar="DIR", help=_help(
        "Write a PNG of each flagged image here: input | reconstruction | anomaly map over the input | colour "
        "bar, with its score.", "none")),
    every: bool = _flag("--all", "With --heatmaps: a picture of every scored image, flagged or not."),
    device: Optional[str] = DeviceOpt,
    debug: bool = DebugOpt,
) -> None:
    """Flag anomalies in image files: a table on screen and a CSV (path, scores, is_anomaly, error); or in the rows
    of a table: a CSV (row, score, is_anomaly, top_features: the features with the largest shares of the score);
    or in a series, with a model trained with --series: a CSV (time, scores, is_anomaly, channel)."""
    from anomalyvae.data.preflight import check_model, check_paths

    _set_debug(debug)
    _check_device(device)
    check_paths(paths)  # a typo is reported before torch is imported and a model is loaded
    check_model(model)
    if every and heatmaps is None:
        from anomalyvae.errors import InvalidInput

        raise InvalidInput("--all says which images get heat maps; add --heatmaps DIR to write them")
    if any(Path(p).suffix.lower() in (".csv", ".parquet", ".pq") for p in paths):
        return _score_table(paths, model, out, top, tracking_uri, device)
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from anomalyvae.errors import DataError
    from anomalyvae.pipeline.files import score_paths

    device = _device(device)
    if model is None:  # the newest model: only for files of the kind it was trained on
        from anomalyvae.data.matching import refuse_if_unlike
        from anomalyvae.modeldir import latest_model

        model = str(latest_model())
        refuse_if_unlike(model, paths)
    det, _ = _load(model, tracking_uri, device)
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
    labelled = det.config_.use_labels  # --use-labels: the normal class each file looks like
    if labelled:
        table.add_column("looks like", justify="right")
    for row in summary.top:
        table.add_row(Text(row["path"]), f"{row[det.score_]:.3f}", "[red]yes[/]" if row["is_anomaly"] else "no",
                      *([str(row["looks_like"])] if labelled else []))
    console.print(table)
    for row in summary.errors:
        err.print(Text("skipped ", style="yellow") + Text(f"{row['path']}: {row['error']}"), highlight=False)
    for note in sorted(summary.notes):
        _warn(note)
    if heatmaps is not None:
        from anomalyvae.evaluation.heatmaps import write_flagged

        maps = write_flagged(det, out, heatmaps, roots=paths, every=every)
        console.print(f"{len(maps)} heat maps -> {heatmaps}", highlight=False)
    console.print(f"{summary.n_files} files: {summary.n_anomalies} anomalies, {summary.n_scored - summary.n_anomalies} "
                  f"normal, {summary.n_errors} unreadable -> {out}", highlight=False)


def _score_table(paths, model, out, top, tracking_uri, device) -> None:
    """score TABLE.csv: every row's score, flag and top features (tables.score_table) to a CSV and the screen."""
    from rich.table import Table

    from anomalyvae.errors import AnomalyVAEError
    from anomalyvae.data.tables import read_table
    from anomalyvae.pipeline.tables import score_table

    if len(paths) != 1:
        raise AnomalyVAEError("score takes one table at a time (or image files and folders, without a table)")
    det, _ = _load(model, tracking_uri, _device(device))
    if getattr(det, "series_", None) is not None:
        return _score_series(det, paths[0], out, top)
    frame = read_table(paths[0])
    result = score_table(det, frame)
    result.insert(0, "row", range(1, len(result) + 1))
    result.to_csv(out, index=False)
    shown = result.sort_values(det.score_, ascending=False, kind="stable").head(top)
    grid = Table(title=f"most anomalous of {len(result)} rows (score '{det.score_}', threshold {det.threshold_:.3f})")
    for col in ("row", det.score_, "anomaly", "top features"):
        grid.add_column(col, justify="right" if col in ("row", det.score_) else "left")
    for _, r in shown.iterrows():
        grid.add_row(str(r["row"]), f"{r[det.score_]:.3f}", "[red]yes[/]" if r["is_anomaly"] else "no",
                     Text(r["top_features"]))
    console.print(grid)
    n = int(result["is_anomaly"].sum())
    console.print(f"{len(result)} rows: {n} anomalies, {len(result) - n} normal -> {out}", highlight=False)


def _score_series(det, path, out, top) -> None:
    """score SERIES.csv with a series model: one row per timestamp (time, scores, is_anomaly[, channel])."""
    from rich.table import Table

    from anomalyvae.pipeline.series import read_for, score_series

    s, _ = read_for(det, path)
    result = score_series(det, s)
    result.to_csv(out, index=False)
    shown = result.sort_values(det.score_, ascending=False, kind="stable").head(top)
    grid = Table(title=f"most anomalous of {len(result)} timestamps (score '{det.score_}', threshold "
                       f"{det.threshold_:.3f})")
    extra = ["channel"] if "channel" in result.columns else []
    for col in ("time", det.score_, "anomaly", *extra):
        grid.add_column(col, justify="right" if col == det.score_ else "left")
    for _, r in shown.iterrows():
        grid.add_row(str(r["time"]), f"{r[det.score_]:.3f}", "[red]yes[/]" if r["is_anomaly"] else "no",
                     *[str(r[c]) for c in extra])
    console.print(grid)
    n = int(result["is_anomaly"].sum())
    console.print(f"{len(result)} timestamps: {n} anomalies, {len(result) - n} normal, "
                  f"{int(result[det.score_].isna().sum())} missing (unscored) -> {out}", highlight=False)


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
    global _debug, _stopped
    _debug, _stopped = False, None  # main() may run more than once in a process (tests)
    signal.signal(signal.SIGTERM, _terminate)
    # at exit Python garbage-collects every object torch, scipy and pandas made: 0.45 s of `score one.png`;
    # frozen objects are skipped (registered first, so it runs after every other exit handler)
    atexit.register(gc.freeze)
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
            err.print(f"interrupted: {_stopped}" if _stopped else "interrupted", highlight=False)
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
