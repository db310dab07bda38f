"""Purifiers on a tiny backdoored model: they lower the attack success, change
only a copy, keep what they promise frozen, and are reproducible."""

import json

import pytest
import torch
from torch import nn

from backdoorguard.cli import main
from backdoorguard.config import AttackConfig, TrainRun
from backdoorguard.core.metrics import evaluate
from backdoorguard.defenses.base import create_defense
from backdoorguard.defenses.purification.common import batchnorm_buffers
from backdoorguard.defenses.purification.d3 import selected_weights
from backdoorguard.errors import BadInput
from backdoorguard.models import create_model
from backdoorguard.pipeline import clean_subset, train_run, write_train_result

# ASR after purification (from 1.0): a purifier that does nothing fails every bound.
# FT and NAD are weak on 70 clean digits (they leave 0.87 and 0.92 here), so
# their bound only says they act; the methods meant to remove a backdoor get
# bounds with a margin over what they reach (d3 0.07, sms 0.30). Fine-pruning on
# 70 images swings with the clean subset and the numerical path: 0.07-0.62 over
# three clean subsets x three runtime seeds on one machine (median 0.26), so its
# bound only says it removes a good part of the backdoor.
ASR_BOUND = {"ft": 0.95, "nad": 0.97, "fp": 0.7, "d3": 0.2, "sms": 0.5}


@pytest.fixture(scope="module")
def backdoored():
    """preact-resnet18 (width 8) with a BadNets backdoor on digits: ASR 1.0."""
    from backdoorguard.core.runtime import Runtime

    runtime = Runtime(seed=0, device="cpu", threads=1, progress=False)
    run = TrainRun(dataset="digits", model="preact-resnet18", model_args={"width": 8},
                   attack=AttackConfig(name="badnets", poison_rate=0.1, target=0),
                   train={"epochs": 8})
    result = train_run(run, runtime)
    assert result.metrics.asr > 0.95 and result.metrics.clean_acc > 0.95
    return result


@pytest.fixture(scope="module")
def clean(backdoored):
    return clean_subset(backdoored.resolved.data, 0.05, seed=0)


def state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same(a, b, keys=None):
    return all(torch.equal(a[k], b[k]) for k in (keys or a))


@pytest.mark.parametrize("method", sorted(ASR_BOUND))
def test_purifier_lowers_asr_and_leaves_the_input_alone(method, backdoored, clean, runtime):
    before = state(backdoored.model)
    purified = create_defense(method, "purification").purify(backdoored.model, clean,
                                                             runtime=runtime)
    assert same(before, state(backdoored.model)), "the input model was changed"
    metrics = evaluate(purified.model, backdoored.resolved.data.test, backdoored.attack)
    assert metrics.asr <= ASR_BOUND[method]
    assert metrics.clean_acc >= 0.85
    assert purified.cost.seconds > 0 and purified.changes["batchnorm"] == "frozen"


def test_sms_refuses_models_without_skip_connections(digits, runtime):
    from backdoorguard.core.types import ArrayDataset, TaskSpec

    model = create_model("cnn-small", digits.task, width=4, features=8)
    with pytest.raises(BadInput, match="skip connections.*'cnn-small' has none"):
        create_defense("sms", "purification").purify(model, clean_subset(digits), runtime=runtime)
    table = TaskSpec("classification", "tabular", (5,), 2, (0.0, 1.0))
    rows = ArrayDataset(torch.rand(8, 5), torch.arange(8) % 2, table)
    with pytest.raises(BadInput, match="skip connections.*'mlp' has none"):
        create_defense("sms", "purification").purify(create_model("mlp", table), rows,
                                                     runtime=runtime)


def test_nad_attention_is_a_unit_map_per_sample_for_images_and_flat_features():
    from backdoorguard.defenses.purification.nad import attention

    image = torch.randn(3, 4, 5, 5)
    flat = torch.randn(3, 7)
    assert attention(image).shape == (3, 25) and attention(flat).shape == (3, 7)
    assert torch.allclose(attention(image).norm(dim=1), torch.ones(3))
    assert torch.allclose(attention(flat), flat.pow(2) / flat.pow(2).norm(dim=1, keepdim=True))
    assert torch.equal(attention(torch.zeros(2, 4, 3, 3)), torch.zeros(2, 9))


def test_sms_trains_only_the_critical_stage(backdoored, clean, runtime):
    original = state(backdoored.model)
    purified = create_defense("sms", "purification").purify(backdoored.model, clean,
                                                            runtime=runtime)
    changes = purified.changes
    stage = changes["trained"]
    after = state(purified.model)
    outside = [k for k in original if not k.startswith(stage + ".")]
    inside = [k for k in original if k.startswith(stage + ".") and k.endswith("conv1.weight")]
    assert changes["probe"] == "surrogate" and changes["critical_block"].startswith(stage)
    assert same(original, after, outside), "a frozen parameter or statistic moved"
    assert not same(original, after, inside), "the critical stage did not train"
    assert float(purified.model.get_submodule(changes["critical_block"]).skip_scale) == 0.0


