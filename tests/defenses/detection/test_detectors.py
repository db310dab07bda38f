"""Detectors: Neural Cleanse separates a backdoored digits model from its clean
twin; DRMGuard's terms are unit-free and its trigger stays in the input range;
calibration clears every clean model; same seed, same score."""

import re

import pytest
import torch

from backdoorguard.core.checkpoint import load_model
from backdoorguard.core.training import predict
from backdoorguard.core.types import ArrayDataset, TaskSpec
from backdoorguard.data import load_dataset
from backdoorguard.defenses.base import Detection, Detector, Cost, create_defense
from backdoorguard.defenses.detection import calibrate
from backdoorguard.defenses.detection.common import (TriggerGenerator, clean_statistics,
                                                     most_anomalous, output_collapse,
                                                     target_residual)
from backdoorguard.defenses.detection.drmguard import drmguard_terms
from backdoorguard.errors import BadInput
from backdoorguard.models import create_model
from backdoorguard.pipeline import clean_subset

REGRESSION = TaskSpec("regression", "image", (1, 8, 8), 2, input_range=(0.0, 1.0),
                      label_range=((-10.0, 10.0), (-10.0, 10.0)))


def regression_data(n=64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 8, 8, generator=generator)
    y = torch.stack([x[:, 0, :4].mean((1, 2)), x[:, 0, 4:].mean((1, 2))], 1) * 20 - 10
    return ArrayDataset(x, y, REGRESSION)


def tiny_regressor(seed=0):
    torch.manual_seed(seed)
    return create_model("cnn-small", REGRESSION, width=4, features=8).eval()


def test_nc_flags_the_backdoored_digits_model_and_not_its_clean_twin(digits_pair, runtime):
    clean = clean_subset(load_dataset("digits"), 0.05, seed=0)
    detector = create_defense("nc", "detection")
    found = {name: detector.inspect(load_model(path)[0], clean, runtime=runtime)
             for name, path in digits_pair.items()}
    assert found["backdoored"].backdoored and found["backdoored"].target == 0
    assert not found["clean"].backdoored
    assert found["backdoored"].score > found["clean"].score


def test_most_anomalous_is_the_class_with_the_outlying_value():
    per_class = [{"class": c, "size": size} for c, size in enumerate([1.0, 1.1, 0.9, 1.05, 0.1])]
    assert most_anomalous(per_class, "size") == 4
    indices = [entry["anomaly_index"] for entry in per_class]
    assert indices[4] > 3 and max(indices[:4]) < 1


def test_collapse_and_residual_are_in_units_of_the_clean_variance():
    clean = torch.randn(200, 2, generator=torch.Generator().manual_seed(0)) * torch.tensor([1.0, 5.0])
    variance = clean.var(0)
    assert float(output_collapse(clean, variance)) == pytest.approx(1.0)
    assert float(output_collapse(torch.ones(200, 2), variance)) == 0.0
    # one clean standard deviation away from the target in every output: residual 1
    target = torch.zeros(2)
    assert float(target_residual(variance.sqrt().expand(10, 2), target, variance)) == pytest.approx(1.0)


def test_drmguard_terms_are_fractions_of_their_clean_values():
    data, model = regression_data(), tiny_regressor()
    stats = clean_statistics(model, data.x, torch.device("cpu"))
    with torch.no_grad():
        same = drmguard_terms(model, data.x, data.x, stats, span=1.0)
        constant = drmguard_terms(model, data.x, torch.full_like(data.x, 0.5), stats, span=1.0)
        # scaling the head's outputs (other label units) leaves the terms unchanged
        model.head.weight.mul_(10.0)
        model.head.bias.mul_(10.0)
        scaled = drmguard_terms(model, data.x, data.x, clean_statistics(
            model, data.x, torch.device("cpu")), span=1.0)
    assert same["collapse"].item() == pytest.approx(1.0, rel=1e-4)
    assert same["angle"].item() == pytest.approx(1.0, rel=1e-4)
    assert same["size"].item() == 0.0
    assert constant["collapse"].item() < 1e-6
    assert constant["size"].item() == pytest.approx((data.x - 0.5).abs().mean().item(), rel=1e-5)
    assert scaled["collapse"].item() == pytest.approx(1.0, rel=1e-4)


