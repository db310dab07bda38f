"""Neural Cleanse's per-class calibration: a class that needs a small trigger on
clean models too no longer hides a backdoor once each class is standardised by
known-clean models; the calibration file rebuilds the same detector (alone and
inside an ensemble); one clean model falls back to the floor spread; malformed
per-class statistics are named in one line."""

import json

import pytest
import torch
from torch import nn

from backdoorguard.cli import main
from backdoorguard.core.training import History
from backdoorguard.core.types import ArrayDataset, TaskSpec
from backdoorguard.defenses.base import Cost, Detection, Detector
from backdoorguard.defenses.detection import calibrate
from backdoorguard.defenses.detection.common import MaskTrigger, anomaly_index
from backdoorguard.defenses.detection.ensemble import Ensemble
from backdoorguard.defenses.detection.neural_cleanse import NeuralCleanse
from backdoorguard.errors import BadInput

TASK = TaskSpec("classification", "image", (1, 4, 4), 5)
# per-class mask sizes: class 4 needs a small trigger on every clean model (indices
# 6-13, so the paper's rule flags them all); the backdoored model's target is class 1
CALIBRATION = [[0.150, 0.160, 0.140, 0.155, 0.060], [0.145, 0.150, 0.150, 0.160, 0.055],
               [0.160, 0.145, 0.155, 0.150, 0.065], [0.150, 0.155, 0.145, 0.150, 0.050]]
HELD_OUT_CLEAN = [0.150, 0.155, 0.150, 0.155, 0.058]
BACKDOORED = [0.160, 0.080, 0.140, 0.150, 0.060]


class Sizes(nn.Module):
    """A stand-in model: the mask size Neural Cleanse would find for each class,
    and a second detector's score (`other`)."""

    def __init__(self, sizes, other=0.0):
        super().__init__()
        self.register_buffer("sizes", torch.tensor(sizes, dtype=torch.float64))
        self.other = other


class HandMade(NeuralCleanse):
    """Neural Cleanse with the reversal replaced by the model's given mask sizes;
    scoring, calibration and the stored parameters are the real ones."""

    def _reverse_classes(self, model, clean, runtime):
        per_class = [{"class": c, "mask_size": s, "success": 1.0, "counted_size": s}
                     for c, s in enumerate(model.sizes.tolist())]
        return per_class, MaskTrigger(clean.task, count=len(per_class)), History([], 0.0, 0, 0)


class Other(Detector):
    """A second ensemble member whose score is the model's `other`."""

    name = "other"

    def check_task(self, task):
        pass

    def inspect(self, model, clean, *, runtime=None):
        return Detection("other", model.other, 0.0, model.other > 0, None, {}, Cost(0.0, 0.0))


@pytest.fixture
def clean():
    generator = torch.Generator().manual_seed(0)
    return ArrayDataset(torch.rand(10, 1, 4, 4, generator=generator), torch.arange(10) % 5, TASK)


def rebuilt(calibration):
    """The detector `scan --calibration` builds: the stored parameters, the threshold."""
    record = json.loads(json.dumps(calibration.to_dict()))  # as the file holds it
    detector = HandMade(**record["params"])
    detector.check_task(TASK)
    detector.threshold = record["threshold"]
    return detector


