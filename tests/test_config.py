import pytest

from anomalyvae.config import Config, make_config
from anomalyvae.errors import AnomalyVAEError


def test_defaults_validate():
    assert make_config() == Config().validate()
    assert make_config(arch="mlp").latent_dim == 20 and make_config().latent_dim == 16


def test_yaml_overrides_defaults_and_flags_override_yaml(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("epochs: 3\nlr: 0.01\nnormal: 3\n")
    cfg = make_config(f, epochs=5)
    assert cfg.epochs == 5 and cfg.lr == 0.01 and cfg.normal == "3"


def test_unknown_yaml_key_is_an_error_naming_it(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("epochz: 3\n")
    with pytest.raises(AnomalyVAEError, match="unknown key 'epochz'"):
        make_config(f)


def test_wrong_type_is_an_error(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("epochs: many\n")
    with pytest.raises(AnomalyVAEError, match="'epochs' must be int"):
        make_config(f)


def test_int_is_accepted_for_a_float_but_not_a_bool_for_an_int():
    assert make_config(lr=1).lr == 1.0
    with pytest.raises(AnomalyVAEError):
        make_config(epochs=True)


@pytest.mark.parametrize("override, words", [
    ({"dataset": "cifar"}, "dataset"), ({"arch": "transformer"}, "arch"), ({"fpr": 1.5}, "fpr"),
    ({"epochs": 0}, "epochs"), ({"dataset": "folder"}, "train-dir"), ({"score": "vibes"}, "score"),
])
def test_invalid_values_are_clear_errors(override, words):
    with pytest.raises(AnomalyVAEError, match=words):
        make_config(**override)


def test_missing_or_non_mapping_config_file_is_an_error(tmp_path):
    with pytest.raises(AnomalyVAEError, match="does not exist"):
        make_config(tmp_path / "none.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(AnomalyVAEError, match="mapping"):
        make_config(tmp_path / "list.yaml")


def test_shipped_configs_load(tmp_path):
    from pathlib import Path

    from anomalyvae.config import ARCHS, DATASETS

    configs = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
    loaded = {c.name: make_config(c, train_dir="x") for c in configs}
    # one file per dataset and model, named after them
    assert {(c.dataset, c.arch) for c in loaded.values()} == {(d, a) for d in DATASETS for a in ARCHS if a != "auto"}
    for name, c in loaded.items():
        assert name.startswith(c.dataset) and (c.arch == "mlp") == name.endswith("-mlp.yaml"), name
