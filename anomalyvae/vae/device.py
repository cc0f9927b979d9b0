"""Where the network runs: the CPU, a CUDA GPU or Apple's MPS, from Config.device.

'auto' takes a CUDA GPU when torch sees one and the CPU otherwise. Under torchrun each process takes the
GPU numbered by its LOCAL_RANK, as torchrun intends, so `--device cuda` with N processes uses N GPUs.
The device is where a job runs, not part of the model: weights are saved as CPU tensors and a model
trained on a GPU loads and scores anywhere (Detector.load picks the device of the machine it is on).
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from ..errors import AnomalyVAEError

if TYPE_CHECKING:
    import torch

_SYNTAX = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check(requested: str) -> None:
    """Syntax only (Config.validate): whether the device exists is decided where the job runs."""
    if not _SYNTAX.match(requested):
        raise AnomalyVAEError(f"config: 'device' is {requested!r}; choose auto, cpu, cuda, cuda:N or mps")


def _no_cuda(requested: str) -> AnomalyVAEError:
    import torch

    if torch.version.cuda:
        why = f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA GPU or no driver"
        fix = "use --device cpu (or auto), or check nvidia-smi and CUDA_VISIBLE_DEVICES"
    else:
        why = f"torch {torch.__version__} is a CPU-only build, with no CUDA GPU support"
        fix = "use --device cpu (or auto), or install a CUDA build of torch"
    return AnomalyVAEError(f"--device {requested}: {why}; {fix}")


def resolve(requested: str = "auto") -> torch.device:
    """The torch.device for Config.device on this machine; a clear error when it is not there."""
    import torch  # here, not at the top: Config.validate's syntax check must not pay for importing torch

    check(requested)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cpu":
        return torch.device("cpu")
    if requested == "mps":
        if not torch.backends.mps.is_available():
            raise AnomalyVAEError("--device mps: this machine has no Apple MPS device; use --device cpu (or auto)")
        if world > 1:
            raise AnomalyVAEError("--device mps does not support torchrun (no multi-process backend); use one process")
        return torch.device("mps")
    if not torch.cuda.is_available():
        raise _no_cuda(requested)
    count = torch.cuda.device_count()
    if ":" in requested:
        if world > 1:
            raise AnomalyVAEError(f"--device {requested} under torchrun would put every process on one GPU; "
                                  "use --device cuda: each process takes the GPU numbered by its LOCAL_RANK")
        index = int(requested.split(":")[1])
    else:
        index = int(os.environ.get("LOCAL_RANK", torch.cuda.current_device() if world == 1 else 0))
    if index >= count:
        raise AnomalyVAEError(f"--device {requested}: GPU {index} does not exist, torch sees {count} "
                              f"(cuda:0 .. cuda:{count - 1}); " + (
                                  "run at most that many processes per node, or pass --device cpu" if world > 1 else "pick one of those"))
    return torch.device("cuda", index)


def of(model: torch.nn.Module) -> torch.device:
    """The device a model's weights are on: where its inputs have to go."""
    return next(model.parameters()).device