def test_a_naturally_anomalous_class_no_longer_hides_the_backdoor(clean, runtime):
    uncalibrated = HandMade()
    clean_scans = [uncalibrated.inspect(Sizes(s), clean, runtime=runtime)
                   for s in CALIBRATION + [HELD_OUT_CLEAN]]
    backdoored = uncalibrated.inspect(Sizes(BACKDOORED), clean, runtime=runtime)
    # the paper's rule: every clean model flagged for class 4, and NC's own score
    # ranks every clean model above the backdoored one
    assert all(d.backdoored and d.target == 4 and d.threshold == 2.0 for d in clean_scans)
    assert backdoored.target == 4 and backdoored.score < min(d.score for d in clean_scans)

    calibration = calibrate(HandMade(), {f"clean{i}": Sizes(s) for i, s in enumerate(CALIBRATION)},
                            clean, runtime=runtime)
    indices = [anomaly_index(s) for s in CALIBRATION]
    stats = calibration.params["class_standardise"]
    assert [mean for mean, _ in stats] == pytest.approx(torch.tensor(indices).mean(0).tolist())
    assert min(spread for _, spread in stats) >= calibration.params["min_spread"]
    assert calibration.threshold > max(calibration.clean_scores.values())

    detector = rebuilt(calibration)
    found = detector.inspect(Sizes(BACKDOORED), clean, runtime=runtime)
    assert found.backdoored and found.target == 1
    assert found.evidence["raw_target"] == 4 and found.evidence["raw_score"] == backdoored.score
    raw = [c["anomaly_index"] for c in found.evidence["per_class"]]
    z = [c["standardised_index"] for c in found.evidence["per_class"]]
    assert raw == pytest.approx(anomaly_index(BACKDOORED))
    assert z == pytest.approx([(a - m) / s for a, (m, s) in zip(raw, stats)])
    assert found.score == max(z)
    for sizes in CALIBRATION + [HELD_OUT_CLEAN]:
        assert not detector.inspect(Sizes(sizes), clean, runtime=runtime).backdoored

    # per_class=False keeps the raw score under calibration: the clean models set a
    # threshold the backdoored model stays below
    plain = calibrate(HandMade(per_class=False),
                      {f"clean{i}": Sizes(s) for i, s in enumerate(CALIBRATION)}, clean,
                      runtime=runtime)
    assert "class_standardise" not in plain.params
    assert not rebuilt(plain).inspect(Sizes(BACKDOORED), clean, runtime=runtime).backdoored


def test_one_clean_model_falls_back_to_the_floor_spread(clean, runtime):
    calibration = calibrate(HandMade(min_spread=0.25), [Sizes(CALIBRATION[0])], clean,
                            runtime=runtime)
    stats = calibration.params["class_standardise"]
    assert [mean for mean, _ in stats] == pytest.approx(anomaly_index(CALIBRATION[0]))
    assert [spread for _, spread in stats] == [0.25] * 5
    assert calibration.clean_scores == {"model0": 0.0}
    found = rebuilt(calibration).inspect(Sizes(BACKDOORED), clean, runtime=runtime)
    assert found.target == 1 and found.backdoored


def test_an_ensemble_calibrates_its_neural_cleanse_member_per_class(clean, runtime):
    models = {f"clean{i}": Sizes(s, other=0.1 * i) for i, s in enumerate(CALIBRATION)}
    ensemble = Ensemble(members=[HandMade(), Other()])
    calibration = calibrate(ensemble, models, clean, runtime=runtime)
    alone = calibrate(HandMade(), models, clean, runtime=runtime)
    assert calibration.params["fitted"] == {"nc": {"class_standardise":
                                                   alone.params["class_standardise"]}}
    mean_nc, _ = calibration.params["standardise"]["nc"]
    assert mean_nc == pytest.approx(sum(alone.clean_scores.values()) / len(models))
    record = json.loads(json.dumps(calibration.to_dict()))
    again = Ensemble(members=[HandMade(), Other()], threshold=record["threshold"],
                     **{k: record["params"][k] for k in ("standardise", "fitted")})
    found = again.inspect(Sizes(BACKDOORED, other=0.15), clean, runtime=runtime)
    assert found.backdoored and found.evidence["leading"] == "nc" and found.target == 1
    assert not again.inspect(Sizes(HELD_OUT_CLEAN, other=0.15), clean,
                             runtime=runtime).backdoored
    with pytest.raises(BadInput, match="fitted"):
        Ensemble(members=[HandMade(), Other()], fitted={"other": {"class_standardise": []}})


