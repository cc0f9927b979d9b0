"""anomalyvae: anomaly detection by variational-autoencoder reconstruction.

    from anomalyvae import AnomalyVAE
    est = AnomalyVAE(random_state=0).fit(normal_images)   # (N, H, W[, C]) uint8 or floats in [0, 1], or (N, D)
    labels = est.predict(new_images)                       # +1 inlier, -1 outlier (scikit-learn's contract)
    est.save("models/mine"); AnomalyVAE.load("models/mine")  # the model directory the CLI reads and writes

Names are imported lazily so that `anomalyvae --help` does not pay for importing torch.
"""

__version__ = "0.1.0"

_EXPORTS = {
    "Config": "config", "make_config": "config",
    "AnomalyVAE": "estimator", "latest_model": "modeldir", "SCORES": "scores",
    "train_detector": "pipeline.images", "evaluate_detector": "pipeline.images",
    "score_paths": "pipeline.files", "score_frames": "pipeline.files",
    "parse_classes": "data.classes", "read_idx": "data.idx",
    "AnomalyVAEError": "errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'anomalyvae' has no attribute {name!r}")
