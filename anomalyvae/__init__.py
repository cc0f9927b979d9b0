"""anomalyvae: anomaly detection by variational-autoencoder reconstruction.

    from anomalyvae import make_config, train_detector, Detector
    det, model_dir = train_detector(make_config(normal="0-8"))
    flags = Detector.load(model_dir).predict(images_uint8)   # (N, 28, 28) uint8 tensor

Names are imported lazily so that `anomalyvae --help` does not pay for importing torch.
"""

__version__ = "0.1.0"

_EXPORTS = {
    "Config": "config", "make_config": "config",
    "Detector": "detector", "latest_model": "detector",
    "train_detector": "pipeline", "evaluate_detector": "pipeline",
    "score_paths": "inference", "score_frames": "inference",
    "parse_classes": "classes", "read_idx": "idx",
    "AnomalyVAEError": "errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'anomalyvae' has no attribute {name!r}")
