"""The detector registry: every detector is a module with the same functions, computing the scores it lists."""

import pytest

from anomalyvae.detectors.registry import DETECTORS, lookup
from anomalyvae.scores import SCORES, available

PROTOCOL = ("train", "fit_state", "calibrating", "build", "state_from_saved", "score_batch")


def test_every_score_is_computed_by_some_detector_and_every_listed_score_exists():
    listed = {s for d in DETECTORS for s in d.scores}
    assert listed == set(SCORES)


@pytest.mark.parametrize("d", DETECTORS, ids=lambda d: f"{d.name}-{d.inputs}")
def test_each_detector_module_has_the_protocol_and_computes_what_it_lists(d):
    module = d.load()
    assert all(callable(getattr(module, f, None)) for f in PROTOCOL)
    if hasattr(module, "COMPUTE"):  # the VAE detectors: a function per score
        assert set(d.scores) <= set(module.COMPUTE)
    assert hasattr(module, "maps_and_recons") == (d.inputs == "images")
    assert hasattr(module, "explain") == (d.inputs == "features")


def test_the_scores_a_model_offers_are_its_detectors():
    assert available("images", "local") == ("local",)
    assert "xknn" in available("features") and "xknn" not in available("images")
    assert "class" not in available("images") and "class" in available("images", labels=True)


def test_a_detector_that_does_not_read_the_input_kind_is_a_one_line_config_error():
    from anomalyvae.config import Config
    from anomalyvae.errors import AnomalyVAEError

    with pytest.raises(AnomalyVAEError, match="'local', which does not read features; use global"):
        Config(input_kind="features", detector="local").validate()
    with pytest.raises(ValueError, match="no 'texture' detector for images"):
        lookup("images", "texture")