def test_generator_output_stays_in_the_input_range_and_gradients_pass_the_clip():
    task = TaskSpec("regression", "image", (1, 8, 8), 2, input_range=(-1.0, 2.0))
    generator = TriggerGenerator(task)
    x = torch.rand(4, 1, 8, 8) * 3 - 1
    assert torch.equal(generator(x), x)  # starts as the identity
    with torch.no_grad():
        generator.bias.fill_(5.0)
    out = generator(x)
    assert out.min() >= -1.0 and out.max() <= 2.0
    assert torch.allclose(out, torch.full_like(out, 2.0))
    out.sum().backward()
    assert generator.bias.grad.abs().min() > 0  # straight-through: saturated pixels still learn


def test_drmguard_same_seed_same_score_and_clear_errors(runtime):
    data, model = regression_data(), tiny_regressor()
    detector = create_defense("drmguard", "detection", steps=20, restarts=1, lambdas=[1.0])
    first = detector.inspect(model, data, runtime=runtime)
    second = detector.inspect(model, data, runtime=runtime)
    assert first.score == second.score and first.evidence["runs"] == second.evidence["runs"]
    assert first.trigger(data.x).min() >= 0.0 and first.trigger(data.x).max() <= 1.0
    with pytest.raises(BadInput, match="forward_features"):
        detector.inspect(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 2)), data,
                         runtime=runtime)
    with pytest.raises(BadInput, match="regression"):
        detector.inspect(model, load_dataset("digits").test, runtime=runtime)
    with pytest.raises(BadInput, match="lr"):
        create_defense("drmguard", "detection", lr=-1)


class FixedScores(Detector):
    """A stand-in detector whose score is read from the model (a calibration test
    must not depend on a real scan's numbers)."""

    name = "fixed"
    threshold = 0.0

    def inspect(self, model, clean, *, runtime=None):
        score = float(model.score)
        return Detection("fixed", score, self.threshold, score > self.threshold, None, {},
                         Cost(0.0))


def scored(value):
    module = torch.nn.Module()
    module.score = value
    return module


@pytest.mark.parametrize("scores", [[-0.05, -0.02, -0.04], [3.0], [0.0, 0.0]])
def test_calibrate_sets_a_threshold_above_every_clean_score(scores, runtime):
    detector = FixedScores()
    models = {f"m{i}": scored(s) for i, s in enumerate(scores)}
    result = calibrate(detector, models, clean=None, runtime=runtime)
    assert result.threshold > max(scores) and detector.threshold == result.threshold
    assert all(not detector.inspect(m, None).backdoored for m in models.values())
    assert detector.inspect(scored(result.threshold + 1e-3), None).backdoored
    quantile = calibrate(FixedScores(), models, None, runtime=runtime, quantile=0.5)
    assert quantile.threshold <= result.threshold


def test_drmguard_purifier_is_registered_and_fine_tunes_a_copy(runtime):
    data, model = regression_data(), tiny_regressor()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    purifier = create_defense("drmguard", "purification", epochs=2,
                              detector={"steps": 10, "restarts": 1, "lambdas": [1.0]})
    purified = purifier.purify(model, data, runtime=runtime)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert not torch.equal(purified.model.head.weight, model.head.weight)
    # one reversed set per trigger family, both by default
    assert purified.changes["reversed_samples"] == 2 * len(data)
    with pytest.raises(BadInput, match="detection defense, not audit"):
        create_defense("drmguard", "audit")


def test_drmguard_purifier_keeps_batchnorm_statistics_unless_told_to_train_them(runtime):
    data, model = regression_data(), tiny_regressor()
    stats = {k: v.clone() for k, v in model.state_dict().items() if k.endswith("running_mean")}
    assert stats, "the test model needs BatchNorm layers"
    detector = {"steps": 10, "restarts": 1, "lambdas": [1.0]}
    frozen, moving = (create_defense("drmguard", "purification", epochs=2, detector=detector,
                                     **extra).purify(model, data, runtime=runtime)
                      for extra in ({}, {"batchnorm": "train"}))
    assert all(torch.equal(frozen.model.state_dict()[k], v) for k, v in stats.items())
    assert not all(torch.equal(moving.model.state_dict()[k], v) for k, v in stats.items())
    assert (frozen.changes["batchnorm"], moving.changes["batchnorm"]) == ("frozen", "train")
    with pytest.raises(BadInput, match="batchnorm mode"):
        create_defense("drmguard", "purification", batchnorm="stats")


