"""ABL and E2ABL on digits poisoned by BadNets: isolation, backdoor removal,
a plain exported model, reproducibility, parameter checks."""

import pytest
import torch

from backdoorguard.attacks import create_attack
from backdoorguard.core.metrics import isolation
from backdoorguard.config import TrainConfig
from backdoorguard.core.checkpoint import load_model, save_model
from backdoorguard.core.metrics import evaluate
from backdoorguard.core.training import fit
from backdoorguard.core.types import TaskSpec
from backdoorguard.defenses.base import create_defense
from backdoorguard.defenses.training import ABL, E2ABL
from backdoorguard.errors import BadInput
from backdoorguard.models import create_model

# 20 epochs: E2ABL ramps its suspect share over a third of the run, and its trap
# needs several epochs to rank well (at 10 epochs the share froze with recall ~0.6).
CONFIG = TrainConfig(epochs=20, batch_size=64, lr=2e-3)
SHORT = CONFIG.model_copy(update={"epochs": 3})


def _model(task, name="cnn-small", **args):
    torch.manual_seed(0)
    return create_model(name, task, **({"width": 16, "features": 32} if name == "cnn-small"
                                       else {}) | args)


@pytest.fixture(scope="module")
def setting(digits):
    attack = create_attack("badnets", digits.task, target=0)
    return attack, attack.poison(digits.train, 0.1, seed=0)


@pytest.fixture(scope="module")
def plain(digits, setting):
    from backdoorguard.core.runtime import Runtime

    attack, poisoned = setting
    model = _model(digits.task)
    fit(model, poisoned, CONFIG, runtime=Runtime(seed=0, device="cpu", threads=1, progress=False))
    return evaluate(model, digits.test, attack)


def test_plain_training_learns_the_backdoor(plain):
    assert plain.asr > 0.95 and plain.clean_acc > 0.97


def test_abl_isolates_mostly_poison_and_unlearns_it(digits, setting, runtime):
    # Six isolation epochs ranked on all six: with the default four (ranked on
    # the last three) the isolation precision on this setting swings with the
    # numerical path — 0.0, 0.64, 1.0, 0.14, 0.50 over runtime seeds 0-4 on one
    # machine — while six ranked on all six gave 0.57-1.0 (docs/abl.md).
    attack, poisoned = setting
    trained = ABL(train=CONFIG, isolation_epochs=6, rank_epochs=6).fit(
        _model(digits.task), poisoned, runtime=runtime)
    assert len(trained.isolated) == round(0.01 * len(poisoned))
    found = isolation(trained.isolated, poisoned)
    assert found["precision"] >= 0.5, found        # poison rate 0.1: chance is 0.1
    # the isolated poison no longer gets its (target) label
    poison = [i for i in trained.isolated if i in set(poisoned.poison_index.tolist())]
    predicted = trained.model(poisoned.x[poison]).argmax(1)
    assert (predicted != 0).float().mean() >= 0.8
    phases = [record["phase"] for record in trained.details["history"]]
    assert phases[0] == "isolation" and phases[-1] == "unlearning"
    assert phases.count("isolation") == 6 and phases.count("training") == 14
    assert evaluate(trained.model, digits.test).clean_acc > 0.9


def test_e2abl_removes_the_backdoor_at_plain_clean_accuracy(digits, setting, plain, runtime,
                                                           tmp_path):
    attack, poisoned = setting
    trained = E2ABL(train=CONFIG).fit(_model(digits.task), poisoned, runtime=runtime)
    metrics = evaluate(trained.model, digits.test, attack)
    assert metrics.asr <= plain.asr - 0.5, (metrics.asr, plain.asr)
    assert metrics.clean_acc >= plain.clean_acc - 0.02
    found = isolation(trained.isolated, poisoned)
    assert found["recall"] >= 0.8 and found["precision"] >= 0.3, found
    assert trained.cost.passes == pytest.approx(20.0)
    # inference uses the main head only: the model is a plain cnn-small, trap-free
    assert not any(m._forward_hooks for m in trained.model.modules())
    save_model(trained.model, tmp_path, digits.task)
    loaded, _ = load_model(tmp_path)
    reference = _model(digits.task)
    assert set(loaded.state_dict()) == set(reference.state_dict())
    assert not any("trap" in key for key in loaded.state_dict())
    assert torch.equal(loaded(digits.test.x[:16]), trained.model.cpu()(digits.test.x[:16]))


