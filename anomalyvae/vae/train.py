"""The training loop: Adam on the negative ELBO, early stopping on held-out normal data, resumable, stoppable."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from . import device, distributed
from ..config import Config
from ..data.datasets import Split
from ..errors import AnomalyVAEError
from .model import LABEL_WEIGHT, elbo_terms
from ..modeldir import CHECKPOINT_FILE, read_tensors, write_tensors
from .runtime import autocast, resolve_precision, set_threads
from .runtime import batches

_VAL_SEED = 4321  # the same noise every epoch, so validation losses compare across epochs


@dataclass
class EpochStats:
    epoch: int
    loss: float
    recon: float
    kl: float
    val_loss: float
    val_recon: float
    val_kl: float
    seconds: float


@dataclass
class FitResult:
    model: torch.nn.Module  # the best model (lowest validation negative ELBO)
    history: list[EpochStats]
    best_epoch: int
    stopped_by: str | None = None  # what interrupted it: the KeyboardInterrupt's message, else 'Ctrl-C'
    diverged: str | None = None  # what went non-finite, when it did
    seconds: float = 0.0


@dataclass
class _State:
    """Everything --resume needs, saved after each completed epoch."""

    epoch: int = 0
    best_epoch: int = 0
    best_val: float = math.inf
    bad_epochs: int = 0
    seconds: float = 0.0
    history: list[dict] = field(default_factory=list)
    run_id: str | None = None


@torch.no_grad()
def evaluate_loss(model, images: torch.Tensor, batch_size: int = 1024) -> tuple[float, float, float]:
    """Mean negative ELBO, reconstruction and KL per input, with fixed noise."""
    model.eval()
    gen = torch.Generator().manual_seed(_VAL_SEED)  # on the CPU: the same noise on every device
    tot = torch.zeros(2, dtype=torch.float64, device=device.of(model))
    for sl in batches(len(images), batch_size):
        rec, kl = elbo_terms(model, model.prepare(images[sl]), gen)
        tot += torch.stack([rec.sum(), kl.sum()]).double()
    rec, kl = (tot / max(1, len(images))).tolist()
    return rec + kl, rec, kl


def _save_checkpoint(path: Path, cfg: Config, model, best, opt, gen: torch.Generator, st: _State) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"best.{k}": v for k, v in best.state_dict().items()})
    osd = opt.state_dict()
    for pid, s in osd["state"].items():
        tensors.update({f"opt.{pid}.{k}": torch.as_tensor(v) for k, v in s.items()})
    tensors["rng.shuffle"] = gen.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    dev = device.of(model)
    if dev.type == "cuda":  # the training noise is drawn there
        tensors["rng.cuda"] = torch.cuda.get_rng_state(dev)
    # the configuration it was started with, so --resume continues this training and no other (resume.py);
    # batch_size is the global batch, as the user gave it, not this process's share under torchrun
    config = {**cfg.to_dict(), "batch_size": cfg.batch_size * distributed.world_size()}
    write_tensors(path, tensors, {"kind": "checkpoint", "state": asdict(st), "param_groups": osd["param_groups"],
                                  "config": config})


def _load_checkpoint(path: Path, model, best, opt, gen: torch.Generator) -> _State:
    tensors, meta = read_tensors(path)
    pick = lambda prefix: {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    model.load_state_dict(pick("model."))
    best.load_state_dict(pick("best."))
    state: dict[int, dict] = {}
    for k, v in pick("opt.").items():
        pid, name = k.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    gen.set_state(tensors["rng.shuffle"])
    torch.set_rng_state(tensors["rng.torch"])
    dev = device.of(model)
    if dev.type == "cuda" and "rng.cuda" in tensors:
        torch.cuda.set_rng_state(tensors["rng.cuda"], dev)
    return _State(**meta["state"])


def fit(cfg: Config, model: torch.nn.Module, train: Split, val: Split, out: Path | None = None, resume: bool = False,
        on_step: Callable[[int, int, int, float], None] | None = None,
        on_epoch: Callable[[EpochStats], None] | None = None,
        run_id: str | None = None) -> FitResult:
    """Train the (freshly built) VAE on normal inputs; checkpoint to `out` after each epoch when given.

    `run_id`, the MLflow run, is stored in the checkpoint so that --resume continues the same run.
    """
    torch.manual_seed(cfg.seed)  # seeds every device's generator, CUDA's included
    set_threads(cfg.threads)
    dev = device.resolve(cfg.device)
    precision = resolve_precision(cfg.precision, "train")
    model = model.to(dev)
    step = distributed.wrap(model, dev)  # the model, or its gradient-averaging DDP wrapper under torchrun
    best = copy.deepcopy(model)
    # fused: one kernel for all parameters; the per-tensor ops of the default took 39% of a step (profiled)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=True)
    gen = torch.Generator().manual_seed(cfg.seed)
    ckpt = Path(out) / CHECKPOINT_FILE if out is not None else None
    st = _State(run_id=run_id)
    if resume:
        if ckpt is None or not ckpt.exists():
            raise AnomalyVAEError(f"--resume: no checkpoint at {ckpt}; start without --resume")
        st = _load_checkpoint(ckpt, model, best, opt, gen)
    history = [EpochStats(**h) for h in st.history]
    n = len(train)
    steps = math.ceil(n / cfg.batch_size)
    # the training images live where the model does (as uint8: 38 MB for MNIST), so batches need no copy
    flat, shape = train.images.flatten(1).to(dev), train.images.shape[1:]
    labelled = cfg.use_labels  # the head learns the normal classes with the VAE
    labels = train.labels.to(dev) if labelled else None
    stopped_by = diverged = None
    # No signal handlers here: a library leaves the process's signals alone. Ctrl-C is a KeyboardInterrupt
    # wherever it lands; the completed epochs (and the best model among them) are kept and returned, and the
    # caller re-raises after saving. The CLI raises it from on_step, so there it lands between two steps.
    try:
        while st.epoch < cfg.epochs and st.bad_epochs <= cfg.patience and not diverged:
            t0 = time.perf_counter()
            model.train()
            beta = (cfg.beta if cfg.beta is not None else 1.0) * (
                min(1.0, (st.epoch + 1) / cfg.kl_warmup_epochs) if cfg.kl_warmup_epochs else 1.0)
            order = torch.randperm(n, generator=gen).to(dev)
            sums = [0.0, 0.0]
            for i in range(steps):
                # index_select on rows: 13 us a batch here, where fancy indexing of (N, H, W) took 150 us
                rows = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
                x = model.prepare(flat.index_select(0, rows).view(-1, *shape))
                with autocast(precision, dev):
                    if labelled:
                        rec, kl, ce = elbo_terms(model, x, step=step, free_bits=cfg.free_bits,
                                                 labels=labels.index_select(0, rows))
                    else:
                        rec, kl = elbo_terms(model, x, step=step, free_bits=cfg.free_bits)
                rec, kl = rec.sum(), kl.sum()
                loss = (rec + beta * kl + (LABEL_WEIGHT * ce.sum() if labelled else 0.0)) / len(x)
                # one tensor -> Python transfer per step instead of a check, a stack and an accumulate
                loss_f, rec_f, kl_f = torch.stack([loss.detach(), rec.detach(), kl.detach()]).tolist()
                if not math.isfinite(loss_f):
                    diverged = f"loss became {loss_f} at epoch {st.epoch + 1}, step {i + 1}"
                    break
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sums[0] += rec_f
                sums[1] += kl_f
                if on_step is not None:
                    on_step(st.epoch + 1, i + 1, steps, loss_f)
            if diverged:
                break  # the epoch is incomplete: the checkpoint keeps the last complete one
            val_loss, val_rec, val_kl = evaluate_loss(model, val.images)
            if not math.isfinite(val_loss):
                diverged = f"validation loss became {val_loss} at epoch {st.epoch + 1}"
                break
            st.epoch += 1
            st.seconds += time.perf_counter() - t0
            rec_m, kl_m = sums[0] / n, sums[1] / n
            stats = EpochStats(st.epoch, rec_m + kl_m, rec_m, kl_m, val_loss, val_rec, val_kl,
                               time.perf_counter() - t0)
            history.append(stats)
            st.history = [asdict(h) for h in history]
            if val_loss < st.best_val:
                # a new copy swapped in with one assignment: an interrupt can never leave `best` half-copied
                best = copy.deepcopy(model)
                st.best_val, st.best_epoch, st.bad_epochs = val_loss, st.epoch, 0
            else:
                st.bad_epochs += 1
            if ckpt is not None:
                _save_checkpoint(ckpt, cfg, model, best, opt, gen, st)
            if on_epoch is not None:
                on_epoch(stats)
    except KeyboardInterrupt as e:
        stopped_by = str(e) or "Ctrl-C"
    return FitResult(best.eval(), history, st.best_epoch, stopped_by, diverged, st.seconds)


def checkpoint_run_id(out: Path) -> str | None:
    """The MLflow run a checkpoint belongs to, so --resume continues that run instead of starting another."""
    ckpt = Path(out) / CHECKPOINT_FILE
    if not ckpt.exists():
        return None
    _, meta = read_tensors(ckpt)
    return meta["state"].get("run_id")