TINY_SCAN = {"steps": 10, "restarts": 1, "lambdas": [1.0]}


def clean_shift(purified, model, data):
    """Mean |f(x) − f0(x)| of the purified model against the received one on `data`."""
    return float((predict(purified.model, data.x) - predict(model, data.x)).abs().mean())


@pytest.mark.parametrize("option, weight", [("anchor", 100.0), ("feature_anchor", 30.0)])
def test_drmguard_purifier_anchors_keep_clean_outputs_closer_to_the_received_model(
        option, weight, runtime):
    # fitting the labels pulls an untrained model's outputs away; either anchor holds them
    data, model = regression_data(), tiny_regressor()
    base = {"epochs": 5, "lr": 1e-2, "detector": TINY_SCAN, "clean_target": "label",
            "anchor": 0.0, "feature_anchor": 0.0, "triggers": "generator"}
    free, held = (create_defense("drmguard", "purification", **{**base, option: value}
                                 ).purify(model, data, runtime=runtime)
                  for value in (0.0, weight))
    assert held.changes["weight_drift"] < 0.7 * free.changes["weight_drift"]
    assert clean_shift(held, model, data) < 0.5 * clean_shift(free, model, data)
    assert (held.changes[option], free.changes[option]) == (weight, 0.0)


def test_drmguard_purifier_model_targets_keep_the_received_clean_fit(runtime):
    # an untrained model is far from the labels: fitting them moves its outputs,
    # fitting its own outputs (clean and reversed) keeps them
    data, model = regression_data(), tiny_regressor()
    labels, own = (create_defense("drmguard", "purification", epochs=5, lr=1e-2,
                                  feature_anchor=0.0, detector=TINY_SCAN, clean_target=target,
                                  reversed_target=target).purify(model, data, runtime=runtime)
                   for target in ("label", "model"))
    assert clean_shift(own, model, data) < 0.5 * clean_shift(labels, model, data)
    assert (own.changes["clean_target"], own.changes["reversed_target"]) == ("model", "model")


def test_drmguard_purifier_scans_with_the_displaced_collapse_unless_told_otherwise():
    generator, mask = create_defense("drmguard", "purification").detectors
    assert (generator.trigger, mask.trigger) == ("generator", "mask")
    assert (generator.displacement, generator.margin, generator.restarts) == (1.0, 1.0, 4)
    assert (mask.displacement, mask.restarts) == (0.0, 2)
    plain, = create_defense("drmguard", "purification", triggers="generator",
                            detector={"displacement": 0}).detectors
    assert (plain.displacement, plain.restarts) == (0.0, 4)
    assert "displacement" not in plain.params()


def test_drmguard_purifier_rounds_reverse_again_on_the_tuned_model(runtime):
    data, model = regression_data(), tiny_regressor()
    purified = create_defense("drmguard", "purification", epochs=2, detector=TINY_SCAN,
                              rounds=2, triggers="generator").purify(model, data, runtime=runtime)
    assert purified.changes["reversed_samples"] == 2 * len(data)
    assert len(purified.changes["round_scores"]) == 2
    assert purified.changes["round_scores"][0] != purified.changes["round_scores"][1]


@pytest.mark.parametrize("option, value, message", [
    ("clean_target", "labels", "unknown drmguard clean_target 'labels'; allowed: label, model"),
    ("reversed_target", "y", "unknown drmguard reversed_target 'y'; allowed: label, model"),
    ("anchor", -1.0, "drmguard anchor -1.0 must be a number ≥ 0 (0: off)"),
    ("feature_anchor", -0.5, "drmguard feature_anchor -0.5 must be a number ≥ 0 (0: off)"),
    ("rounds", 0, "drmguard rounds 0 must be a whole number ≥ 1"),
    ("rounds", 1.5, "parameter rounds=1.5 must be a whole number")])
def test_drmguard_purifier_rejects_bad_options(option, value, message):
    with pytest.raises(BadInput, match=re.escape(message)):
        create_defense("drmguard", "purification", **{option: value})