def _cleansing_round(**params):
    """One E2ABL cleansing round after the freeze on 20 tiny samples: suspects 0
    and 1, the main head confidently puts sample 0 in class 2 and is unsure of
    sample 1; samples 0, 5 and 7 have the highest main-head losses."""
    from types import SimpleNamespace

    from backdoorguard.core.types import ArrayDataset
    from backdoorguard.defenses.training.trap import Trap, TrapAndCleanse

    task = TaskSpec("classification", "image", (1, 4, 4), 3)
    data = ArrayDataset(torch.zeros(20, 1, 4, 4), torch.zeros(20, dtype=torch.long), task)
    defense = E2ABL(train=SHORT, ramp_epochs=1, **params)
    run = TrapAndCleanse(defense, Trap(1, 2, 3, 1, ("max",), False), data, 3, torch.device("cpu"))
    run.frozen, run.suspects = True, torch.tensor([0, 1])
    run.prediction[0], run.confidence[0] = 2, 1.0
    run.prediction[1], run.confidence[1] = 1, 0.6
    run.main_loss[:] = torch.linspace(0.1, 0.2, 20)
    run.main_loss[0], run.main_loss[5], run.main_loss[7] = 9.0, 5.0, 4.0
    run.on_epoch_end(SimpleNamespace(epoch=2))
    return run


def test_after_the_freeze_the_highest_main_losses_leave_the_main_loss():
    run = _cleansing_round(high_loss_share=0.1)          # 10 % of 20: two samples
    assert run.labels[0] == 2 and run.weight[0] == 1.0   # relabelled, trained, not dropped
    assert run.weight[1] == 0.0                          # an unconfirmed suspect: dropped
    assert run.weight[5] == 0.0 and run.weight[7] == 0.0  # the two highest of the rest
    assert int((run.weight == 0).sum()) == 3
    assert run.suspects.tolist() == [0, 1]               # dropped for a round, not flagged
    assert run.rounds[-1]["loss_dropped"] == 2
    # the main head confirmed suspect 0 (relabelled it): it is unlearnt too
    assert run.confirmed[0] and not run.confirmed[1]
    off = _cleansing_round(high_loss_share=0.0, unlearn_recovered=False)
    assert int((off.weight == 0).sum()) == 1 and not off.confirmed[0]


def _guarded_round(target=0, rounds_low=0, **params):
    """One cleansing round after the freeze on 30 samples of 3 classes (10 each),
    10 % unlearnt. Suspects 0 and 1 (class 0) and 10 (class 1) are being unlearnt; the main head
    puts all three in class 2, and also puts the non-suspects 11-13 of class 1 in
    class 2, which it got right at the freeze."""
    from types import SimpleNamespace

    from backdoorguard.core.types import ArrayDataset
    from backdoorguard.defenses.training.trap import Trap, TrapAndCleanse

    task = TaskSpec("classification", "image", (1, 4, 4), 3)
    given = torch.arange(30) // 10
    data = ArrayDataset(torch.zeros(30, 1, 4, 4), given, task)
    defense = E2ABL(train=SHORT, ramp_epochs=1, high_loss_share=0.0, unlearn_share=0.1, **params)
    run = TrapAndCleanse(defense, Trap(1, 2, 3, 1, ("max",), False), data, 3, torch.device("cpu"))
    run.frozen, run.suspects = True, torch.tensor([0, 1, 10])
    run.best, run.target, run.target_low = torch.ones(3), target, rounds_low
    run.score = torch.linspace(0, 1, 30)         # trap scores: sample 0 lowest
    run.confirmed[[0, 1, 10]] = True
    run.confidence[:] = 1.0
    run.prediction[[0, 1, 10, 11, 12, 13]] = 2
    run.on_epoch_end(SimpleNamespace(epoch=2))
    return run


