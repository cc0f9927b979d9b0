"""Model files are data, never code: safetensors (tensors + a JSON header), written atomically, checksummed.

A file is written to a temporary name in the same folder, flushed to disk and renamed over the old one, so
a kill at any moment leaves either the previous complete file or the new complete one. The checksum covers
the metadata and every tensor, so an edited threshold or a swapped weight is caught at load time.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from .detectors.registry import title
from .errors import ModelDirError

FORMAT = "anomalyvae-model"
FORMAT_VERSION = 3  # 2: (C, H, W) inputs, feature vectors, Config.width; 3: the local detector
READS = (2, 3)  # 2 is read as a global model
MODEL_FILE = "model.safetensors"
CHECKPOINT_FILE = "checkpoint.safetensors"  # training state for --resume
META_KEY = "anomalyvae"


def _digest(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode() + str(t.dtype).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Temp file + fsync + rename: readers see the old file or the new one, never half of one."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)  # inside the try: a full disk or a bad --out fails here too
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            if tmp is not None:
                os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise ModelDirError(
                f"could not write {path} ({e.strerror or e}); free some disk space or choose another --out; "
                "the previous file there is intact"
            ) from None
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass  # some filesystems refuse fsync on folders; the rename itself is still atomic


def write_tensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    from safetensors.torch import save

    meta = {**meta, "format": FORMAT, "format_version": FORMAT_VERSION}
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    header = {META_KEY: json.dumps(meta, sort_keys=True), "sha256": _digest(meta, tensors)}
    atomic_write_bytes(path, save(tensors, metadata=header))


def read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Parse a safetensors file as data only; refuse anything else, including pickles, without executing it."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ModelDirError(f"{path} does not exist; train a model first (anomalyvae train) or pass --model DIR") from None
    except OSError as e:
        raise ModelDirError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        tensors = load(raw)  # validates the whole layout first
        n = int.from_bytes(raw[:8], "little")  # then the header: u64 length + JSON, per the safetensors spec
        header = json.loads(raw[8:8 + n]).get("__metadata__") or {}
    except (SafetensorError, ValueError, OSError, RuntimeError) as e:
        kind = "a Python pickle, refused: model files are never unpickled" if raw[:1] == b"\x80" else "not a safetensors file"
        raise ModelDirError(f"{path} is {kind} ({str(e).splitlines()[0][:120]}); re-train or re-download the model") from None
    if META_KEY not in header:
        raise ModelDirError(f"{path} is a safetensors file but not an anomalyvae model (no '{META_KEY}' header)")
    try:
        meta = json.loads(header[META_KEY])
    except json.JSONDecodeError:
        raise ModelDirError(f"{path}: its metadata is not valid JSON; the file was edited or damaged") from None
    if meta.get("format") != FORMAT:
        raise ModelDirError(f"{path}: format {meta.get('format')!r} is not {FORMAT!r}")
    if meta.get("format_version") not in READS:
        raise ModelDirError(
            f"{path}: model format version {meta.get('format_version')} but this anomalyvae reads versions "
            f"{', '.join(map(str, READS))}; re-train the model with this version or install the version that wrote it"
        )
    if header.get("sha256") != _digest(meta, tensors):
        raise ModelDirError(f"{path}: checksum mismatch, the file was modified after it was written; re-train it")
    return tensors, meta


def latest_model(root: str | Path = "models") -> Path:
    """The most recently written model directory under `root`: what evaluate and score use by default."""
    root = Path(root)
    found = sorted(root.glob(f"*/{MODEL_FILE}"), key=lambda p: p.stat().st_mtime) if root.is_dir() else []
    if not found:
        raise ModelDirError(f"no trained model under {root}/; run `anomalyvae train` first or pass --model DIR")
    return found[-1].parent


def describe(est, source: str | os.PathLike) -> str:
    """One line naming the model a command uses: where it came from, what it learned as normal, when it was
    saved, so `evaluate` and `score` never use the newest model without saying which."""
    created = getattr(est, "created_", None)
    when = f", saved {created.replace('T', ' ').replace('+00:00', ' UTC')}" if created else ""
    return f"model {os.fspath(source)}: {learned(est)}{when}"


def learned(est) -> str:
    """What a model learned as normal, e.g. 'conv VAE on mnist, normal classes 0-8'."""
    from .data.classes import format_classes

    cfg, info = est.config_, est.info_
    kind = title(cfg)
    if cfg.dataset == "folder" and cfg.train_dir:
        what = f"{kind} on the normal images in {cfg.train_dir}"
    elif cfg.dataset == "mvtec":
        what = f"{kind} on the MVTec-AD folder {cfg.resolved_data_dir()} (train/good), {info.get('n_train', '?')} images"
    elif cfg.input_kind == "series":
        where = f" of {info['series']}" if info.get("series") else " (AnomalyVAE.fit)"
        what = (f"VAE of {cfg.window}-point windows{' (causal)' if cfg.causal else ''} on the first "
                f"{info.get('n_train', '?')} points{where}")
    elif info.get("table"):
        what = f"{kind} on the {info.get('n_train', 0) + info.get('n_val', 0)} normal rows of {info['table']}"
    elif info.get("normal_classes"):
        what = f"{kind} on {cfg.dataset}, normal classes {format_classes(info['normal_classes'])}"
    else:  # AnomalyVAE.fit on arrays: no dataset or classes recorded
        inputs = "rows" if cfg.input_kind == "features" else "images"
        what = f"{kind} fitted on {info.get('n_train', '?')} {inputs} (AnomalyVAE.fit)"
    return what