def test_bad_per_class_parameters_are_named(clean):
    cases = [({"class_standardise": [[0.0, 1.0]]}, "at least two classes"),
             ({"class_standardise": [[0.0, 1.0], [0.0, 0.0]]}, r"class_standardise\[1\]"),
             ({"class_standardise": [[0.0, 1.0], [0.0, 1.0]], "per_class": False},
              "needs per_class=true"),
             ({"per_class": "yes"}, "true or false"), ({"min_spread": 0}, "min_spread")]
    for params, message in cases:
        with pytest.raises(BadInput, match=message):
            NeuralCleanse(**params)
    with pytest.raises(BadInput, match="has 2 classes, the model 5"):
        NeuralCleanse(class_standardise=[[0.0, 1.0], [0.0, 1.0]]).check_task(TASK)
    regression = TaskSpec("regression", "image", (1, 4, 4), 2, label_range=((0, 1), (0, 1)))
    with pytest.raises(BadInput, match="regression"):
        NeuralCleanse(class_standardise=[[0.0, 1.0], [0.0, 1.0]]).check_task(regression)


def test_regression_scans_keep_their_scores_when_calibrated():
    scans = {name: Detection("nc", score, -0.03, False, [0.0], {"mask_size": -score},
                             Cost(0.0, 0.0)) for name, score in (("a", -0.05), ("b", -0.04))}
    detector = NeuralCleanse()
    assert detector.fit_clean(scans) == {"a": -0.05, "b": -0.04}
    assert "class_standardise" not in detector.params()


FAST = ["--threads", "1", "--seed", "0", "--method", "nc", "--param", "steps=5"]


def test_calibrate_and_scan_per_class_on_the_command_line(digits_pair, tmp_path):
    thresholds = tmp_path / "nc.json"
    assert main(["calibrate", str(digits_pair["clean"]), "--dataset", "digits",
                 "--out", str(thresholds), "--json", *FAST]) == 0
    calibration = json.loads(thresholds.read_text())
    stats = calibration["params"]["class_standardise"]
    # one clean model: its own indices are the means, the floor the spreads, its score 0
    assert len(stats) == 10 and all(spread == 1.0 for _, spread in stats)
    assert list(calibration["clean_scores"].values()) == [0.0]
    again = tmp_path / "again"
    assert main(["scan", str(digits_pair["clean"]), "--out", str(again), "--calibration",
                 str(thresholds), "--threads", "1", "--seed", "0"]) == 0
    record = json.loads((again / "detection.json").read_text())
    assert [c["anomaly_index"] for c in record["evidence"]["per_class"]] == \
        pytest.approx([mean for mean, _ in stats])
    assert record["score"] == pytest.approx(0.0, abs=1e-9)
    out = tmp_path / "report"
    code = main(["scan", str(digits_pair["backdoored"]), "--out", str(out), "--calibration",
                 str(thresholds), "--threads", "1", "--seed", "0"])
    record = json.loads((out / "detection.json").read_text())
    per_class = record["evidence"]["per_class"]
    z = [(c["anomaly_index"] - mean) / spread for c, (mean, spread) in zip(per_class, stats)]
    assert [c["standardised_index"] for c in per_class] == pytest.approx(z)
    assert record["score"] == pytest.approx(max(z)) and record["target"] == z.index(max(z))
    assert record["evidence"]["raw_score"] == max(c["anomaly_index"] for c in per_class)
    assert record["threshold"] == calibration["threshold"]
    assert code == (1 if record["score"] > record["threshold"] else 0)


def test_bad_per_class_calibration_files_exit_2_in_one_line(digits_pair, tmp_path, capsys):
    good = {"method": "nc", "threshold": 1.0, "clean_scores": {"a": 0.0}, "rule": "max",
            "params": {"steps": 5}}
    cases = [({"class_standardise": [[0, 1]] * 3}, "has 3 classes, the model 10"),
             ({"class_standardise": [[0, 1]] * 9 + [[0, -1]]}, "class_standardise[9] [0, -1]"),
             ({"class_standardise": "high"}, "class_standardise 'high'"),
             ({"per_class": False, "class_standardise": [[0, 1]] * 10}, "per_class=true")]
    out = tmp_path / "report"
    for params, message in cases:
        path = tmp_path / "calibration.json"
        path.write_text(json.dumps({**good, "params": {**good["params"], **params}}))
        argv = ["scan", str(digits_pair["clean"]), "--out", str(out), "--calibration",
                str(path), "--threads", "1"]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert not out.exists()
