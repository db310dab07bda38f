"""The command line: outputs, exit codes, one-line errors, reproducibility."""

import json

import pytest

from backdoorguard.cli import main

FAST = ["--epochs", "2", "--threads", "1", "--seed", "0"]


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "backdoored"
    assert main(["train", "--dataset", "digits", "--attack", "badnets", "--poison-rate", "0.1",
                 "--target", "0", "--out", str(out), "--json", *FAST]) == 0
    return out


def test_train_writes_checkpoint_and_metrics(trained):
    names = sorted(p.name for p in trained.iterdir())
    assert names == ["metrics.json", "model.json", "model.safetensors"]
    record = json.loads((trained / "metrics.json").read_text())
    assert record["attack"]["name"] == "badnets" and record["attack"]["poisoned"] > 0
    assert {"clean_acc", "asr", "robust_acc"} <= set(record["metrics"])


def test_same_seed_gives_byte_identical_metrics(trained, tmp_path):
    again = tmp_path / "again"
    assert main(["train", "--dataset", "digits", "--attack", "badnets", "--poison-rate", "0.1",
                 "--target", "0", "--out", str(again), "--json", *FAST]) == 0
    first = json.loads((trained / "metrics.json").read_text())
    second = json.loads((again / "metrics.json").read_text())
    first.pop("cost"), second.pop("cost")
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    assert (trained / "model.safetensors").read_bytes() == (again / "model.safetensors").read_bytes()


def test_evaluate_uses_the_card_and_json_is_one_object(trained, capsys):
    code, out, err = run(capsys, "evaluate", str(trained), "--json")
    assert code == 0
    data = json.loads(out)
    assert out.count("\n") == 1
    record = json.loads((trained / "metrics.json").read_text())
    assert data["metrics"] == record["metrics"]
    code, out, _ = run(capsys, "evaluate", str(trained), "--attack", "none", "--json")
    assert "asr" not in json.loads(out)["metrics"]


def test_config_file_with_flag_override(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("dataset: digits\nseed: 1\ntrain:\n  epochs: 5\n  batch_size: 128\n")
    code, out, _ = run(capsys, "train", "--config", str(config), "--epochs", "1",
                       "--out", str(tmp_path / "m"), "--json", "--threads", "1")
    assert code == 0
    record = json.loads(out)
    assert record["train"]["epochs"] == 1 and record["train"]["batch_size"] == 128
    assert record["seed"] == 1 and len(record["history"]) == 1


BAD = [
    (["train", "--dataset", "cifar99"], "unknown dataset 'cifar99'"),
    (["train", "--model", "resnet9000"], "unknown model 'resnet9000'"),
    (["train", "--attack", "nope"], "unknown attack 'nope'"),
    (["train", "--attack", "badnets", "--poison-rate", "1.5"], "poison_rate"),
    (["train", "--attack", "badnets", "--poison-rate", "0"], "poison_rate"),
    (["train", "--attack", "badnets", "--target", "12"], "target class 12 is outside"),
    (["train", "--epochs", "-3"], "epochs"),
    (["train", "--epochs", "0"], "epochs 0 would train nothing; allowed: an integer ≥ 1"),
    (["train", "--optimizer", "rmsprop"], "optimizer"),
    (["train", "--device", "tpu"], "unknown device 'tpu'"),
    (["train", "--poison-rate", "0.1"], "need --attack"),
    (["train", "--defense", "e2abl", "--defense-param", "trap_input_steps=sometimes"],
     "e2abl: trap_input_steps 'sometimes' is out of range; allowed: true, false or auto"),
    (["train", "--no-such-flag"], "No such option"),
    (["list", "widgets"], "unknown list 'widgets'"),
]


@pytest.mark.parametrize("argv, message", BAD)
def test_bad_input_is_one_line_exit_2_and_no_output(argv, message, tmp_path, capsys):
    out = tmp_path / "out"
    argv = argv + ["--out", str(out)] if argv[0] == "train" and "--no-such-flag" not in argv else argv
    code, stdout, err = run(capsys, *argv)
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()
    assert [p for p in tmp_path.iterdir()] == []


def test_bad_checkpoints(tmp_path, trained, capsys):
    code, _, err = run(capsys, "evaluate", str(tmp_path / "missing"))
    assert code == 2 and "does not exist" in err
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("model.json", "model.safetensors"):
        (broken / name).write_bytes((trained / name).read_bytes())
    (broken / "model.safetensors").write_bytes(b"\x00" * 100)
    code, _, err = run(capsys, "evaluate", str(broken))
    assert code == 2 and "does not match its card" in err and err.count("\n") == 1
    pickled = tmp_path / "model.pt"
    pickled.write_bytes(b"whatever")
    code, _, err = run(capsys, "evaluate", str(pickled))
    assert code == 2 and "pickle files are refused" in err


def test_unwritable_out_fails_before_training(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run(capsys, "train", "--out", str(blocker / "sub"), *FAST)
    assert code == 2 and "not writable" in err


def test_existing_output_needs_overwrite(trained, capsys):
    code, _, err = run(capsys, "train", "--out", str(trained), *FAST)
    assert code == 2 and "--overwrite" in err


def test_list_shows_support(capsys):
    code, out, _ = run(capsys, "list", "--json")
    data = json.loads(out)
    names = {e["name"]: e for e in data["models"]}
    assert names["cnn-small"]["modalities"] == ["image"]
    assert {"datasets", "models", "attacks", "defenses"} == set(data)


def test_learnt_trigger_travels_with_the_checkpoint(tmp_path, capsys):
    out = tmp_path / "ia"
    code, stdout, err = run(capsys, "train", "--attack", "input-aware", "--attack-param",
                            "mask_epochs=1", "--attack-param", "width=4", "--out", str(out),
                            "--json", *FAST)
    assert code == 0, err
    assert (out / "attack.safetensors").exists()
    trained = json.loads(stdout)["metrics"]
    code, stdout, _ = run(capsys, "evaluate", str(out), "--json")
    assert code == 0 and json.loads(stdout)["metrics"] == trained


def test_user_model_factory_with_safetensors_or_trusted_pickle(trained, tmp_path, capsys):
    import torch
    from safetensors.torch import load_file

    weights = trained / "model.safetensors"
    base = ["evaluate", "--model-factory", "tests.factories:tiny_cnn", "--dataset", "digits",
            "--attack", "none", "--json"]
    # the factory builds a narrower network than the trained one: a clear mismatch error
    code, _, err = run(capsys, *base, "--weights", str(weights))
    assert code == 2 and "do not match the model" in err
    from tests.factories import tiny_cnn

    state = tiny_cnn().state_dict()
    from safetensors.torch import save_file
    save_file(state, str(tmp_path / "user.safetensors"))
    code, out, err = run(capsys, *base, "--weights", str(tmp_path / "user.safetensors"))
    assert code == 0, err
    accuracy = json.loads(out)["metrics"]["clean_acc"]
    torch.save(load_file(str(tmp_path / "user.safetensors")), tmp_path / "user.pt")
    code, _, err = run(capsys, *base, "--weights", str(tmp_path / "user.pt"))
    assert code == 2 and "refusing to unpickle" in err
    code, out, _ = run(capsys, *base, "--weights", str(tmp_path / "user.pt"), "--trust-pickle")
    assert code == 0 and json.loads(out)["metrics"]["clean_acc"] == accuracy
    code, _, err = run(capsys, "evaluate", "--dataset", "digits")
    assert code == 2 and "a model is needed" in err
