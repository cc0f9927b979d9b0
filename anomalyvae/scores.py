"""The one registry of anomaly scores: names, what each needs, help text. Torch-free, so the CLI's help,
config validation and the MLflow signature read it without importing torch. Which detector computes which
score is the detector registry's (detectors/registry.py); each detector's module computes its own.

Every score is higher = more anomalous and deterministic for a given input and model.
"""

from __future__ import annotations

from dataclasses import dataclass

from .detectors.registry import DETECTORS
from .errors import InvalidInput


@dataclass(frozen=True)
class ScoreInfo:
    """One score of the registry: its name, what it is, and where it exists.

    Parameters
    ----------
    name : str
        The score's name, as `--score`, `anomaly_score=` and the CSV and MLflow columns spell it.
    help : str
        One line on what it computes (the CLI's help and the docs' score table show it).
    needs : tuple of str, default=()
        Fitted state beyond the network: "mixture", "codes", "rows", "bank", "normalisation".
    cheap : bool, default=True
        One encoder and one decoder pass per input (`iwae` takes K decoder passes, so it is computed only on
        request).
    """

    name: str
    help: str
    needs: tuple[str, ...] = ()  # fitted state beyond the network: "mixture", "codes", "normalisation"
    cheap: bool = True  # one encoder and one decoder pass per input (iwae takes K decoder passes)
    labels: bool = False  # exists only for a model trained with the normal data's class labels (use_labels)


SCORES: dict[str, ScoreInfo] = {s.name: s for s in (
    ScoreInfo("recon", "reconstruction error -log p(x | z = mu), in nats"),
    ScoreInfo("elbo", "negative ELBO at z = mu: recon + KL(q(z|x) || N(0, I))"),
    ScoreInfo("iwae", "importance-weighted bound with K fixed noise vectors (Burda et al. 2016)", cheap=False),
    ScoreInfo("blur", "squared error after a 5x5 box blur of input and reconstruction"),
    ScoreInfo("peak", "the highest value of the anomaly map (per-pixel squared error, smoothed): a small local "
              "defect that image-wide sums dilute"),
    ScoreInfo("latent", "-log density of mu under a Gaussian mixture of the normal codes", needs=("mixture",)),
    ScoreInfo("knn", "mean distance from mu to its k nearest normal codes", needs=("codes",)),
    ScoreInfo("hknn", "mean distance from the encoder's last hidden layer (each unit standardised on the normal "
              "data) to its k nearest normal training inputs' (a memory bank): richer than the code mu",
              needs=("hidden",)),
    ScoreInfo("xknn", "mean distance from the standardised input to its k nearest normal training rows (a memory "
              "bank): the nearest-neighbour detector in the model's input space", needs=("rows",)),
    ScoreInfo("local", "local detector: the anomaly map's maximum, where a pixel's value is the distance from the "
              "codes of the patches around it to their nearest normal patch codes (memory bank), over scales",
              needs=("bank",)),
    ScoreInfo("compare", "compare detector: the anomaly map's maximum (averaged over a 9 px box), where a pixel's "
              "value is the comparison network's belief that the image and its VAE restoration differ there by a "
              "defect"),
    ScoreInfo("class", "entropy of the classification head's belief over the normal classes, in nats: an input "
              "that looks like no normal class in particular (models trained with --use-labels)", labels=True),
    ScoreInfo("combined", "sum of the components (Config.combine), each standardised on held-out normal data",
              needs=("normalisation",)),
)}
"""Every score by name. Each is higher = more anomalous and deterministic for a given input and model."""
NAMES: tuple[str, ...] = tuple(SCORES)
"""The score names, in the registry's order."""
COMPONENTS: tuple[str, ...] = tuple(n for n in NAMES if n != "combined" and any(
    n in d.scores and "combined" in d.scores for d in DETECTORS))
"""The scores that `combined` may sum (the `combine` setting)."""


def computed_by(name: str) -> list:
    """The detectors (detectors.registry.Detector) that compute the score `name`."""
    return [d for d in DETECTORS if name in d.scores]


def available(input_kind: str, detector: str = "global", labels: bool = False) -> tuple[str, ...]:
    """The scores that exist for an input kind, a detector and a model with or without class labels.

    Parameters
    ----------
    input_kind : {"images", "features"}
        What the model takes.
    detector : {"global", "local"}, default="global"
        The detector.
    labels : bool, default=False
        Whether the model learnt the normal classes' labels (``use_labels``): only then does ``class`` exist.

    Returns
    -------
    tuple of str
        Score names in the registry's order, each higher = more anomalous.
    """
    from .detectors.registry import lookup

    return tuple(n for n in NAMES if n in lookup(input_kind, detector).scores and (labels or not SCORES[n].labels))


def check(names, input_kind: str = "images", what: str = "score", detector: str = "global",
          labels: bool = False) -> list[str]:
    """Validate score names for an input kind, a detector and a model with or without class labels.

    Parameters
    ----------
    names : iterable of str
        The score names to check.
    input_kind : {"images", "features"}, default="images"
        What the model takes.
    what : str, default="score"
        How the error message calls a name ("score", "combine component").
    detector : {"global", "local"}, default="global"
        The detector.
    labels : bool, default=False
        Whether the model learnt the normal classes' labels (``use_labels``).

    Returns
    -------
    list of str
        `names`, unchanged, when every one exists for `input_kind`, `detector` and `labels`.

    Raises
    ------
    anomalyvae.errors.InvalidInput
        A name is unknown or does not exist for this input kind, detector or model; the message names it and
        the choices (a ValueError).
    """
    names = list(names)
    ok = available(input_kind, detector, labels)
    for n in names:
        if n not in SCORES:
            raise InvalidInput(f"unknown {what} {n!r}; choose from {', '.join(NAMES)}")
        if n in ok:
            continue
        if SCORES[n].labels and not labels:
            raise InvalidInput(f"{what} {n!r} needs a model trained with the normal classes' labels; train with "
                               "--use-labels (AnomalyVAE(use_labels=True).fit(X, y))")
        same_inputs = [d.name for d in computed_by(n) if d.inputs == input_kind]
        if same_inputs:
            hint = (f"it scores with {', '.join(ok)} (or train with --detector {same_inputs[0]})" if detector == "local"
                    else f"train with --detector {same_inputs[0]} to get it")
            raise InvalidInput(f"{what} {n!r} is not computed by the {detector} detector; {hint}")
        kind = {"images": "images", "features": "feature vectors"}.get(input_kind, input_kind)
        if any(d.inputs == "features" for d in computed_by(n)):
            raise InvalidInput(f"{what} {n!r} is for feature vectors; for {kind} choose from {', '.join(ok)}")
        raise InvalidInput(f"{what} {n!r} needs images; for {kind} choose from {', '.join(ok)}")
    return names


def help_text() -> str:
    """The score names as the CLI's help shows them: "recon | elbo | ...".

    Returns
    -------
    str
        `NAMES` joined by " | ".
    """
    return " | ".join(NAMES)