def test_nc_regression_needs_only_outputs_and_is_reproducible(runtime):
    data = regression_data()
    torch.manual_seed(0)
    plain = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 2))
    detector = create_defense("nc", "detection", steps=20)
    first = detector.inspect(plain, data, runtime=runtime)
    second = detector.inspect(plain, data, runtime=runtime)
    assert first.score == second.score and len(first.target) == 2
    assert first.score == -first.evidence["mask_size"] * max(
        1.0, first.evidence["collapse"] / 0.2)
    assert 0 < first.evidence["mask_size"] < 1


def test_drmguard_probe_finishes_only_the_smallest_run_and_reports_its_cost(runtime):
    data, model = regression_data(), tiny_regressor()
    detector = create_defense("drmguard", "detection", lambdas=[0.5, 2.0], restarts=2, steps=24,
                              probe_steps=6, keep=1, batch_size=16)
    found = detector.inspect(model, data, runtime=runtime)
    runs = found.evidence["runs"]
    finalists = [run for run in runs if run["finalist"]]
    assert len(runs) == 4 and len(finalists) == 1
    # every run was probed for 8 steps (6 rounded up to two passes of 4 batches); only the
    # one with the smallest effective trigger then was trained on to 24 steps
    probe_sizes = [run["stages"][0]["effective_size"] for run in runs]
    assert finalists[0]["stages"][0]["effective_size"] == min(probe_sizes)
    assert [run["steps"] for run in runs if not run["finalist"]] == [8, 8, 8]
    assert finalists[0]["steps"] == 24
    assert found.score == -finalists[0]["effective_size"]
    assert found.cost.counters["steps"] == 48 < 4 * 24
    # passes over the 64 clean inputs: 16 per step, one per measurement, one for the statistics
    assert found.cost.passes == pytest.approx(48 * 16 / 64 + 5 + 1)
    assert 0 < found.cost.counters["probe_seconds"] < found.cost.seconds
    again = detector.inspect(model, data, runtime=runtime)
    assert again.score == found.score and again.evidence["runs"] == runs
    with pytest.raises(BadInput, match="probe_steps"):
        create_defense("drmguard", "detection", probe_steps=-1)
    with pytest.raises(BadInput, match="keep"):
        create_defense("drmguard", "detection", keep=0)


def test_displacement_term_is_zero_beyond_the_margin_and_unit_free():
    data = regression_data()

    def terms_after_shift(shift_in_sds, scale=1.0):
        net = tiny_regressor()
        with torch.no_grad():
            net.head.weight.mul_(scale)
            net.head.bias.mul_(scale)
            stats = clean_statistics(net, data.x, torch.device("cpu"))
            # every output moved by a fixed number of its clean standard deviations
            net.head.bias.add_(torch.tensor(shift_in_sds) * stats["output_var"].sqrt())
            return drmguard_terms(net, data.x, data.x, stats, span=1.0, margin=1.0)

    at_mean = terms_after_shift([0.0, 0.0])
    assert at_mean["offset"].item() == pytest.approx(0.0, abs=1e-5)
    assert at_mean["displacement"].item() == pytest.approx(1.0, abs=1e-5)
    assert terms_after_shift([1.5, -1.0])["displacement"].item() == pytest.approx(0.0, abs=1e-5)
    partly = terms_after_shift([0.5, -2.0])  # one output 0.5 short, the other beyond
    assert partly["displacement"].item() == pytest.approx(0.25, abs=1e-5)
    assert partly["offset"].item() == pytest.approx(1.25, abs=1e-5)
    # other output units (head × 10): the same numbers
    scaled = terms_after_shift([0.5, -2.0], scale=10.0)
    assert scaled["displacement"].item() == pytest.approx(0.25, abs=1e-5)


