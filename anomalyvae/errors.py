"""One exception type for everything a user can fix, so the CLI can print one line and exit non-zero."""


class AnomalyVAEError(Exception):
    """A problem with the user's input or environment; the message names the problem and the fix."""

    exit_code = 2


class InvalidInput(AnomalyVAEError, ValueError):
    """An array or parameter of the wrong shape, type, range or name: a ValueError too, as scikit-learn's
    contract requires of an estimator."""


class DataError(AnomalyVAEError):
    """A dataset or image file is missing, truncated or not what it claims to be."""


class ModelDirError(AnomalyVAEError):
    """A model directory is missing, from another version, tampered with or not ours."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by Ctrl-C (or the CLI's SIGTERM); the best model so far was saved, the message says where.

    A KeyboardInterrupt, not an Exception: a caller's `except Exception` must not swallow an interruption
    and carry on as if the training had finished.
    """

    exit_code = 130


class TrainingDiverged(AnomalyVAEError):
    """The loss became NaN or infinite; the last good model was kept."""

    exit_code = 3
