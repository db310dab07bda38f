"""The ensemble: members on different scales are standardised by known-clean
models, so each member's own finds are flagged; uncalibrated it is the union of
the members' verdicts; the calibration file reproduces the verdict; bad member
lists are named."""

import json

import pytest

from backdoorguard.cli import main
from backdoorguard.defenses.base import Cost, Detection, Detector, create_defense
from backdoorguard.defenses.detection import calibrate
from backdoorguard.defenses.detection.ensemble import parse_spec
from backdoorguard.errors import BadInput

FAST_NC = "nc:steps=5+nc:steps=5,cost=1"


class Reads(Detector):
    """A stand-in member whose score is the model's attribute `attr`."""

    def __init__(self, attr, threshold):
        self.name, self.attr, self.threshold = attr, attr, threshold

    def check_task(self, task):
        pass

    def inspect(self, model, clean, *, runtime=None):
        score = float(model[self.attr])
        return Detection(self.attr, score, self.threshold, score > self.threshold, None, {},
                         Cost(1.0, 2.0))


def models(*pairs):
    return {f"m{i}": {"a": a, "b": b} for i, (a, b) in enumerate(pairs)}


def test_members_on_different_scales_each_flag_their_own_backdoors(runtime):
    # "a" scores are in the hundreds, "b" scores in hundredths: the larger raw score
    # is always a's, so only standardising lets b's find count
    clean = models((100, 0.010), (110, 0.011), (95, 0.009), (105, 0.010))
    ensemble = create_defense("ensemble", "detection",
                              members=[Reads("a", 120.0), Reads("b", 0.015)])
    calibration = calibrate(ensemble, clean, None, runtime=runtime)
    assert set(calibration.params["standardise"]) == {"a", "b"}
    mean_a, spread_a = calibration.params["standardise"]["a"]
    assert mean_a == pytest.approx(102.5) and spread_a == pytest.approx(6.455, abs=1e-3)
    for model in clean.values():
        assert not ensemble.inspect(model, None).backdoored
    only_b = ensemble.inspect({"a": 100, "b": 0.02}, None)
    only_a = ensemble.inspect({"a": 150, "b": 0.010}, None)
    assert only_b.backdoored and only_b.evidence["leading"] == "b"
    assert only_a.backdoored and only_a.evidence["leading"] == "a"
    assert max(only_b.evidence["members"]["a"]["score"],
               only_b.evidence["members"]["b"]["score"]) == 100  # raw max: a clean a
    assert only_b.cost.passes == 4.0
    # the calibration's parameters rebuild the same verdict
    again = create_defense("ensemble", "detection", members=[Reads("a", 0), Reads("b", 0)],
                           standardise=calibration.params["standardise"],
                           threshold=calibration.threshold)
    assert again.inspect({"a": 100, "b": 0.02}, None).score == only_b.score


def test_uncalibrated_ensemble_is_the_union_of_the_members_verdicts():
    ensemble = create_defense("ensemble", "detection",
                              members=[Reads("a", 120.0), Reads("b", 0.015)])
    for a, b in [(100, 0.01), (130, 0.01), (100, 0.02), (130, 0.02)]:
        found = ensemble.inspect({"a": a, "b": b}, None)
        assert found.backdoored == (a > 120 or b > 0.015)
        assert found.evidence["calibrated"] is False


def test_member_specs_parse_and_bad_ensembles_are_named():
    assert parse_spec("drmguard:displacement=1,margin=1.5,lambdas=[0.5, 2],trigger=mask") == (
        "drmguard", {"displacement": 1, "margin": 1.5, "lambdas": [0.5, 2], "trigger": "mask"})
    default = create_defense("ensemble", "detection")
    assert default.params() == {"members": ["drmguard:displacement=1,margin=1,restarts=4",
                                            "drmguard:trigger=mask"]}
    assert default.members["drmguard:trigger=mask"].trigger == "mask"
    cases = [("nc", "at least two"), ("nc+nc", "named twice"), ("nc:steps+nc", "key=value"),
             ("nc+ensemble", "cannot hold an ensemble"), ("nc+magic", "magic"),
             ("nc+drmguard:trigger=noise", "must be one of generator, mask")]
    for members, message in cases:
        with pytest.raises(BadInput, match=message):
            create_defense("ensemble", "detection", members=members)
    for standardise in ({"nc:steps=5": [0, 1]}, {"nc:steps=5": [0, 1], "nc": [0, 0]}):
        with pytest.raises(BadInput, match="standardise"):
            create_defense("ensemble", "detection", members="nc:steps=5+nc",
                           standardise=standardise)


def test_calibrate_and_scan_an_ensemble_on_the_command_line(digits_pair, tmp_path):
    thresholds = tmp_path / "thresholds.json"
    common = ["--threads", "1", "--seed", "0"]
    assert main(["calibrate", str(digits_pair["clean"]), "--dataset", "digits", "--method",
                 "ensemble", "--param", f"members={FAST_NC}", "--out", str(thresholds),
                 "--json", *common]) == 0
    calibration = json.loads(thresholds.read_text())
    assert calibration["params"]["members"] == FAST_NC.split("+")
    assert set(calibration["params"]["standardise"]) == set(FAST_NC.split("+"))
    # each Neural Cleanse member learnt its per-class statistics (10 digits classes)
    fitted = calibration["params"]["fitted"]
    assert set(fitted) == set(FAST_NC.split("+"))
    assert all(len(f["class_standardise"]) == 10 for f in fitted.values())
    out = tmp_path / "report"
    code = main(["scan", str(digits_pair["backdoored"]), "--out", str(out), "--calibration",
                 str(thresholds), *common])
    record = json.loads((out / "detection.json").read_text())
    assert record["method"] == "ensemble" and record["threshold"] == calibration["threshold"]
    assert code == (1 if record["backdoored"] else 0)
    assert record["backdoored"] == (record["score"] > record["threshold"])
    assert record["evidence"]["leading"] in FAST_NC.split("+")
    assert sorted(record["evidence"]["members"]) == sorted(FAST_NC.split("+"))
    assert (out / "trigger.png").exists()
