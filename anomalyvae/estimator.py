"""`AnomalyVAE`: the detector as a scikit-learn outlier detector, and the one place that fits and scores.

The contract is IsolationForest's: hyper-parameters in `__init__` only, `fit(X)` returns self, learned state
ends in `_`, `score_samples` is higher = more normal, `decision_function = score_samples - offset_` is
negative for outliers, `predict` gives +1 (inlier) / -1 (outlier). PyOD's `decision_function` has the opposite
sign and its `predict` gives 1 for outliers: PyOD's `decision_function(X)` is `-score_samples(X)` here, and
its labels are `predict(X) == -1`. `anomaly_scores(X)` gives every named score, higher = more anomalous.

The CLI, the MLflow model and the benchmarks use this class: `fit_splits` is what `fit(X)` and
`anomalyvae train` both call, `anomaly_scores` what every scorer calls, `save`/`load` the model directory.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from . import __version__
from .data import inputs
from .config import Config, update
from .data.datasets import Split
from .detectors.registry import lookup
from .detectors.scoring import encode_mu, fit_normalisation, score_all
from .errors import AnomalyVAEError, InvalidInput, ModelDirError, TrainingDiverged
from .evaluation.threshold import calibrate, realized_fpr
from .modeldir import MODEL_FILE, atomic_write_bytes, read_tensors, write_tensors
from .scores import SCORES, available

# the estimator's hyper-parameters that are Config fields of the same name (defaults are Config's), and the
# two that are not: scikit-learn calls any attribute named `score`, and random_state is its name for a seed
CONFIG_PARAMS = ("input_kind", "detector", "window", "causal", "scales", "bank_size", "bank_subsampling", "arch", "latent_dim", "hidden", "width", "conv_hidden", "image_size", "channels",
                 "epochs", "batch_size", "lr", "patience", "kl_warmup_epochs", "beta", "free_bits", "use_labels", "val_fraction", "combine",
                 "knn_k", "latent_components", "iwae_samples", "fpr", "contamination", "device", "threads",
                 "precision")
RENAMED = {"anomaly_score": "score", "random_state": "seed"}

PREPROCESSING = {
    "images": "uint8 pixels / 255 (float images in [0, 1] as they are), shape (channels, image_size, image_size); "
              "files: decoded with Pillow, converted to the model's channels, resized to image_size (images.py)",
    "features": "columns whose training values are all >= 0 and right-skewed (skewness > 1: counts, amounts) are "
                "read as log(1 + x) (sign(x) log(1 + |x|) beyond); then "
                "(x - mean) / scale with the training data's mean and standard deviation, the scale floored at "
                "the median of the features' standard deviations (so a near-constant feature, such as an 8x8 "
                "digit's border pixel, cannot outweigh the others: benchmarks/tabular.py)",
    "series": "(T, D): T timestamps on a regular grid, D channels, NaN for a missing point (masked, never imputed); "
              "each channel (x - median) / (IQR / 1.349) of the training part; windows of `window` points "
              "(detectors/series.py)",
}


class AnomalyVAE(OutlierMixin, BaseEstimator):
    """Anomaly detection by variational-autoencoder reconstruction, with scikit-learn's outlier-detector API.

    Fit on normal data only: images (N, H, W), (N, H, W, C) or (N, C, H, W), or feature vectors (N, D). A
    VAE learns the normal data, a latent model and the score statistics are fitted on it, and the threshold
    is calibrated on a held-out part of it, so no anomaly examples are needed.

    Signs: `score_samples` and `decision_function` are higher = more normal (scikit-learn's convention, as
    `IsolationForest`); `anomaly_scores` is higher = more anomalous (every named score); `predict` is +1 for
    inliers and -1 for outliers. PyOD's `decision_function(X)` is `-score_samples(X)` here, and PyOD's
    `predict(X) == 1` is `predict(X) == -1` here.

    Parameters
    ----------
    input_kind : {"auto", "images", "features", "series"}, default="auto"
        How X is read (anomalyvae/data/inputs.py): "auto" takes 2-D X as feature vectors and 3-D/4-D X as images;
        "series" (only when asked for) takes X (T, D), or (T,), as one time series of T timestamps on a regular
        grid and D channels, NaN where a point is missing: every score is then one value per timestamp
        (anomalyvae/detectors/series.py), and the last `val_fraction` of the series is held out in time order.
    window : int, default=64
        The series detector's points per sliding window.
    causal : bool, default=False
        Series: score each point from the window that ends at it alone (past data only: NAB's streaming
        protocol); otherwise from every window that holds it.
    detector : {"auto", "global", "local"}, default="auto"
        "global": one VAE of whole inputs; "local": a VAE of image patches and a memory bank of their normal
        codes (anomalyvae/detectors/local.py), for photos and inspection images; "auto": global for arrays (from the
        CLI, local for folders of images).
    scales : int, default=3
        The local detector's pyramid scales (1, 1/2, 1/4, ...) whose patches it learns and searches.
    bank_size : int, default=131072
        The local detector's normal patch codes kept per scale (anomalyvae/detectors/memory.py).
    bank_subsampling : {"random", "coreset"}, default="random"
        How the local detector's bank is thinned to `bank_size`.
    arch : {"auto", "conv", "mlp"}, default="auto"
        "auto": a convolutional VAE for images of side 16 or more (depth follows the image size), an MLP for
        smaller images and for feature vectors.
    latent_dim : int or None, default=None
        Dimensions of the code z; None: 20 for an MLP on images (pytorch/examples' 784-400-20), 16 for conv, 8 for
        feature vectors.
    hidden : int or None, default=None
        The MLP's hidden width; None: 400, 100 for series windows.
    width : int, default=16
        The conv model's channels in its first layer, doubled at each stride-2 step.
    conv_hidden : int, default=256
        The conv model's dense layer between the convolutions and the code.
    image_size : int or None, default=None
        Images are resized to image_size x image_size; None keeps X's size (X must then be square).
    channels : {1, 3} or None, default=None
        Images are converted to 1 (grey) or 3 (RGB) channels; None keeps X's.
    epochs : int or None, default=None
        None: images, about 2,300 optimiser steps (6 epochs on 54k images, at most 30); feature vectors,
        2,000 steps whatever the number of rows (config.feature_schedule).
    batch_size : int, default=128
        Inputs per optimiser step.
    lr : float, default=1e-3
        Adam's learning rate.
    patience : int, default=5
        Early stopping: epochs without a better held-out negative ELBO.
    kl_warmup_epochs : int, default=0
        The KL term's weight rises linearly from 0 to `beta` over this many epochs.
    beta : float or None, default=None
        The KL term's weight (beta-VAE); None: 1, the plain ELBO.
    free_bits : float, default=0.0
        Nats of KL per latent dimension that are not penalised (Kingma et al. 2016).
    use_labels : bool or None, default=None
        None: learn the normal classes when `fit(X, y)` is given a y with two or more classes; True: y is
        required; False: y is ignored (the unsupervised detector). With labels a classification head on the
        encoder's last hidden layer learns them with the VAE, the score "class" (the head's entropy, nats;
        higher = more anomalous) exists and joins the default "combined" sum, and `looks_like(X)` says which
        normal class each input resembles.
    val_fraction : float, default=0.1
        The share of X held out for early stopping, the score statistics and the threshold.
    anomaly_score : str, default="combined"
        The score that `score_samples`, `decision_function` and `predict` use, from `anomalyvae.scores.SCORES`
        (Config's `score`: scikit-learn reserves the name `score` for a method). The local detector's is
        "local".
    combine : str or None, default=None
        Comma-separated components that "combined" sums, each standardised on held-out normal data; None:
        `anomalyvae.config.DEFAULT_COMBINE` ("knn,hknn,latent" for images, "xknn" for feature vectors; plus
        "class" with `use_labels`).
    knn_k : int, default=5
        Neighbours of the `knn` and `xknn` scores.
    latent_components : int, default=10
        Components of the Gaussian mixture of the normal codes (the `latent` score).
    iwae_samples : int, default=16
        Importance samples of the `iwae` score.
    fpr : float, default=0.05
        Target false-positive rate: the threshold is set on the held-out `val_fraction` of X.
    contamination : float in (0, 0.5] or None, default=None
        scikit-learn's meaning: the fraction of X to flag, the threshold set on the scores of all of X; None
        uses `fpr`.
    random_state : int, RandomState instance or None, default=None
        Seeds the split, the initial weights and the training order; None draws a seed.
    device : str, default="auto"
        "auto", "cpu", "cuda", "cuda:N" or "mps"; "auto" takes a CUDA GPU when there is one.
    threads : int or None, default=None
        torch's intra-op threads; None: $OMP_NUM_THREADS, else the CPUs the load average leaves idle.
    precision : {"auto", "float32", "bfloat16"}, default="auto"
        The network's precision; "auto" is float32 today (scores must not depend on batching).

    Attributes
    ----------
    config_ : Config
        The resolved configuration (anomalyvae/config.py).
    model_ : torch.nn.Module
        The fitted VAE.
    state_ : dataclass
        What the detector learnt besides the network (its module's state: latent mixture, normal codes, memory
        banks, score statistics), saved with the model.
    threshold_ : float
        The threshold on the anomaly score: an input whose score is above it is an outlier.
    offset_ : float
        `-threshold_`, so that `decision_function = score_samples - offset_`.
    score_ : str
        The name of the score `score_samples` and `predict` use.
    input_shape_ : tuple of int
        One sample's shape: (C, H, W) for images, (D,) for feature vectors.
    n_features_in_ : int
        Pixels x channels for images, D for feature vectors.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        The column names of a DataFrame X; only set when X had string column names.
    history_ : list of dict
        Per-epoch losses.
    info_ : dict
        Sizes, timings, the held-out false-positive rate and warnings of the fit.

    See Also
    --------
    anomalyvae.scores : The registry of score names.
    sklearn.ensemble.IsolationForest : The same contract.
    """

    def __init__(self, *, input_kind="auto", detector=Config.detector, window=Config.window, causal=Config.causal,
                 scales=Config.scales,
                 bank_size=Config.bank_size, bank_subsampling=Config.bank_subsampling, arch=Config.arch, latent_dim=None, hidden=None,
                 width=Config.width, conv_hidden=Config.conv_hidden, image_size=None, channels=None, epochs=None,
                 batch_size=Config.batch_size, lr=Config.lr, patience=Config.patience,
                 kl_warmup_epochs=Config.kl_warmup_epochs, beta=None, free_bits=Config.free_bits, use_labels=Config.use_labels, val_fraction=Config.val_fraction, anomaly_score=Config.score,
                 combine=None, knn_k=Config.knn_k, latent_components=Config.latent_components,
                 iwae_samples=Config.iwae_samples, fpr=Config.fpr, contamination=None, random_state=None,
                 device=Config.device, threads=None, precision=Config.precision):
        self.input_kind = input_kind
        self.detector = detector
        self.window = window
        self.causal = causal
        self.scales = scales
        self.bank_size = bank_size
        self.bank_subsampling = bank_subsampling
        self.arch = arch
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.width = width
        self.conv_hidden = conv_hidden
        self.image_size = image_size
        self.channels = channels
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.patience = patience
        self.kl_warmup_epochs = kl_warmup_epochs
        self.beta = beta
        self.free_bits = free_bits
        self.use_labels = use_labels
        self.val_fraction = val_fraction
        self.anomaly_score = anomaly_score
        self.combine = combine
        self.knn_k = knn_k
        self.latent_components = latent_components
        self.iwae_samples = iwae_samples
        self.fpr = fpr
        self.contamination = contamination
        self.random_state = random_state
        self.device = device
        self.threads = threads
        self.precision = precision

    # -- construction from a Config (the CLI's path) ---------------------------------------------------
    @classmethod
    def from_config(cls, cfg: Config) -> "AnomalyVAE":
        """An unfitted estimator with the hyper-parameters of a `Config` (the CLI's path).

        Parameters
        ----------
        cfg : Config
            A configuration (anomalyvae/config.py); its `score` and `seed` become `anomaly_score` and
            `random_state`.

        Returns
        -------
        AnomalyVAE
            Not fitted.
        """
        return cls(**{p: getattr(cfg, p) for p in CONFIG_PARAMS}, anomaly_score=cfg.score, random_state=cfg.seed)

    def _config(self, kind: str, shape: tuple[int, ...], base: Config | None = None,
                use_labels: bool = False) -> Config:
        seed = self.random_state
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
            seed = int(check_random_state(seed).randint(2 ** 31 - 1))
        values = {p: getattr(self, p) for p in CONFIG_PARAMS}
        values.update(input_kind=kind, seed=int(seed), score=self.anomaly_score, use_labels=use_labels)
        if kind == "images":
            values.update(image_size=shape[-1], channels=shape[0])
        else:
            values.update(image_size=Config.image_size, channels=None)  # no pixel grid: the fields do not apply
        try:
            cfg = dataclasses.replace(base or Config(), **values)
            return cfg.validate()
        except (TypeError, AnomalyVAEError) as e:
            raise InvalidInput(f"invalid AnomalyVAE parameter: {e}") from None

    # -- reading X -------------------------------------------------------------------------------------
    def _read(self, X: Any, reset: bool) -> torch.Tensor:
        """X under the documented rule (inputs.py) as a tensor, converted to the fitted model's form."""
        if reset:
            kind = inputs.kind_of(X, self.input_kind)
        else:
            kind = self.config_.input_kind
        if kind == "features":
            arr = validate_data(self, X, reset=reset, dtype=[np.float64, np.float32])
            return torch.from_numpy(np.array(arr, dtype=np.float32))
        if kind == "series":
            from .data.series import check_array

            if np.ndim(X) == 1:  # one channel
                X = X.to_frame() if hasattr(X, "to_frame") else np.asarray(X).reshape(-1, 1)
            arr = validate_data(self, X, reset=reset, dtype=[np.float64, np.float32], ensure_all_finite="allow-nan")
            if reset:
                check_array(np.asarray(arr, dtype=np.float64))
            return torch.from_numpy(np.array(arr, dtype=np.float64))
        images = inputs.to_images(X, None if reset else self.input_shape_)
        if reset:
            from .detectors.registry import own_channels

            want = self.channels or own_channels(self.detector)
            if want is not None:
                images, note = inputs.match_channels(images, want)
                if note and self.channels is None:  # the detector's own rule, not the user's: say it
                    import warnings

                    warnings.warn(note, UserWarning, stacklevel=3)
            h, w = images.shape[-2:]
            if self.image_size is None and h != w:
                raise InvalidInput(f"images are {h}x{w}, not square; pass image_size=N to resize them to NxN")
        else:
            images, note = inputs.match_channels(images, self.input_shape_[0])
            if note and not getattr(self, "_channel_note_given", False):
                import warnings

                warnings.warn(note, UserWarning, stacklevel=3)
                self._channel_note_given = True
        size = (self.image_size or images.shape[-1]) if reset else self.input_shape_[-1]
        return inputs.resize(images, size)

    # -- fitting -----------------------------------------------------------------------------------------
    def fit(self, X, y=None):
        """Fit the detector on normal data.

        Holds out `val_fraction` of X, trains the VAE on the rest, fits the latent model and the score
        statistics, and calibrates the threshold on the held-out part (or, with `contamination`, on all of X).

        Parameters
        ----------
        X : array-like of shape (n_samples, H, W), (n_samples, H, W, C), (n_samples, C, H, W) or (n_samples, D)
            Normal data only: images as uint8 in 0..255 or floats in [0, 1], or feature vectors (anomalyvae/
            inputs.py states the rule). numpy, torch, pandas and nested lists are accepted.
        y : None or array-like of shape (n_samples,)
            Ignored (here for Pipeline compatibility) unless ``use_labels=True``: then the class of each normal
            sample (non-negative ints), which a classification head on the code learns.

        Returns
        -------
        self : AnomalyVAE
            The fitted estimator.

        Raises
        ------
        ValueError
            X is out of range (floats outside [0, 1], NaN, ...) or too small (fewer than 2 samples), or a
            parameter is invalid: `anomalyvae.errors.InvalidInput`, a ValueError and an `AnomalyVAEError`.
        anomalyvae.errors.TrainingDiverged
            The loss became NaN or infinite (lower `lr`).
        KeyboardInterrupt
            Training was interrupted (Ctrl-C).
        """
        if hasattr(self, "_channel_note_given"):
            del self._channel_note_given
        data = self._read(X, reset=True)
        n = len(data)
        if n < 2:
            raise InvalidInput(f"got {n} sample; AnomalyVAE needs n_samples >= 2 (one to train, one held out)")
        kind = "series" if self.input_kind == "series" else "features" if data.ndim == 2 else "images"
        # use_labels None: labels when y names two or more classes (the user gave them)
        labelled = self.use_labels if self.use_labels is not None else _has_classes(y)
        cfg = self._config(kind, tuple(data.shape[1:]), use_labels=bool(labelled) and kind != "series")
        detector = lookup(cfg.input_kind, cfg.detector).load()
        if hasattr(detector, "split"):  # a series: its last part held out, in time order
            train, val = detector.split(cfg, data)
        else:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed))
            n_val = min(n - 1, max(1, int(round(n * cfg.val_fraction))))
            labels = self._labels(y, n) if cfg.use_labels else torch.full((n,), -1, dtype=torch.int64)
            train = Split(data[order[n_val:]], labels[order[n_val:]])
            val = Split(data[order[:n_val]], labels[order[:n_val]])
        result = self.fit_splits(cfg, train, val)
        if result.stopped_by:
            raise KeyboardInterrupt(f"fit stopped by {result.stopped_by}")
        if result.diverged:
            raise TrainingDiverged(f"{result.diverged}; lower lr")
        if self.info_.get("warnings"):
            import warnings

            for line in self.info_["warnings"]:
                warnings.warn(line, UserWarning, stacklevel=2)
        if cfg.contamination is not None:  # scikit-learn's meaning: flag that fraction of X itself
            s = self.anomaly_scores(data, which=[cfg.score], _prepared=True)[cfg.score]
            self.threshold_ = float(np.nanpercentile(s, 100.0 * (1.0 - cfg.contamination)))
            self.offset_ = -self.threshold_
        return self

    @staticmethod
    def _labels(y, n: int) -> torch.Tensor:
        """use_labels: y as (n,) int64 class labels, or a one-line error saying what is wrong with it."""
        if y is None:
            raise InvalidInput("use_labels=True needs the normal samples' classes: call fit(X, y)")
        arr = np.asarray(y)
        if arr.ndim != 1 or len(arr) != n:
            raise InvalidInput(f"y has shape {arr.shape}; use_labels=True needs one class per sample of X, ({n},)")
        if not np.issubdtype(arr.dtype, np.integer) or (arr < 0).any():
            raise InvalidInput("y must hold non-negative integer classes for use_labels=True "
                               "(encode names with sklearn.preprocessing.LabelEncoder)")
        return torch.from_numpy(arr.astype(np.int64))

    def fit_splits(self, cfg: Config, train: Split, val: Split, out: Path | None = None, resume: bool = False,
                   on_step: Callable | None = None, on_epoch: Callable | None = None, run_id: str | None = None,
                   info: dict[str, Any] | None = None, on_phase: Callable[[str], None] | None = None):
        """Fit network, latent model, score statistics and threshold on prepared splits.

        The step `fit(X)` and `anomalyvae train` share; most callers want `fit`.

        Parameters
        ----------
        cfg : Config
            The resolved configuration.
        train : Split
            Normal data for the network and the latent model: `images` (N, C, H, W) uint8 or (N, D) floats.
        val : Split
            Held-out normal data for early stopping, the score statistics and the threshold.
        out : Path or None, default=None
            A model directory for checkpoints (`--resume`); None writes nothing.
        resume : bool, default=False
            Continue from the checkpoint in `out`.
        on_step, on_epoch : callable or None, default=None
            Called after each optimiser step (epoch, step, steps, loss) and each epoch (its statistics).
        run_id : str or None, default=None
            The MLflow run, stored in checkpoints so that a resumed training continues it.
        info : dict or None, default=None
            Extra entries for `info_`.
        on_phase : callable or None, default=None
            Called with a line saying what runs after the last step (calibration).

        Returns
        -------
        train.FitResult
            The best model, the per-epoch history and how training ended (interrupted, diverged).
        """
        from .vae import distributed

        detector = lookup(cfg.input_kind, cfg.detector).load()
        shape = tuple(train.images.shape[1:])
        result, cfg, extra = detector.train(cfg, train, val, out=out, resume=resume, on_step=on_step,
                                            on_epoch=on_epoch, run_id=run_id)
        distributed.finish()
        if not result.history or not distributed.is_main():
            return result
        self.config_, self.model_, self.input_shape_ = cfg, result.model.eval(), shape
        self.score_, self.n_features_in_ = cfg.score, int(math.prod(shape))
        self.history_ = [dataclasses.asdict(h) for h in result.history]
        if on_phase is not None:  # seconds of work after the last step: say so (the CLI prints it)
            on_phase(detector.calibrating(cfg, train, val, extra))
        self.state_ = detector.fit_state(self.model_, cfg, train, val, extra)
        components = [s for s in available(cfg.input_kind, cfg.detector, cfg.use_labels) if s != "combined"]
        held_out = getattr(detector, "held_out_scores", None)  # a series: the held-out points, not their context
        val_scores = (held_out(self, val, components) if held_out else
                      self.anomaly_scores(val.images, components, _prepared=True))
        fit_normalisation(self.state_, val_scores)
        # the default score was among the components unless it sums them (combined: only now normalised)
        main = val_scores.get(cfg.score)
        if main is None:
            main = (held_out(self, val, [cfg.score]) if held_out else
                    self.anomaly_scores(val.images, [cfg.score], _prepared=True))[cfg.score]
        self.threshold_ = calibrate(main, cfg.fpr)
        self.offset_ = -self.threshold_
        self.info_ = {**(info or {}), "n_train": len(train), "n_val": len(val), "best_epoch": result.best_epoch,
                      "epochs_run": len(result.history), "train_seconds": round(result.seconds, 2),
                      "best_val_loss": min(h.val_loss for h in result.history),
                      "val_fpr": realized_fpr(main, self.threshold_), **extra}
        self.info_["warnings"] = [*small_data_warnings(cfg, len(train), len(val), self), *extra.get("warnings", [])]
        top = lookup(cfg.input_kind, cfg.detector).peak  # each image's map maximum, for every image detector
        if top in val_scores:  # images: the top of every anomaly picture's colour scale, the highest map value
            # on held-out normal images (no second pass is needed)
            self.info_["map_vmax"] = float(val_scores[top].max())
        return result

    # -- scoring -----------------------------------------------------------------------------------------
    def default_scores(self) -> tuple[str, ...]:
        """The scores `anomaly_scores` returns unless told.

        Returns
        -------
        tuple of str
            Every score of the fitted input kind and detector that costs one network pass (all but `iwae`),
            and the model's own score.
        """
        check_is_fitted(self)
        cheap = [s for s in available(self.config_.input_kind, self.config_.detector, self.config_.use_labels)
                 if SCORES[s].cheap]
        return tuple(dict.fromkeys([*cheap, self.score_]))

    def anomaly_scores(self, X, which=None, _prepared: bool = False) -> dict[str, np.ndarray]:
        """Every named score of X; higher = more anomalous.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Images or feature vectors of the kind the model was fitted on (see `fit`).
        which : iterable of str or None, default=None
            Score names from `anomalyvae.scores.SCORES`; None: `default_scores()`. A score that does not exist
            for the model's input kind or detector is a ValueError naming the ones that do.

        Returns
        -------
        dict of str to ndarray of shape (n_samples,)
            float64 scores, higher = more anomalous, deterministic per input (independent of batching).
        """
        check_is_fitted(self)
        data = X if _prepared else self._read(X, reset=False)
        which = list(which) if which is not None else list(self.default_scores())
        detector = lookup(self.config_.input_kind, self.config_.detector).load()
        if self.config_.input_kind == "series":  # windows need their neighbours: the series is scored whole
            return detector.score_inputs(self.model_, data, self.state_, self.config_, which)
        return score_all(detector.score_batch, self.model_, data, self.state_, self.config_, which,
                         double=self.config_.input_kind == "features")

    def explain(self, X):
        """Each feature's share of each row's anomaly, for feature vectors (anomalyvae/detectors/rows.py says how).

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            Feature vectors with the columns the model was fitted on.

        Returns
        -------
        pandas.DataFrame of shape (n_samples, n_features)
            Shares in [0, 1], each row summing to 1; the larger a feature's share, the more of the row's
            (higher = more anomalous) default score it accounts for. Columns are X's names when X is a
            DataFrame (with its index), else the names seen in fit, else x0, x1, ...

        Raises
        ------
        ValueError
            The model was fitted on images (their anomaly map shows where), or its score has no per-feature
            part.
        """
        import pandas as pd

        from .detectors.rows import SPLITS, explain

        check_is_fitted(self)
        if self.config_.input_kind != "features":
            raise InvalidInput("explain is for feature vectors; for images the anomaly map shows where "
                               "(anomalyvae score --heatmaps DIR, or AnomalyVAE.maps_and_recons)")
        parts = self.config_.combine_parts() if self.score_ == "combined" else [self.score_]
        if not set(parts) & set(SPLITS):
            raise InvalidInput(f"score {self.score_!r} has no per-feature part; explain needs one of "
                               f"{', '.join(SPLITS)} in it")
        data = self._read(X, reset=False)
        names = getattr(self, "feature_names_in_", None)
        columns = [str(c) for c in names] if names is not None else [f"x{i}" for i in range(data.shape[1])]
        index = X.index if hasattr(X, "index") and hasattr(X, "columns") else None
        return pd.DataFrame(explain(self.model_, data, self.state_, self.config_, self.score_), columns=columns,
                            index=index)

    def maps_and_recons(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Anomaly maps and reconstructions of prepared images.

        Parameters
        ----------
        images : torch.Tensor of shape (N, C, S, S)
            Images already in the model's channels and size S (uint8, or floats in [0, 1]).

        Returns
        -------
        maps : ndarray of shape (N, S, S)
            Higher = more anomalous: the global model's smoothed per-pixel squared error (detectors/whole.py),
            or the local detector's novelty map (detectors/local.py).
        recons : ndarray of shape (N, C, S, S)
            Reconstructions in [0, 1].
        """
        check_is_fitted(self)
        return lookup(self.config_.input_kind, self.config_.detector).load().maps_and_recons(
            self.model_, self.state_, images)

    def looks_like(self, X) -> np.ndarray | None:
        """The normal class the classification head assigns to each input (models fitted with use_labels).

        Returns
        -------
        ndarray of shape (n_samples,) or None
            Class labels as given to `fit`; None for a model fitted without labels.
        """
        check_is_fitted(self)
        if not self.config_.use_labels:
            return None
        from .detectors.scoring import encode_hidden
        from .vae.model import class_logits

        hidden, mu = encode_hidden(self.model_, self._read(X, reset=False))
        dev = self.model_.classes.device
        with torch.inference_mode():
            picks = class_logits(self.model_, hidden.to(dev), mu.to(dev)).argmax(1)
        return self.model_.classes[picks].cpu().numpy()

    def score_samples(self, X) -> np.ndarray:
        """The default score, negated: higher = more normal (scikit-learn's convention).

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Images or feature vectors of the kind the model was fitted on (see `fit`).

        Returns
        -------
        ndarray of shape (n_samples,)
            `-anomaly_scores(X)[score_]`: higher = more normal.
        """
        check_is_fitted(self)
        return -self.anomaly_scores(X, which=[self.score_])[self.score_]

    def decision_function(self, X) -> np.ndarray:
        """`score_samples(X) - offset_`: negative for outliers.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Images or feature vectors of the kind the model was fitted on (see `fit`).

        Returns
        -------
        ndarray of shape (n_samples,)
            Higher = more normal; below 0 exactly where the default score is above `threshold_`.
        """
        return self.score_samples(X) - self.offset_

    def predict(self, X) -> np.ndarray:
        """Label each input inlier or outlier.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Images or feature vectors of the kind the model was fitted on (see `fit`).

        Returns
        -------
        ndarray of shape (n_samples,)
            +1 for inliers, -1 for outliers (the default score above `threshold_`).
        """
        return np.where(self.decision_function(X) < 0, -1, 1)

    # -- the model directory -------------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        """What the model file's header holds besides the tensors.

        Returns
        -------
        dict
            Version, creation time, the resolved config, input shape, preprocessing, score, threshold, score
            statistics and fit information: `model.json` is this dict.
        """
        check_is_fitted(self)
        meta = {
            "anomalyvae_version": __version__,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "config": self.config_.to_dict(),
            "input_shape": list(self.input_shape_),
            "preprocessing": PREPROCESSING[self.config_.input_kind],
            "score": self.score_,
            "threshold": self.threshold_,
            "score_mean": self.state_.mean,
            "score_std": self.state_.std,
            "info": self.info_,
        }
        meta.update(self.state_.meta())  # the detector's own entries (the local detector's scales and maps)
        if hasattr(self, "feature_names_in_"):
            meta["feature_names"] = [str(f) for f in self.feature_names_in_]
        if getattr(self, "table_", None) is not None:  # trained on a table: its encoding rule (tables.py)
            meta["table"] = self.table_.to_dict()
        if getattr(self, "series_", None) is not None:  # trained on a series file: its time column, channels
            meta["series"] = self.series_
        return meta

    def save(self, out: str | Path) -> Path:
        """Write the model directory: model.safetensors (authoritative) and model.json (a readable copy).

        Each file is written to a temporary name and renamed into place, so a kill leaves the previous
        complete model or the new one.

        Parameters
        ----------
        out : str or Path
            The folder; created if missing, a model already there is replaced.

        Returns
        -------
        Path
            `out`.
        """
        out = Path(out)
        meta = self.metadata()
        tensors = {f"model.{k}": v for k, v in self.model_.state_dict().items()}
        tensors.update({f"score.{k}": v for k, v in self.state_.tensors().items()})
        write_tensors(out / MODEL_FILE, tensors, meta)
        atomic_write_bytes(out / "model.json", json.dumps(meta, indent=2).encode())
        return out

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> "AnomalyVAE":
        """Read a model directory written by `save` or `anomalyvae train`, as data (never unpickled).

        Parameters
        ----------
        path : str or Path
            The model directory, or its model.safetensors.
        device : str, default="auto"
            Where it runs: "auto", "cpu", "cuda", "cuda:N" or "mps" (a model trained anywhere loads anywhere).

        Returns
        -------
        AnomalyVAE
            The fitted estimator.

        Raises
        ------
        ModelDirError
            A missing, incomplete or tampered model (the checksum), another format version, or a pickle.
        """
        from .vae.device import resolve as resolve_device
        from .vae.runtime import set_threads

        path = Path(path)
        if not path.exists():
            raise ModelDirError(f"model {path} does not exist; train one (anomalyvae train) or pass --model DIR")
        file = path / MODEL_FILE if path.is_dir() else path
        tensors, meta = read_tensors(file)
        try:
            # where it was trained does not matter: it runs where it is loaded
            # format 2 (before the local detector) wrote only global models
            saved = {"detector": "global", **meta["config"], "device": device}
            cfg = update(Config(), saved, source=f"{file} config").validate()
            shape = tuple(int(v) for v in meta["input_shape"])
            detector = lookup(cfg.input_kind, cfg.detector).load()
            model = detector.build(cfg, shape, tensors)
            weights = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
            if "x_mean" in weights and "x_log" not in weights:  # a table model saved before the log rule
                weights["x_log"] = torch.zeros_like(weights["x_mean"])
            model.load_state_dict(weights, strict=True)
            est = cls.from_config(cfg)
            est.config_, est.model_, est.input_shape_ = cfg, model.to(resolve_device(device)).eval(), shape
            est.state_ = detector.state_from_saved(tensors, meta)
            est.score_, est.threshold_ = cfg.score, float(meta["threshold"])
            est.offset_, est.info_ = -est.threshold_, dict(meta.get("info", {}))
            est.created_ = meta.get("created")  # when it was saved: commands say which model they use
            est.n_features_in_, est.history_ = int(math.prod(shape)), []
            if meta.get("feature_names"):
                est.feature_names_in_ = np.asarray(meta["feature_names"], dtype=object)
            if meta.get("table"):
                from .data.tables import TableEncoder

                est.table_ = TableEncoder.from_dict(meta["table"])
            if meta.get("series"):
                est.series_ = dict(meta["series"])
            set_threads(cfg.threads)
        except (KeyError, TypeError, ValueError) as e:
            raise ModelDirError(f"{file}: incomplete model metadata ({e}); re-train the model") from None
        except RuntimeError as e:  # load_state_dict: missing/unexpected keys or shape mismatch
            first = str(e).splitlines()
            raise ModelDirError(f"{file}: weights do not fit a '{meta['config'].get('arch')}' model "
                                f"({' '.join(first[1:2] or first)[:160].strip()})") from None
        return est

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


def _has_classes(y) -> bool:
    """use_labels=None: y names two or more non-negative integer classes (else it is ignored, as
    scikit-learn's outlier detectors ignore y)."""
    if y is None:
        return False
    arr = np.asarray(y)
    return bool(arr.ndim == 1 and np.issubdtype(arr.dtype, np.integer) and len(arr) and arr.min() >= 0
                and len(np.unique(arr)) >= 2)


def small_data_warnings(cfg: Config, n_train: int, n_val: int, det: "AnomalyVAE") -> list[str]:
    """What the user should know about a fit on little data: each a line saying what to do."""
    out = []
    least = 100 if cfg.detector == "global" else 10  # the image detectors of parts learn from many regions an image
    what = {"features": "rows", "series": "points"}.get(cfg.input_kind, "images")
    if n_train < least:
        out.append(f"only {n_train} normal training {what}: the {cfg.detector} detector wants {least} or more; "
                   f"add normal {what} (the threshold and scores will move as you do)")
    need = math.ceil(1 / cfg.fpr)
    if n_val < need:
        out.append(f"the threshold is set on {n_val} held-out {what}, fewer than the {need} a {cfg.fpr:g} false-"
                   f"positive rate needs: expect more false alarms; add normal {what} or raise --val-fraction")
    if cfg.detector == "global" and cfg.input_kind == "images" and det.history_:
        if det.history_[-1]["val_kl"] < 1.0:  # under one nat per image: the code tells images apart by little
            out.append(f"the code carries almost no information (KL {det.history_[-1]['val_kl']:.3g} nats): "
                       "the reconstructions are one constant picture; train longer, use more images or try "
                       "--detector local")
    return out
