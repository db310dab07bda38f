"""Bad input to the defense commands: one line, exit status 2, no output."""

import pytest

from backdoorguard.cli import main
from backdoorguard.defenses.base import create_defense
from backdoorguard.errors import BadInput


@pytest.mark.parametrize("params, message", [
    ({"threshold": "abc"}, "must be a number"),
    ({"steps": "many"}, "must be a number"),
    ({"foo": 1}, "allowed: "),
    ({"steps": 10.5}, "steps=10.5 must be a whole number"),
])
def test_bad_detector_parameters_fail_before_any_work(params, message):
    with pytest.raises(BadInput, match=message):
        create_defense("nc", "detection", **params)


def test_counts_must_be_whole_numbers_but_whole_floats_pass():
    with pytest.raises(BadInput, match="min_steps=1.5 must be a whole number"):
        create_defense("d3", "purification", min_steps=1.5)
    assert create_defense("d3", "purification", min_steps=2.0).min_steps == 2


def test_switches_must_be_true_or_false():
    with pytest.raises(BadInput, match="refine='false' must be true or false"):
        create_defense("error-maximizers", "audit", refine="false")
    assert create_defense("error-maximizers", "audit", refine=False).refine is False


def test_exponent_numbers_from_flags_and_files_are_numbers(tmp_path):
    from backdoorguard.cli.common import key_values
    from backdoorguard.config import load_yaml

    params = key_values(["lr=1e-4", "mode=train", "steps=5"], "--param")
    assert params == {"lr": 1e-4, "mode": "train", "steps": 5}
    assert create_defense("drmguard", "purification", lr=params["lr"]).train.lr == 1e-4
    (tmp_path / "run.yaml").write_text("train:\n  lr: 2E-3\nname: 1e\n")
    assert load_yaml(tmp_path / "run.yaml") == {"train": {"lr": 2e-3}, "name": "1e"}


def test_purifier_train_settings_must_be_a_mapping():
    with pytest.raises(BadInput, match="must be a mapping"):
        create_defense("ft", "purification", train="abc")


@pytest.mark.parametrize("text, message", [
    ("foo: 1\n", "unknown key"),
    ("params: abc\n", "must be a mapping"),
    ("clean_fraction: abc\n", "must be a number"),
])
@pytest.mark.parametrize("command", [["scan", "missing-dir"], ["purify", "missing-dir", "--method", "ft"]])
def test_defense_config_files_are_checked(tmp_path, capsys, command, text, message):
    config = tmp_path / "c.yaml"
    config.write_text(text)
    out = tmp_path / "out"
    assert main([*command, "--config", str(config), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()
