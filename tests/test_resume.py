"""--resume continues the training a checkpoint holds, with that training's own configuration: the hint an
interrupted training prints works as it stands, and a flag that would turn it into another training is refused
before anything in the model folder changes."""

import json

import pytest

from anomalyvae.modeldir import CHECKPOINT_FILE

TINY = {"arch": "mlp", "hidden": 32, "latent_dim": 4, "latent_components": 2, "threads": 1}


@pytest.fixture
def interrupted(tmp_path, mnist_dir, cli):
    """A one-epoch training of a small MLP on 600 digits 0-8, as if stopped there: its folder and checkpoint."""
    config = tmp_path / "tiny.yaml"
    config.write_text("".join(f"{k}: {v}\n" for k, v in TINY.items()))
    out = tmp_path / "models" / "r"
    code, _, err = cli("train", "--normal", "0-8", "--limit", 600, "--epochs", 1, "--data-dir", mnist_dir,
                       "--config", config, "--out", out, "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert code == 0, err
    return out


def folder_bytes(out):
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_resume_with_only_out_continues_with_the_saved_settings(interrupted, tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./data here: the data folder must come from the checkpoint
    code, _, err = cli("train", "--resume", "--out", interrupted, "--epochs", 2, "--no-tracking")
    assert code == 0, err
    assert [h["epoch"] for h in json.loads((interrupted / "history.json").read_text())] == [1, 2]
    meta = json.loads((interrupted / "model.json").read_text())
    assert meta["config"]["hidden"] == 32 and meta["config"]["limit"] == 600 and meta["config"]["normal"] == "0-8"
    assert meta["info"]["n_train"] + meta["info"]["n_val"] == 600
    assert "resuming" in err and "epochs 1 -> 2" in err


@pytest.mark.parametrize("args, setting", [
    (["--normal", "3"], "normal"),
    (["--dataset", "fashion-mnist"], "dataset"),
    (["--arch", "conv"], "arch"),
    (["--limit", "500"], "limit"),
    (["--lr", "0.01"], "lr"),  # Adam's saved state would keep the old one: silently ignored otherwise
    (["--batch-size", "64"], "batch_size"),
])
def test_a_contradicting_flag_is_one_line_exit_2_and_the_folder_is_untouched(interrupted, cli, mnist_dir, args,
                                                                             setting):
    before = folder_bytes(interrupted)
    code, _, err = cli("train", "--resume", "--out", interrupted, "--epochs", 2, *args, "--data-dir", mnist_dir,
                       "--no-tracking")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"was trained with {setting}=" in err and "without --resume" in err
    assert folder_bytes(interrupted) == before


@pytest.mark.parametrize("key, value", [("image_size", 32), ("channels", 3), ("latent_dim", 8), ("hidden", 64)])
def test_a_contradicting_config_file_key_is_refused_too(interrupted, tmp_path, cli, mnist_dir, key, value):
    (tmp_path / "other.yaml").write_text(f"{key}: {value}\ndata_dir: {mnist_dir}\n")
    before = folder_bytes(interrupted)
    code, _, err = cli("train", "--resume", "--out", interrupted, "--config", tmp_path / "other.yaml", "--no-tracking")
    assert code == 2 and f"was trained with {key}=" in err
    assert folder_bytes(interrupted) == before


def test_the_same_classes_written_another_way_are_not_a_contradiction(interrupted, cli):
    code, _, err = cli("train", "--resume", "--out", interrupted, "--normal", "0,1,2,3,4,5,6,7,8", "--no-tracking")
    assert code == 0, err


def test_what_changed_on_resume_is_tagged_on_the_mlflow_run(interrupted, tmp_path, cli):
    import mlflow

    code, _, err = cli("train", "--resume", "--out", interrupted, "--epochs", 3, "--fpr", 0.1)
    assert code == 0, err
    run_id = json.loads((interrupted / "model.json").read_text())["info"]["mlflow_run_id"]
    run = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(run_id)
    assert run.data.tags["anomalyvae.resumed_with"] == "epochs 1 -> 3, fpr 0.05 -> 0.1"


def test_from_python_a_contradicting_config_is_refused(interrupted):
    import dataclasses

    from anomalyvae.errors import AnomalyVAEError
    from anomalyvae.pipeline.images import train_detector
    from anomalyvae.vae.resume import resume_config

    saved = resume_config(interrupted)
    assert saved.normal == "0-8" and saved.hidden == 32
    before = folder_bytes(interrupted)
    with pytest.raises(AnomalyVAEError, match="was trained with normal='0-8', not '3'"):
        train_detector(dataclasses.replace(saved, normal="3"), interrupted, resume=True)
    assert folder_bytes(interrupted) == before


def test_a_checkpoint_without_a_configuration_is_refused(interrupted, cli):
    from anomalyvae.modeldir import read_tensors, write_tensors

    tensors, meta = read_tensors(interrupted / CHECKPOINT_FILE)
    del meta["config"]
    write_tensors(interrupted / CHECKPOINT_FILE, tensors, meta)
    code, _, err = cli("train", "--resume", "--out", interrupted, "--no-tracking")
    assert code == 2 and "holds no configuration" in err