def test_batchnorm_statistics_stay_frozen_unless_asked(backdoored, clean, runtime):
    stats = batchnorm_buffers(backdoored.model)
    frozen = create_defense("ft", "purification", min_steps=5).purify(
        backdoored.model, clean, runtime=runtime)
    trained = create_defense("ft", "purification", min_steps=5, batchnorm="train").purify(
        backdoored.model, clean, runtime=runtime)
    assert same(stats, batchnorm_buffers(frozen.model))
    assert not same(stats, batchnorm_buffers(trained.model))


def test_d3_projection_keeps_each_norm_and_moves_far(backdoored, clean, runtime):
    d3 = create_defense("d3", "purification", min_steps=20)
    purified = d3.purify(backdoored.model, clean, runtime=runtime)
    layers = d3.layers_for(backdoored.model)
    original = selected_weights(backdoored.model, layers)
    moved = selected_weights(purified.model, layers)
    assert set(moved) == set(purified.changes["weights"]) and "head.weight" in moved
    assert purified.changes["warm_start"] == "far"  # preact-resnet18's classification default
    for name, weight in moved.items():
        assert torch.allclose(weight.norm(), original[name].norm(), rtol=1e-5)
        assert (weight - original[name]).norm() > 0.5 * original[name].norm()


def test_d3_settle_steps_lower_the_clean_loss_and_keep_the_projection(backdoored, clean,
                                                                        runtime):
    from backdoorguard.core.training import sample_losses

    def run(settle):
        d3 = create_defense("d3", "purification", min_steps=20, settle_steps=settle)
        return d3, d3.purify(backdoored.model, clean, runtime=runtime)

    _, plain = run(0)
    d3, settled = run(20)
    assert plain.changes["settle_steps"] == 0 and settled.changes["settle_steps"] >= 20
    # the distance phase is the same run: the settle phase alone makes the difference
    assert sample_losses(settled.model, clean).mean() < 0.5 * sample_losses(plain.model,
                                                                             clean).mean()
    original = selected_weights(backdoored.model, d3.layers_for(backdoored.model))
    for name, weight in selected_weights(settled.model, list(original)).items():
        assert torch.allclose(weight.norm(), original[name].norm(), rtol=1e-5)
        assert (weight - original[name]).norm() > 0.5 * original[name].norm()
    with pytest.raises(BadInput, match="settle_steps"):
        create_defense("d3", "purification", settle_steps=-1)


def test_d3_classification_warm_start_follows_the_model_family(digits):
    d3 = create_defense("d3", "purification")
    preact = create_model("preact-resnet18", digits.task, width=4)
    small = create_model("cnn-small", digits.task, width=4, features=8)
    assert d3.start_for(digits.task, preact) == "far"
    assert d3.start_for(digits.task, small) == "random"
    assert d3.start_for(digits.task) == "random"
    given = create_defense("d3", "purification", warm_start="near")
    assert given.start_for(digits.task, preact) == "near"


def test_d3_bad_layer_name_is_bad_input(backdoored, clean, runtime):
    with pytest.raises(BadInput, match="select no weight"):
        create_defense("d3", "purification", layers=["nope"]).purify(
            backdoored.model, clean, runtime=runtime)


@pytest.mark.parametrize("method", ["d3", "fp"])
def test_same_seed_same_weights(method, backdoored, clean, runtime):
    from backdoorguard.core.runtime import Runtime

    def weights(seed):
        run = Runtime(seed=seed, device="cpu", threads=1, progress=False)
        return state(create_defense(method, "purification", min_steps=10).purify(
            backdoored.model, clean, runtime=run).model)

    first, again, other = weights(0), weights(0), weights(1)
    assert same(first, again)
    assert not same(first, other)


