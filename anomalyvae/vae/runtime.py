"""How torch runs on this CPU: how many threads, where bfloat16 autocast is used, and how many inputs at once.

Threads: torch starts one OpenMP thread per CPU, and its threads spin-wait at every parallel region. On a
machine whose CPUs are busy with other work that oversubscribes badly: on the loaded 2-CPU development
box a float32 128x784x400 matmul took 2.2 ms with 1 thread and 24 ms with 2 (bfloat16: 0.6 and 18 ms). So unless the user says otherwise
(Config.threads or OMP_NUM_THREADS), use only the CPUs the load average leaves idle, at least one.

bfloat16: with AVX512-BF16 / AMX, autocast runs the matmuls and convolutions several times faster than
float32; without them it is emulated and slower, so "auto" uses it only where the CPU has it natively,
and only where it keeps AUROC within 0.005 of float32 and scores deterministic: see AUTO_BF16.

Batches: every pass over many inputs (training's validation, fitting, scoring, maps) goes through `batches`,
with `batch_for` inputs at once, so memory stays flat in the number of inputs and their size.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
from collections.abc import Iterator

import torch

# where "auto" turns bfloat16 on (given native support): nowhere, for now. Scoring in bfloat16 ran 2-3x
# faster and moved AUROC by at most 0.0002 (benchmarks/speed.py), but its matmuls round differently with
# the batch's size, so an image's score would depend on what it is batched with: scores must be
# deterministic per input. Training: its AUROC effect could not be told apart from seed noise. Both stay
# available as precision: bfloat16.
AUTO_BF16: frozenset[str] = frozenset()


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def pick_threads(requested: int | None) -> int:
    """Config.threads when set; else OMP_NUM_THREADS when set; else the CPUs other processes leave idle."""
    if requested:
        return requested
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    cpus = usable_cpus()
    try:
        busy = os.getloadavg()[0]
    except OSError:
        busy = 0.0
    return max(1, min(cpus, int(cpus - busy + 0.5)))


def set_threads(requested: int | None) -> int:
    n = pick_threads(requested)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


@functools.lru_cache(maxsize=None)
def native_bf16() -> bool:
    """True where the CPU computes bfloat16 in hardware (AVX512-BF16 or AMX)."""
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool((probe and probe()) or (amx and amx()))


def resolve_precision(precision: str, where: str) -> str:
    """'float32' or 'bfloat16' for `where` ('train' or 'score') under the configured precision."""
    if precision == "auto":
        return "bfloat16" if where in AUTO_BF16 and native_bf16() else "float32"
    return precision


def autocast(precision: str, device: torch.device | str = "cpu"):
    """bfloat16 autocast on `device` for 'bfloat16', nothing for 'float32'."""
    if precision == "bfloat16":
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


BATCH_VALUES = 1 << 21  # input values per scoring batch: 42 RGB images of 128 px, 1024 (the cap) of 28 px grey.
# Measured on 1,000 RGB 128 px images, one thread: batches of 32 scored them in 3.4 s, of 1024 in 6.7 s (the
# activations of a big batch of large images fall out of the caches), and memory stays a few hundred MB.


def batch_for(raw: torch.Tensor, most: int = 1024) -> int:
    """How many inputs to score at once: fewer as they grow, so time and memory stay flat in their size."""
    return max(1, min(most, BATCH_VALUES // max(1, math.prod(raw.shape[1:]))))


def batches(n: int, size: int) -> Iterator[slice]:
    """The one batching loop: consecutive slices of at most `size` items, so memory stays flat."""
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))
