"""`backdoorguard audit`: the report folder, the repaired checkpoint, exit codes, errors.
One small check against the real PDE oracle (a few hundred calls)."""

import json

import pytest

from backdoorguard.cli import main
from backdoorguard.core.checkpoint import load_model

TINY = ["--threads", "1", "--seed", "0"]


@pytest.fixture(scope="module")
def surrogate(tmp_path_factory):
    out = tmp_path_factory.mktemp("audit") / "poisoned"
    assert main(["train", "--dataset", "barrier-option", "--attack", "localized",
                 "--poison-rate", "0.01", "--epochs", "1", "--model-arg", "hidden=[16]",
                 "--out", str(out), "--json", *TINY]) == 0
    return out


def test_audit_writes_report_picture_and_repaired_checkpoint(surrogate, tmp_path, capsys):
    out = tmp_path / "report"
    code = main(["audit", str(surrogate), "--out", str(out), "--budget", "150",
                 "--slice-grid", "4", "--repair", "--repair-budget", "60", "--repair-epochs", "1",
                 "--param", "ascents=2", "--param", "steps=3", "--json", *TINY])
    printed = json.loads(capsys.readouterr().out)
    report = json.loads((out / "audit.json").read_text())
    assert code == (1 if report["suspicious_regions"] else 0)
    assert printed["audit"] == report["audit"]
    assert sorted(p.name for p in out.iterdir()) == ["audit.json", "audit.png", "repaired"]
    calls = report["oracle"]
    assert calls["audit_calls"] <= 150 and calls["repair_calls"] <= 60
    assert calls["picture_calls"] == 3 * 4 * 4           # three slices of 4 × 4 points
    # The poisoned set, rebuilt from the card: 20 relabelled + 180 added, 200 in the shell.
    assert report["train_samples"] == 20000 + 180 + 200
    region = report["audit"]["regions"][0]
    assert {"centre", "maximiser", "error", "error_ratio", "density", "density_ratio",
            "suspicious"} <= set(region)
    model, card = load_model(out / "repaired")
    assert card["repair"]["mode"] == "relabel" and card["repaired_from"]["attack"]["name"] == "localized"


def test_bad_audit_requests_fail_in_one_line_and_write_nothing(surrogate, tmp_path, capsys):
    out = tmp_path / "report"
    bad_train = tmp_path / "audit.yaml"
    bad_train.write_text("repair_train:\n  epoch: 3\n")
    for argv, message in (
            (["--budget", "0"], "budget"),
            (["--slice-grid", "1"], "slice grid"),
            (["--dataset", "digits"], "trained for regression"),
            (["--oracle", "tests.factories:tiny_cnn"], "not a backdoorguard Oracle"),
            (["--param", "merge_radius=-1"], "merge_radius"),
            (["--repair-mode", "erase", "--repair"], "repair mode"),
            (["--repair-epochs", "-1", "--repair"], "repair train: epochs: "),
            (["--repair", "--config", str(bad_train)], "repair train: epoch: Extra inputs")):
        code = main(["audit", str(surrogate), "--out", str(out), *argv, *TINY])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("error:") and message in err, (argv, err)
        assert err.count("\n") == 1
        assert not out.exists()
    assert main(["audit", str(tmp_path / "missing"), "--out", str(out)]) == 2
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert main(["audit", str(surrogate), "--out", str(out), *TINY]) == 2
    assert "not empty" in capsys.readouterr().err