def test_drmguard_displacement_moves_the_collapse_point_and_is_off_by_default(runtime):
    data, model = regression_data(), tiny_regressor()
    common = dict(steps=60, restarts=1, lambdas=[1.0], probe_steps=0, batch_size=16)
    free = create_defense("drmguard", "detection", **common)
    displaced = create_defense("drmguard", "detection", displacement=2.0, margin=1.0, **common)
    assert "displacement" not in free.params()
    assert displaced.params()["displacement"] == 2.0 and displaced.params()["margin"] == 1.0
    found_free = free.inspect(model, data, runtime=runtime)
    found_displaced = displaced.inspect(model, data, runtime=runtime)
    assert found_displaced.evidence["collapse_offset"] > found_free.evidence["collapse_offset"]
    assert found_displaced.evidence["collapse_offset"] > 0.8
    # the score is the effective size, inflated by the shortfall the run ended with
    chosen = next(run for run in found_displaced.evidence["runs"] if run["finalist"])
    assert found_displaced.score == pytest.approx(
        -chosen["size"] * max(1.0, chosen["collapse"] / 0.2) * (1 + chosen["displacement"]))
    for bad in ({"displacement": -1.0}, {"margin": 0.0}, {"displacement": True}):
        with pytest.raises(BadInput, match=next(iter(bad))):
            create_defense("drmguard", "detection", **bad)


def test_drmguard_repeats_keep_the_smallest_trigger_of_independent_searches(runtime):
    data, model = regression_data(), tiny_regressor()
    common = dict(steps=24, restarts=1, lambdas=[1.0], probe_steps=0, batch_size=16)
    single = create_defense("drmguard", "detection", **common)
    repeated = create_defense("drmguard", "detection", repeats=3, **common)
    assert "repeats" not in single.params() and repeated.params()["repeats"] == 3
    one = single.inspect(model, data, runtime=runtime)
    three = repeated.inspect(model, data, runtime=runtime)
    scores = three.evidence["repeat_scores"]
    # the first search is the plain scan; the others start from other seeds
    assert scores[0] == one.score and len(set(scores)) == 3
    assert three.score == max(scores) >= one.score
    # the trigger and target are the smallest repeat's
    smallest = min(three.evidence["runs"], key=lambda run: run["effective_size"])
    assert smallest["effective_size"] == -max(scores)
    assert three.evidence["trigger_size"] == smallest["size"]
    assert three.target == smallest["target"]
    assert len(three.evidence["runs"]) == 3 and three.cost.counters["runs"] == 3
    with pytest.raises(BadInput, match="repeats"):
        create_defense("drmguard", "detection", repeats=0)


class CornerBackdoor(torch.nn.Module):
    """A regressor with a planted backdoor: its outputs are the two halves' means
    (scaled to the label range) unless the top-left 2×2 corner is bright, which
    gates them to `target`. Features [a (1 − g), b (1 − g), g], a linear head."""

    def __init__(self, target=(7.0, -6.0)):
        super().__init__()
        self.head = torch.nn.Linear(3, 2)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[20.0, 0.0, target[0] + 10],
                                                 [0.0, 20.0, target[1] + 10]]))
            self.head.bias.fill_(-10.0)

    def forward_features(self, x):
        gate = torch.sigmoid(10 * (x[:, 0, :2, :2].mean((1, 2)) - 0.65)).unsqueeze(1)
        content = torch.stack([x[:, 0, :4].mean((1, 2)), x[:, 0, 4:].mean((1, 2))], 1)
        return torch.cat([content * (1 - gate), gate], 1)

    def forward(self, x):
        return self.head(self.forward_features(x))


def test_drmguard_mask_trigger_finds_a_planted_corner_patch(runtime):
    data, model = regression_data(n=128), CornerBackdoor()
    common = dict(steps=150, restarts=1, lambdas=[0.5], probe_steps=0)
    masked = create_defense("drmguard", "detection", trigger="mask", **common)
    assert masked.params()["trigger"] == "mask" and masked.params()["lr"] == 0.1
    assert "trigger" not in create_defense("drmguard", "detection").params()
    found = masked.inspect(model, data, runtime=runtime)
    mask = found.trigger.mask[0, 0].detach()
    # the mask sits on the corner that gates the model, and the outputs collapse onto
    # the planted target
    assert mask[:2, :2].sum() > 0.5 * mask.sum()
    assert found.evidence["collapse"] < 0.2
    assert torch.allclose(torch.tensor(found.target), torch.tensor([7.0, -6.0]), atol=1.5)
    with torch.no_grad():
        reversed_x = found.trigger(data.x)
    assert reversed_x.min() >= 0.0 and reversed_x.max() <= 1.0
    # one trigger for every input: the same change on the corner whatever the input
    assert found.score == pytest.approx(-found.evidence["trigger_size"])
    for bad in ("noise", ["mask"]):
        with pytest.raises(BadInput, match="must be one of generator, mask"):
            create_defense("drmguard", "detection", trigger=bad)