def test_the_class_guard_stops_unlearning_a_class_it_is_hurting(monkeypatch):
    import backdoorguard.defenses.training.trap as trap_module

    # class 1's held accuracy fell from its best, 1.0, to 6/9: its suspect is a clean
    # sample the trap took for poison, so class 1 is spared and its suspect released
    # (trained with its given label, no longer unlearnt); class 0 is not hurt and its
    # suspects stay unlearnt and relabelled (true-class recovery)
    run = _guarded_round()
    assert run.spared.tolist() == [False, True, False]
    assert run.rounds[-1]["spared"] == [1]
    assert run.suspects.tolist() == [0, 1]
    assert run.confirmed[0] and run.confirmed[1] and not run.confirmed[10]
    assert run.labels[0] == 2 and run.labels[10] == 1 and run.weight[10] == 1.0
    # the unlearnt share (10 %: 3 samples) is refilled from the other classes
    assert run.confirmed[2] and int(run.confirmed.sum()) == 3
    # the class holding the most suspects at the freeze is the presumed target: some
    # of its clean accuracy is the price of unlearning the backdoor, so it is spared
    # only past the wider `target_guard`, after losing TARGET_GUARD_SAMPLES (10) held
    # samples, for TARGET_GUARD_EPOCHS (2) rounds in a row. Class 1 lost a third of
    # its 9 held samples here: 3, too few
    kept = _guarded_round(target=1, target_guard=0.3)
    assert not kept.spared.any() and kept.confirmed[10] and kept.labels[10] == 2
    assert kept.reading["target_low"] == 0
    monkeypatch.setattr(trap_module, "TARGET_GUARD_SAMPLES", 3)
    dip = _guarded_round(target=1, target_guard=0.3)          # low for one round: a dip
    assert not dip.spared.any() and dip.reading["target_low"] == 1
    collapsed = _guarded_round(target=1, target_guard=0.3, rounds_low=1)
    assert collapsed.spared.tolist() == [False, True, False] and not collapsed.confirmed[10]
    kept = _guarded_round(target=1, target_guard=0.4, rounds_low=1)   # a third is not past 0.4
    assert not kept.spared.any() and kept.confirmed[10] and kept.labels[10] == 2
    off = _guarded_round(class_guard=1.0)
    assert not off.spared.any() and off.confirmed[10] and off.labels[10] == 2
    assert {11, 12, 13} <= set(off.suspects.tolist())


def test_e2abl_neutralises_the_poison_its_trap_missed(digits, setting, runtime):
    # The digits recipe (cnn-small width 32, 30 epochs). The trap misses about a
    # sixth of the poison here (most of the triggered 5s and 6s) and, with only
    # its suspects cleansed, those keep the backdoor alive (ASR ≈ 0.4). Dropping
    # the highest main losses after the freeze and unlearning what the main head
    # relabelled take them out (docs/e2abl.md).
    attack, poisoned = setting
    recipe = TrainConfig(epochs=30, batch_size=64, lr=2e-3)
    found = {}
    for name, params in (("suspects only", {"high_loss_share": 0.0, "unlearn_recovered": False}),
                         ("defaults", {})):
        torch.manual_seed(0)
        trained = E2ABL(train=recipe, **params).fit(create_model("cnn-small", digits.task),
                                                    poisoned, runtime=runtime)
        found[name] = evaluate(trained.model, digits.test, attack)
    assert found["suspects only"].asr >= 0.3, found
    assert found["defaults"].asr <= 0.1, found
    assert found["defaults"].clean_acc >= found["suspects only"].clean_acc - 0.02, found


