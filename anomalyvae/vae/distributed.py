"""Data-parallel training with PyTorch's own engine: `torchrun --nproc-per-node N -m anomalyvae train ...`.

torchrun starts N copies of the command and sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR; each process
trains on its own 1/N of the normal images and DistributedDataParallel averages the gradients: over gloo on
the CPU, over nccl when the processes run on CUDA GPUs (one GPU each, numbered by LOCAL_RANK; device.py).
`batch_size` stays the global batch (each process takes batch_size / N), so a run with N processes takes
the same optimisation steps as one process and lands near the same model. Validation, early stopping and
the best-model choice run on the full held-out set in every process (identical weights give identical
decisions); only rank 0 writes checkpoints, calibrates, saves and logs to MLflow.
Without torchrun every function here is a no-op.
"""

from __future__ import annotations

import dataclasses
import os

import torch
from torch import nn

from ..config import Config
from ..data.datasets import Split
from ..errors import AnomalyVAEError


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def enabled() -> bool:
    return world_size() > 1


def backend(dev: torch.device) -> str:
    """nccl between CUDA GPUs, gloo between CPU processes: PyTorch's recommended pairing."""
    return "nccl" if dev.type == "cuda" else "gloo"


def init(dev: torch.device) -> None:
    """Join the process group torchrun set up (idempotent)."""
    import torch.distributed as dist

    if enabled() and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)  # nccl binds each rank's communicator to its current GPU
        dist.init_process_group(backend(dev))


def finish() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def local_config(cfg: Config) -> Config:
    """Each process's share of the global batch."""
    n = world_size()
    if n == 1:
        return cfg
    if cfg.batch_size < n:
        raise AnomalyVAEError(f"--batch-size {cfg.batch_size} is smaller than the {n} processes; raise it")
    return dataclasses.replace(cfg, batch_size=cfg.batch_size // n)


def shard(split: Split) -> Split:
    """This process's equal share (every N-th image), so that all processes take the same number of steps."""
    n = world_size()
    if n == 1:
        return split
    per = len(split) // n
    if per < 1:
        raise AnomalyVAEError(f"{len(split)} training images cannot be shared by {n} processes")
    return split.subset(torch.arange(rank(), per * n, n))


def wrap(model: nn.Module, dev: torch.device) -> nn.Module:
    """model (already on `dev`) -> the module the training step calls: the model itself, or under torchrun
    its DistributedDataParallel wrapper, which averages gradients across processes."""
    if not enabled():
        return model
    init(dev)
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
