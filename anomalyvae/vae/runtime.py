"""How torch runs on this CPU: how many threads, and where bfloat16 autocast is used.

Threads: torch starts one OpenMP thread per CPU, and its threads spin-wait at every parallel region. On a
machine whose CPUs are busy with other work that oversubscribes badly: on the loaded 2-CPU development
box a float32 128x784x400 matmul took 2.2 ms with 1 thread and 24 ms with 2 (bfloat16: 0.6 and 18 ms). So unless the user says otherwise
(Config.threads or OMP_NUM_THREADS), use only the CPUs the load average leaves idle, at least one.

bfloat16: with AVX512-BF16 / AMX, autocast runs the matmuls and convolutions several times faster than
float32; without them it is emulated and slower, so "auto" uses it only where the CPU has it natively,
and only where it keeps AUROC within 0.005 of float32 and scores deterministic: see AUTO_BF16.
"""

from __future__ import annotations

import contextlib
import functools
import os

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