@pytest.mark.parametrize("method", ["abl", "e2abl"])
def test_same_seed_gives_identical_weights(method, digits, setting, runtime):
    _, poisoned = setting
    runs = [create_defense(method, "training", train=SHORT, **(
        {"isolation_epochs": 1, "rank_epochs": 1} if method == "abl" else {"ramp_epochs": 1}))
        .fit(_model(digits.task), poisoned, runtime=runtime) for _ in range(2)]
    assert runs[0].isolated == runs[1].isolated
    for (name, a), b in zip(runs[0].model.state_dict().items(), runs[1].model.state_dict().values()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("name, shape, expected", [
    ("resnet1d", (2, 40), "stages.0"), ("preact-resnet18", (1, 16, 16), "stages.0")])
def test_trap_attaches_to_the_first_stage_of_each_family(name, shape, expected):
    kind = "series" if len(shape) == 2 else "image"
    task = TaskSpec("classification", kind, shape, 3)
    model = create_model(name, task, **({"width": 4} if name != "resnet1d" else {"width": 4}))
    stage = E2ABL().attachment(model)
    assert stage is dict(model.named_modules())[expected]
    with pytest.raises(BadInput, match="trap_stage 9 is out of range"):
        E2ABL(trap_stage=9).attachment(model)


def test_a_model_without_stages_is_refused(digits, setting, runtime):
    _, poisoned = setting
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    with pytest.raises(BadInput, match="needs a model with `stages`"):
        E2ABL(train=SHORT).fit(model, poisoned, runtime=runtime)


@pytest.mark.parametrize("method, params, message", [
    ("abl", {"isolation_share": 0.0}, "isolation_share 0.0 is out of range; allowed: 0 < share < 1"),
    ("abl", {"stop_acc": 1.5}, "stop_acc 1.5 is out of range; allowed: 0 ≤ stop_acc ≤ 1"),
    ("abl", {"train": {"epochs": -1}}, "epochs"),
    ("abl", {"lr": 0.1}, "has no parameter 'lr'"),
    ("e2abl", {"trap_pooling": "median"}, "trap_pooling 'median' is out of range; allowed: one of"),
    ("e2abl", {"poison_rate_guess": 0.6}, "poison_rate_guess 0.6"),
    ("e2abl", {"relabel_confidence": 0.0}, "relabel_confidence 0.0"),
    ("e2abl", {"trap_steps": 0}, "trap_steps 0"),
    ("e2abl", {"trap_input_steps": "yes"},
     "trap_input_steps 'yes' is out of range; allowed: true, false or auto"),
    ("e2abl", {"trap_input_steps": 1}, "trap_input_steps 1 is out of range"),
    ("e2abl", {"trap_pooling": "none"}, r"\(none only with trap_input_steps=true\)"),
    ("e2abl", {"unlearn_share": 0.3}, "unlearn_share 0.3 is out of range"),
    ("e2abl", {"high_loss_share": 0.5}, "high_loss_share 0.5 is out of range; allowed: 0 ≤ share < 0.5"),
    ("e2abl", {"class_guard": -0.1}, "class_guard -0.1 is out of range; allowed: 0 ≤ drop ≤ 1"),
    ("e2abl", {"target_guard": 1.5},
     r"target_guard 1.5 is out of range; allowed: 0 ≤ drop ≤ 1 \(1: the presumed target is "
     r"never spared\)"),
    ("e2abl", {"trap_segments": -1}, "trap_segments -1 is out of range; allowed: an integer ≥ 0"),
])
def test_bad_parameters_are_refused_up_front(method, params, message):
    with pytest.raises(BadInput, match=message):
        create_defense(method, "training", **params)


def test_regression_is_refused(runtime):
    from backdoorguard.core.types import ArrayDataset

    task = TaskSpec("regression", "image", (1, 8, 8), 1, label_range=((0, 1),))
    data = ArrayDataset(torch.zeros(4, 1, 8, 8), torch.zeros(4, 1), task)
    with pytest.raises(BadInput):
        ABL().fit(create_model("cnn-small", task, width=4), data, runtime=runtime)


def _blended_series(seed=0):
    """200 smooth 1×64 series of two classes (a slow wave, its phase set by the
    class) with 20 class-1 series blended with one fixed noise pattern (α 0.15)
    and labelled 0: a global additive trigger, no local patch."""
    from backdoorguard.core.types import ArrayDataset

    g = torch.Generator().manual_seed(seed)
    y = torch.arange(200) % 2
    t = torch.linspace(0, 1, 64)
    phase = y.float()[:, None] * 1.5 + 0.3 * torch.randn(200, 1, generator=g)
    x = torch.sin(2 * torch.pi * 2 * t + phase) + 0.1 * torch.randn(200, 1, generator=g)
    x = x[:, None, :]
    pattern = 2 * torch.rand(1, 64, generator=g) - 1
    poison = torch.nonzero(y == 1).flatten()[:20]
    x[poison] = 0.85 * x[poison] + 0.15 * pattern
    y = y.clone()
    y[poison] = 0
    task = TaskSpec("classification", "series", (1, 64), 2)
    return ArrayDataset(x, y, task), poison


@pytest.mark.parametrize("steps_head, pooling", [(True, "both"), (True, "none"), (False, "both")])
def test_the_input_steps_head_ranks_a_blended_series_poison_lowest(steps_head, pooling):
    # The shallow trap's pooled features barely see a global additive pattern on
    # series (GunPoint Blended: max head AUROC 0.01-0.5, docs/e2abl.md); the steps
    # of the raw input do. Five epochs of the trap alone on resnet1d's first block.
    from backdoorguard.core.metrics import auroc
    from backdoorguard.core.types import Batch
    from backdoorguard.defenses.training.trap import TrapAndCleanse

    data, poison = _blended_series()
    model = _model(data.task, "resnet1d", width=8)
    defense = E2ABL(train=SHORT, trap_input_steps=steps_head, trap_pooling=pooling)
    stage = defense.attachment(model)
    trap = defense.build_trap(model, stage, data, torch.device("cpu"), seed=0)
    run = TrapAndCleanse(defense, trap, data, 5, torch.device("cpu"))
    handle = stage.register_forward_hook(run.capture)
    is_poison = torch.zeros(len(data), dtype=torch.bool)
    is_poison[poison] = True
    try:
        g = torch.Generator().manual_seed(0)
        for _ in range(5):
            for index in torch.randperm(len(data), generator=g).split(16):
                with torch.no_grad():
                    model(data.x[index])
                run.after_step(None, Batch(data.x[index], data.y[index], index), None)
    finally:
        handle.remove()
    heads = dict(zip(trap.pooling, run.trap_loss.T))
    assert set(heads) == ({"max", "avg"} if pooling == "both" else set()) | (
        {"steps"} if steps_head else set())
    if steps_head:
        assert auroc(-heads["steps"], is_poison) > 0.95
        # the lowest 10 % of its losses are poison
        assert is_poison[heads["steps"].argsort()[:20]].float().mean() >= 0.9
    else:   # what the pooled heads see of it: far from a ranking
        assert max(auroc(-loss, is_poison) for loss in heads.values()) < 0.9


def test_the_input_steps_head_refuses_inputs_too_short_for_steps():
    from backdoorguard.core.types import ArrayDataset

    task = TaskSpec("classification", "series", (1, 2), 2)
    data = ArrayDataset(torch.zeros(4, 1, 2), torch.zeros(4, dtype=torch.long), task)
    model = create_model("resnet1d", task, width=4)
    defense = E2ABL(trap_input_steps=True)
    with pytest.raises(BadInput, match="trap_input_steps needs inputs at least 3 long"):
        defense.build_trap(model, defense.attachment(model), data, torch.device("cpu"), seed=0)
    # the automatic setting does not ask for what such inputs cannot give
    auto = E2ABL()
    assert not auto.profile(data).trap_input_steps
    varied = ArrayDataset(torch.randn(4, 1, 2), data.y, task)
    assert auto.profile(varied).smoothness == pytest.approx(2.0)
    assert not auto.profile(varied).trap_input_steps
    trap = auto.build_trap(model, auto.attachment(model), data, torch.device("cpu"), seed=0)
    assert "steps" not in trap.pooling


def _series_sets(seed=0):
    """Two 60-series sets of 3×100 in 2 classes: smooth (slow waves, a little noise,
    like GunPoint's hand positions) and jerky (a slow wave under bursts of fast
    changes, like BasicMotions' accelerometers)."""
    from backdoorguard.core.types import ArrayDataset

    g = torch.Generator().manual_seed(seed)
    y = torch.arange(60) % 2
    t = torch.linspace(0, 1, 100)
    wave = torch.sin(2 * torch.pi * (1 + y.float())[:, None, None] * t
                     + torch.rand(60, 3, 1, generator=g) * 6)
    smooth = wave + 0.02 * torch.randn(60, 3, 100, generator=g)
    bursts = (torch.rand(60, 3, 100, generator=g) < 0.5).float()
    jerky = wave + bursts * torch.randn(60, 3, 100, generator=g)
    task = TaskSpec("classification", "series", (3, 100), 2)
    return ArrayDataset(smooth, y, task), ArrayDataset(jerky, y.clone(), task)


def test_smoothness_separates_smooth_series_from_jerky_ones_and_shrugs_off_a_poison():
    from backdoorguard.defenses.training.e2abl import SMOOTH_BELOW
    from backdoorguard.defenses.training.trap import roughness, smoothness

    smooth, jerky = _series_sets()
    assert smoothness(smooth.x) < SMOOTH_BELOW / 4 and smoothness(jerky.x) > 2 * SMOOTH_BELOW
    # white noise is ~1, a constant channel is left out rather than counted as smooth
    assert abs(float(roughness(torch.randn(1, 1, 5000)).item()) - 1) < 0.05
    assert roughness(torch.zeros(2, 1, 10)).isnan().all()
    # 10 % of the smooth set blended with a noise pattern (α 0.3) or replaced by
    # pure noise: their own roughness rises, the set's median stays within the
    # clean series' 40th-60th percentiles, far below the threshold
    clean = roughness(smooth.x)
    x = smooth.x.clone()
    noise = torch.randn(6, 3, 100, generator=torch.Generator().manual_seed(1))
    x[:6] = 0.7 * x[:6] + 0.3 * noise
    assert roughness(x[:6]).min() > 5 * clean.max()
    for poisoned in (x, torch.cat([noise, smooth.x[6:]])):
        assert clean.quantile(0.4) <= smoothness(poisoned) <= clean.quantile(0.6)
        assert smoothness(poisoned) < SMOOTH_BELOW / 4


def test_auto_turns_the_steps_head_and_larger_unlearning_on_for_smooth_series_only(runtime):
    from backdoorguard.core.types import ArrayDataset

    smooth, jerky = _series_sets()
    auto = E2ABL(train=SHORT)
    assert auto.trap_input_steps == "auto"
    on, off = auto.profile(smooth), auto.profile(jerky)
    assert on.trap_input_steps and on.unlearn_share == 0.1 and on.smoothness < 0.2
    assert not off.trap_input_steps and off.unlearn_share == 0.02 and off.smoothness > 0.2
    # given values win; images are never profiled
    assert E2ABL(unlearn_share=0.04).profile(smooth).unlearn_share == 0.04
    given = E2ABL(trap_input_steps=False).profile(smooth)
    assert not given.trap_input_steps and given.smoothness is None and given.unlearn_share == 0.02
    image = ArrayDataset(smooth.x[:, :1, :, None].expand(-1, -1, -1, 8).contiguous(), smooth.y,
                         TaskSpec("classification", "image", (1, 100, 8), 2))
    assert not auto.profile(image).trap_input_steps and auto.profile(image).smoothness is None
    # the run builds the trap the profile says and records the decision
    for data, steps in ((smooth, True), (jerky, False)):
        trained = auto.fit(_model(data.task, "resnet1d", width=4), data, runtime=runtime)
        details = trained.to_dict()["details"]
        assert details["trap_input_steps"] is steps
        assert details["unlearn_share"] == (0.1 if steps else 0.02)
        assert (details["smoothness"] < 0.2) is steps and "roughness" in details["decided_by"]
        model = _model(data.task, "resnet1d", width=4)
        trap = auto.build_trap(model, auto.attachment(model), data, torch.device("cpu"), seed=0)
        assert ("steps" in trap.pooling) is steps


def test_the_segments_head_sees_position_and_its_highest_losses_are_suspects():
    # max and average pooling cannot tell two maps apart that hold the same values in
    # other places; the segments head (features pooled to 2 pieces) can
    from backdoorguard.core.types import ArrayDataset
    from backdoorguard.defenses.training.trap import Trap, TrapAndCleanse

    early = torch.tensor([[[1.0, 1.0, 0.0, 0.0]]])
    late = early.flip(-1)
    trap = Trap(1, 1, 2, 1, ("max", "avg"), False, segments=2)
    assert trap.pooling == ("max", "avg", "segments")
    assert trap(torch.cat([early, late])).shape == (2, 3, 2)
    assert trap.heads[2].in_features == 2
    assert torch.equal(early.amax(-1), late.amax(-1)) and torch.equal(early.mean(-1), late.mean(-1))
    features = torch.cat([early] * 8 + [late] * 8)
    labels = torch.tensor([0] * 8 + [1] * 8)
    optimizer = torch.optim.Adam(trap.parameters(), lr=0.1)
    for _ in range(200):
        loss = torch.nn.functional.cross_entropy(trap(features).flatten(0, 1),
                                                 labels.repeat_interleave(3))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    logits = trap(features)
    assert (logits[:, 2].argmax(1) == labels).all()          # the segments head: position
    assert not (logits[:, 0].argmax(1) == labels).all()      # the max head cannot

    # ranking: with trap_segments_rank="high" or "extra" the segments head's highest losses are
    # suspects (a relabelled sample whose trigger it cannot represent is label noise to
    # it), its lowest with "low"; the max head's lowest losses are suspects either way
    task = TaskSpec("classification", "series", (1, 4), 2)
    data = ArrayDataset(torch.zeros(20, 1, 4), torch.arange(20) % 2, task)
    # "extra": the max head alone fills the share (its two lowest, 3 and 0) and the
    # segments head's highest loss comes on top (share / 2: one sample)
    for rank, expected in (("high", {3, 17}), ("low", {3, 5}), ("extra", {0, 3, 17})):
        defense = E2ABL(train=SHORT, trap_segments=2, trap_segments_rank=rank,
                        poison_rate_guess=0.05, start_share=0.1, ramp_epochs=1)
        run = TrapAndCleanse(defense, Trap(1, 1, 2, 1, ("max",), False, segments=2), data, 3,
                             torch.device("cpu"), unlearn_share=0.0)
        run.trap_loss[:, 0] = torch.linspace(1.0, 2.0, 20)
        run.trap_loss[3, 0] = 0.0                             # the max head's lowest
        run.trap_loss[:, 1] = torch.linspace(1.0, 2.0, 20)
        run.trap_loss[5, 1], run.trap_loss[17, 1] = 0.0, 9.0  # the segments head's extremes
        run.rank(0)
        assert set(run.suspects.tolist()) == expected
        # the unlearnt come from the other heads' ranking only
        if rank == "extra":
            assert run.score.argsort()[0] == 3
    off = E2ABL(train=SHORT)
    assert off.trap_segments == 0
    with pytest.raises(BadInput, match="trap_segments_rank 'mid' is out of range"):
        E2ABL(trap_segments=2, trap_segments_rank="mid")
