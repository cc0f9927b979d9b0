import pytest

from anomalyvae.config import Config, make_config
from anomalyvae.errors import AnomalyVAEError


def test_defaults_are_the_dataclass_defaults_with_auto_values_resolved():
    cfg, raw = make_config(), Config()
    resolved = {"arch": "conv", "latent_dim": 16, "combine": "hknn,class", "detector": "global",
                "image_size": 28, "beta": 1.0, "use_labels": True, "hidden": 400}  # MNIST 0-8: the global detector on 28 px
    # images, so conv, with the nine normal classes' labels
    assert {k: getattr(raw, k) for k in resolved} == {"arch": "auto", "latent_dim": None, "combine": None,
                                                      "detector": "auto", "image_size": None, "beta": None,
                                                      "use_labels": None, "hidden": None}
    assert {k: getattr(cfg, k) for k in resolved} == resolved
    assert {k: v for k, v in cfg.to_dict().items() if k not in resolved} == \
           {k: v for k, v in raw.to_dict().items() if k not in resolved}
    assert make_config(arch="mlp").latent_dim == 20 and make_config(image_size=8).arch == "mlp"


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


def test_wrong_type_is_an_error_naming_the_file(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("epochs: many\n")
    with pytest.raises(AnomalyVAEError, match=f"^{f}: 'epochs' must be int, got str 'many'"):
        make_config(f)


@pytest.mark.parametrize("text, value", [("1e-3", 1e-3), ("1E-3", 1e-3), ("5e+2", 500.0), ("-2.5e-1", -0.25),
                                         (".5", 0.5), ("3", 3.0)])
def test_yaml_numbers_in_exponent_form_are_floats(tmp_path, text, value):
    import yaml

    f = tmp_path / "c.yaml"
    f.write_text(f"lr: {text}\n")
    if text in ("1e-3", "1E-3", "5e+2"):
        assert isinstance(yaml.safe_load(f.read_text())["lr"], str)  # PyYAML (YAML 1.1) reads these as text
    from anomalyvae.config import load_yaml, update

    assert update(Config(), load_yaml(f), source=str(f)).lr == value


@pytest.mark.parametrize("text", ["fast", "1e", "e3", "1e-3x", "nan", "inf", "0x10", "1_000"])
def test_text_that_is_not_a_number_is_still_refused_for_a_float(tmp_path, text):
    f = tmp_path / "c.yaml"
    f.write_text(f"lr: '{text}'\n")
    with pytest.raises(AnomalyVAEError, match=f"^{f}: 'lr' must be float"):
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
