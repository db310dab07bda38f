"""`backdoorguard train --defense abl|e2abl`: checkpoint plus isolation.json, params
from flags or YAML, one-line errors."""

import json

import pytest

from ...test_cli import run

FAST = ["--epochs", "3", "--threads", "1", "--seed", "0", "--model-arg", "width=8"]


def test_train_with_abl_writes_isolation_with_precision_and_recall(tmp_path, capsys):
    out = tmp_path / "abl"
    code, stdout, _ = run(capsys, "train", "--dataset", "digits", "--attack", "badnets",
                          "--target", "0", "--defense", "abl", "--defense-param", "rank_epochs=1",
                          "--out", str(out), "--json", *FAST)
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "isolation.json", "metrics.json", "model.json", "model.safetensors"]
    found = json.loads((out / "isolation.json").read_text())
    assert found["method"] == "abl" and found["params"] == {"rank_epochs": 1}
    assert found["n_flagged"] == len(found["flagged"]) == round(0.01 * found["n_samples"])
    assert 0.0 <= found["precision"] <= 1.0 and 0.0 <= found["recall"] <= 1.0
    assert found["poisoned"] == round(0.1 * found["n_samples"])
    record = json.loads(stdout)
    assert record["defense"]["name"] == "abl" and record["defense"]["isolated"] == found["n_flagged"]
    assert [r["phase"] for r in record["history"]][-1] == "unlearning"
    # the checkpoint is a plain model: evaluate reads it like any other
    code, stdout, _ = run(capsys, "evaluate", str(out), "--json")
    assert code == 0 and "asr" in json.loads(stdout)["metrics"]


def test_e2abl_from_yaml_and_without_attack_has_no_precision(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("dataset: digits\ndefense: e2abl\ndefense_args:\n  trap_steps: 2\n")
    out = tmp_path / "e2abl"
    code, _, _ = run(capsys, "train", "--config", str(config), "--out", str(out), "--json", *FAST)
    assert code == 0
    found = json.loads((out / "isolation.json").read_text())
    assert found["method"] == "e2abl" and found["params"] == {"trap_steps": 2}
    assert "precision" not in found and found["poisoned"] is None
    card = json.loads((out / "model.json").read_text())
    assert card["training"]["defense"] == {"name": "e2abl", "params": {"trap_steps": 2}}


BAD = [
    (["--defense", "e2abl", "--defense-param", "trap_steps=0"], "trap_steps 0 is out of range; allowed: an integer ≥ 1"),
    (["--defense", "abl", "--defense-param", "nope=1"], "defense 'abl' has no parameter 'nope'"),
    (["--defense-param", "trap_steps=2"], "--defense-param needs --defense"),
    (["--defense", "abl", "--defense-param", "isolation_share"], "must look like KEY=VALUE"),
    (["--defense", "error-maximizers"], "is a audit defense, not training"),
    (["--defense", "nope"], "unknown training defense 'nope'; allowed: abl, "),
    (["--defense", "abl", "--attack", "input-aware"], "learns its trigger while the model trains"),
]


@pytest.mark.parametrize("argv, message", BAD)
def test_bad_defense_input_is_one_line_exit_2_and_no_output(argv, message, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = run(capsys, "train", "--dataset", "digits", *argv, "--out", str(out), *FAST)
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()