def test_cli_purify_writes_checkpoint_and_report(backdoored, tmp_path, capsys):
    checkpoint = write_train_result(backdoored, tmp_path / "backdoored")
    out = tmp_path / "purified"
    code = main(["purify", str(checkpoint), "--method", "fp", "--param", "min_steps=10",
                 "--out", str(out), "--threads", "1", "--json"])
    printed = json.loads(capsys.readouterr().out)
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["model.json", "model.safetensors",
                                                     "purify.json"]
    report = json.loads((out / "purify.json").read_text())
    assert report == {k: v for k, v in printed.items() if k != "out"}
    assert report["before"]["asr"] > 0.95 and report["after"]["asr"] < report["before"]["asr"]
    assert 0.5 < report["der"] <= 1 and report["clean_size"] == len(clean_subset(
        backdoored.resolved.data))
    assert report["params"] == {"min_steps": 10} and report["changes"]["pruned"] > 0
    # the purified checkpoint evaluates with the card's attack, to the same numbers
    assert main(["evaluate", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"] == report["after"]


@pytest.mark.parametrize("argv, message", [
    (["--method", "nope"], "unknown purification defense 'nope'; allowed: d3, "),
    (["--method", "d3", "--param", "warm_start=far-away"], "warm start 'far-away'"),
    (["--method", "ft", "--param", "colour=red"], "has no parameter 'colour'; allowed: "),
    (["--method", "drmguard", "--param", "loss=huber"], "drmguard purifier fine-tuning: loss: "),
    (["--method", "drmguard", "--param", "lr=-1"], "drmguard purifier fine-tuning: lr: "),
    (["--method", "ft", "--param", "augment=series"],
     "augment='series' needs series data; this task is image"),
    (["--method", "sms", "--param", "block=stages.9.0"],
     "sms block 'stages.9.0' is not a residual block of this model; allowed: stages.0.0, "),
    (["--method", "sms", "--param", "surrogates=0"], "sms surrogates 0 must be a whole number"),
])
def test_cli_purify_bad_input_exits_2_without_output(argv, message, backdoored, tmp_path, capsys):
    checkpoint = write_train_result(backdoored, tmp_path / "backdoored")
    out = tmp_path / "purified"
    code = main(["purify", str(checkpoint), *argv, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
    assert not out.exists()


@pytest.fixture(scope="module")
def regression_series():
    """resnet1d (width 8) with a BadNets backdoor on Covid3Month (regression series)."""
    from backdoorguard.core.runtime import Runtime

    runtime = Runtime(seed=0, device="cpu", threads=1, progress=False)
    run = TrainRun(dataset="tser:Covid3Month", model="resnet1d", model_args={"width": 8},
                   attack=AttackConfig(name="badnets", poison_rate=0.1), train={"epochs": 30})
    result = train_run(run, runtime)
    assert result.metrics.asr_at_tol > 0.5
    return result


@pytest.mark.parametrize("method", sorted(ASR_BOUND))
def test_regression_series_purifiers_stay_finite_and_d3_removes_the_backdoor(
        method, regression_series, runtime):
    """With the papers' SGD at lr 0.01 and no gradient clipping, ft, fp and nad
    turned this model's outputs to NaN or far off."""
    data = regression_series.resolved.data
    clean = clean_subset(data, 0.05, seed=0)
    purified = create_defense(method, "purification").purify(regression_series.model, clean,
                                                             runtime=runtime)
    before = regression_series.metrics
    after = evaluate(purified.model, data.test, regression_series.attack)
    assert after.clean_mae < 2 * before.clean_mae
    if method == "d3":
        assert after.asr_at_tol <= 0.2


def test_d3_regression_hinge_is_in_units_of_the_median_clean_loss(regression_series):
    """A squared error in span units has no fixed scale: the hinge measures each
    clean sample's loss against the original model's median, with ε = 1.25 of it
    and the `near` warm start unless given."""
    from backdoorguard.core.training import sample_losses

    model = regression_series.model
    clean = clean_subset(regression_series.resolved.data, 0.05, seed=0)
    d3 = create_defense("d3", "purification")
    epsilon, unit = d3.threshold(model, clean)
    assert epsilon == 1.25 and unit == pytest.approx(float(sample_losses(model, clean).median()))
    assert d3.start_for(clean.task) == "near"
    given = create_defense("d3", "purification", epsilon=3.0, warm_start="far")
    assert given.threshold(model, clean)[0] == 3.0 and given.start_for(clean.task) == "far"


def test_d3_regression_hinge_does_not_depend_on_how_accurate_the_model_was(regression_series):
    """Errors ten times smaller give the same hinge: the constraint is as stiff on
    a precise model as on a rough one. (In raw loss units a precise model's hinge
    was a hundred times weaker than the distance term, which then won: synthgaze,
    clean MAE 1.1 → 10.)"""
    from backdoorguard.core.training import task_loss
    from backdoorguard.core.types import ArrayDataset, Batch

    task = regression_series.resolved.data.task
    y = torch.zeros(8, task.num_outputs)
    errors = torch.linspace(0.5, 4.0, 8).unsqueeze(1) * 1e-2
    hinges = []
    for precision in (1.0, 0.1):
        outputs = y + precision * errors
        clean = ArrayDataset(torch.zeros(8, *task.input_shape), y, task)
        d3 = create_defense("d3", "purification")
        unit = float(task_loss(task, d3.train.loss)(outputs, y).median())
        objective = d3.objective({}, {}, clean, 1.25, unit)
        hinges.append(float(objective(lambda x: outputs, Batch(clean.x, y, torch.arange(8))).loss))
    assert hinges[0] > 0 and hinges[1] == pytest.approx(hinges[0], rel=1e-4)


class _Residual(nn.Module):
    """x·w + γ·x: a residual block whose skip connection `skip_scale` scales."""

    def __init__(self, weight: float):
        super().__init__()
        self.weight = weight
        self.register_buffer("skip_scale", torch.ones(()))

    def forward(self, x):
        return x * self.weight + self.skip_scale * x


def test_sms_margin_measure_finds_the_block_a_saturated_asr_cannot():
    """Class 1 wins on every probe input whichever single skip connection is cut,
    so the ASR stays 1 and every block scores 0 under `asr` (the tie goes to the
    first block); the margin falls most when the second block's skip is cut."""
    from backdoorguard.defenses.purification.sms import SMS, attack_margin
    from backdoorguard.core.types import TaskSpec

    task = TaskSpec("classification", "tabular", (1,), 2)
    model = nn.Sequential(_Residual(0.5), _Residual(0.1), nn.Linear(1, 2))
    with torch.no_grad():
        model[2].weight.copy_(torch.tensor([[-1.0], [1.0]]))
        model[2].bias.zero_()
    x, target = torch.ones(4, 1), torch.ones(4, dtype=torch.long)
    assert attack_margin(model, x, target, task) == pytest.approx(2 * 1.5 * 1.1)
    blocks = [("0", model[0]), ("1", model[1])]
    by_asr = SMS(measure="asr").scores(model, blocks, x, target, task)
    by_margin = SMS(measure="margin").scores(model, blocks, x, target, task)
    assert by_asr["score"] == {"0": 0.0, "1": 0.0}
    # cutting block 0's skip: 0.5 · 1.1 = 0.55; block 1's: 1.5 · 0.1 = 0.15 (margins ×2)
    assert by_margin["score"]["1"] > by_margin["score"]["0"] > 0
    assert by_margin["score"]["1"] == pytest.approx(2 * (1.65 - 0.15))
    assert all(float(b.skip_scale) == 1.0 for _, b in blocks), "the probe left a skip cut"
    with pytest.raises(BadInput, match="measure"):
        SMS(measure="logits")


def test_sms_block_option_suppresses_the_named_block_without_a_probe(backdoored, clean, runtime):
    purified = create_defense("sms", "purification", block="stages.2.0").purify(
        backdoored.model, clean, runtime=runtime)
    changes = purified.changes
    assert changes["probe"] == "block" and changes["critical_block"] == "stages.2.0"
    assert changes["trained"] == "stages.2" and "block_scores" not in changes
    assert float(purified.model.get_submodule("stages.2.0").skip_scale) == 0.0
    assert float(purified.model.get_submodule("stages.1.1").skip_scale) == 1.0
    # no surrogate trained: the only steps are the stage's fine-tuning
    assert purified.cost.counters["steps"] == sum(
        1 for _ in range(changes["epochs"]) for _ in range(clean.num_batches(64)))
    with pytest.raises(BadInput, match=r"block 'stages\.9\.0' is not a residual block.*"
                                       r"allowed: stages\.0\.0, stages\.0\.1"):
        create_defense("sms", "purification", block="stages.9.0").purify(
            backdoored.model, clean, runtime=runtime)


def test_sms_surrogates_vote_with_scores_normalised_per_surrogate(backdoored, clean, runtime):
    """Two surrogates (seeds 0 and 1, a patch then a blend): the block scores are
    the sum of each surrogate's scores divided by their own total."""
    sms = create_defense("sms", "purification", surrogates=2,
                         surrogate_triggers=["badnets", "blended"], min_steps=5)
    changes = sms.purify(backdoored.model, clean, runtime=runtime).changes
    each = changes["surrogates"]
    assert [(e["seed"], e["trigger"]) for e in each] == [(0, "badnets"), (1, "blended")]
    assert each[0]["score"] != each[1]["score"], "the two surrogates are the same"
    expected = {name: 0.0 for name in each[0]["score"]}
    for e in each:
        total = sum(e["score"].values())
        for name, value in e["score"].items():
            expected[name] += value / total if total else 0.0
    assert changes["block_scores"] == pytest.approx(expected)
    assert changes["critical_block"] == max(expected, key=expected.get)
    # one surrogate is the default and the single surrogate of before
    single = create_defense("sms", "purification", min_steps=5).purify(
        backdoored.model, clean, runtime=runtime).changes
    assert "surrogates" not in single and single["block_scores"] == pytest.approx(each[0]["score"])


def test_sms_rejects_bad_surrogate_options():
    for params, message in [({"surrogates": 0}, "surrogates 0"),
                            ({"surrogate_triggers": "wanet"}, "allowed: badnets, blended"),
                            ({"block": 3}, "block 3 must be a block's name")]:
        with pytest.raises(BadInput, match=message):
            create_defense("sms", "purification", **params)