class GatedCornerBackdoor(CornerBackdoor):
    """CornerBackdoor with a trainable gate: g = sigmoid(w · x + b), w and b set so
    that g is the fixed model's gate (the top-left 2×2 corner's mean against 0.65).
    A fine-tune can unlearn the backdoor by turning the gate's corner weights down."""

    def __init__(self, target=(7.0, -6.0)):
        super().__init__(target)
        self.gate = torch.nn.Linear(64, 1)
        with torch.no_grad():
            corner = torch.zeros(1, 8, 8)
            corner[0, :2, :2] = 10 / 4
            self.gate.weight.copy_(corner.flatten().unsqueeze(0))
            self.gate.bias.fill_(-6.5)

    def forward_features(self, x):
        gate = torch.sigmoid(self.gate(x.flatten(1)))
        content = torch.stack([x[:, 0, :4].mean((1, 2)), x[:, 0, 4:].mean((1, 2))], 1)
        return torch.cat([content * (1 - gate), gate], 1)


def corner_stamped(x):
    stamped = x.clone()
    stamped[:, 0, :2, :2] = 1.0
    return stamped


def test_drmguard_mask_mitigation_unlearns_a_planted_corner_gate(runtime):
    data, model = regression_data(n=128), GatedCornerBackdoor()
    test = regression_data(n=256, seed=1)
    triggered = corner_stamped(test.x)

    def true_error(net):
        return float((predict(net, triggered) - test.y).abs().mean())

    scan = {"steps": 150, "restarts": 1, "lambdas": [0.5], "probe_steps": 0}
    purified = create_defense("drmguard", "purification", triggers="mask", detector=scan,
                              lr=3e-2).purify(model, data, runtime=runtime)
    # the stamped corner sends the outputs to the target before; after, they follow
    # the content again, and the clean outputs move little
    assert true_error(model) > 5.0
    assert true_error(purified.model) < 0.3 * true_error(model)
    assert clean_shift(purified, model, test) < 0.2 * true_error(model)
    assert purified.changes["triggers"] == ["mask"]
    assert purified.changes["reversed_samples"] == len(data)


def test_drmguard_purifier_with_both_families_adds_one_reversed_set_per_family(runtime):
    data, model = regression_data(), tiny_regressor()
    both = create_defense("drmguard", "purification", epochs=2, detector=TINY_SCAN,
                          triggers="generator,mask")
    assert [d.trigger for d in both.detectors] == ["generator", "mask"]
    # each family keeps its own scan: the generator's displaced collapse, the mask's
    # detector defaults; `detector` entries go over both
    assert [d.displacement for d in both.detectors] == [1.0, 0.0]
    assert [d.steps for d in both.detectors] == [10, 10]
    purified = both.purify(model, data, runtime=runtime)
    assert purified.changes["reversed_samples"] == 2 * len(data)
    assert purified.changes["triggers"] == ["generator", "mask"]
    scans = purified.changes["family_detections"]
    assert set(scans) == {"generator", "mask"}
    assert scans["generator"]["score"] != scans["mask"]["score"]
    same = create_defense("drmguard", "purification", triggers=["generator", "mask"])
    assert same.triggers == both.triggers
    shorthand = create_defense("drmguard", "purification", detector={"trigger": "mask"})
    assert shorthand.triggers == ("mask",) and shorthand.detectors[0].restarts == 2


@pytest.mark.parametrize("options, message", [
    ({"triggers": "patch"}, "drmguard triggers 'patch': 'patch' is not a trigger family; "
                            "allowed: generator, mask"),
    ({"triggers": ["mask", "blend"]}, "'blend' is not a trigger family; allowed: generator, mask"),
    ({"triggers": "mask,mask"}, "drmguard triggers 'mask,mask' name a family twice"),
    ({"triggers": []}, "drmguard triggers [] must name one or more of generator, mask"),
    ({"triggers": 3}, "drmguard triggers 3 must name one or more of generator, mask"),
    ({"triggers": "mask", "detector": {"trigger": "generator"}},
     "give the families in triggers only")])
def test_drmguard_purifier_rejects_bad_trigger_families(options, message):
    with pytest.raises(BadInput, match=re.escape(message)):
        create_defense("drmguard", "purification", **options)
