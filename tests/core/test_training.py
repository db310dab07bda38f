import pytest
import torch

from backdoorguard.config import TrainConfig
from backdoorguard.core.metrics import evaluate
from backdoorguard.core.training import Hook, StepLoss, fit, sample_losses, task_loss
from backdoorguard.core.types import TaskSpec
from backdoorguard.models import create_model

FAST = TrainConfig(epochs=3, batch_size=64, lr=2e-3)


def _model(task, seed=0):
    torch.manual_seed(seed)
    return create_model("cnn-small", task, width=8, features=32)


def test_training_learns_digits(digits, runtime):
    model = _model(digits.task)
    history = fit(model, digits.train, FAST, runtime=runtime)
    assert history.epochs[-1]["loss"] < history.epochs[0]["loss"]
    assert evaluate(model, digits.test).clean_acc > 0.85
    assert history.passes == pytest.approx(3.0)


def test_same_seed_gives_identical_weights(digits, runtime):
    a, b = _model(digits.task), _model(digits.task)
    fit(a, digits.train, FAST, runtime=runtime)
    fit(b, digits.train, FAST, runtime=runtime)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name


def test_different_shuffle_seed_changes_the_run(digits, runtime):
    from dataclasses import replace

    a, b = _model(digits.task), _model(digits.task)
    fit(a, digits.train, FAST, runtime=runtime)
    fit(b, digits.train, FAST, runtime=replace(runtime, seed=1))
    assert not torch.equal(a.head.weight, b.head.weight)


def test_only_chosen_parameters_train(digits, runtime):
    model = _model(digits.task)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fit(model, digits.train, FAST.model_copy(update={"epochs": 1}),
        parameters=list(model.head.parameters()), runtime=runtime)
    after = model.state_dict()
    assert not torch.equal(before["head.weight"], after["head.weight"])
    conv = "stages.0.0.weight"
    assert torch.equal(before[conv], after[conv])
    assert all(p.requires_grad for p in model.parameters()), "freezing must be undone"


def test_hooks_see_every_step_and_can_stop(digits, runtime):
    class Counter(Hook):
        steps = 0
        epochs = 0

        def after_step(self, state, batch, step):
            Counter.steps += 1

        def on_epoch_end(self, state):
            Counter.epochs += 1
            state.stop = state.epoch == 1

    model = _model(digits.task)
    history = fit(model, digits.train, FAST.model_copy(update={"epochs": 5}),
                  hooks=[Counter()], runtime=runtime)
    assert Counter.epochs == 2 and len(history.epochs) == 2
    assert Counter.steps == 2 * digits.train.num_batches(64)


def test_custom_objective_and_per_sample_losses(digits, runtime):
    seen = {}

    class Keep(Hook):
        def on_epoch_end(self, state):
            seen["losses"] = state.sample_losses.clone()

    loss = task_loss(digits.task)

    def ascent(model, batch):  # gradient ascent: the loss must grow
        per_sample = loss(model(batch.x), batch.y)
        return StepLoss(-per_sample.mean(), per_sample)

    model = _model(digits.task)
    start = sample_losses(model, digits.train).mean()
    fit(model, digits.train, FAST.model_copy(update={"epochs": 1}), objective=ascent,
        hooks=[Keep()], runtime=runtime)
    assert sample_losses(model, digits.train).mean() > start
    assert not torch.isnan(seen["losses"]).any(), "every sample's loss is recorded"


def test_regression_loss_is_unit_free():
    task_deg = TaskSpec("regression", "tabular", (2,), 1, label_range=((0, 100),))
    task_unit = TaskSpec("regression", "tabular", (2,), 1, label_range=((0, 1),))
    out, y = torch.tensor([[50.0]]), torch.tensor([[40.0]])
    assert task_loss(task_deg)(out, y).item() == pytest.approx(
        task_loss(task_unit)(out / 100, y / 100).item())


def test_evaluate_every_adds_metrics(digits, runtime):
    model = _model(digits.task)
    history = fit(model, digits.train, FAST, runtime=runtime, evaluate_every=1,
                  evaluate=lambda m: {"test_acc": evaluate(m, digits.test).clean_acc})
    assert all("test_acc" in record for record in history.epochs)


def test_a_stop_set_after_a_step_ends_training_there(digits, runtime):
    class StopAtThird(Hook):
        steps = 0

        def after_step(self, state, batch, step):
            StopAtThird.steps += 1
            state.stop = state.step == 3

    history = fit(_model(digits.task), digits.train, FAST, hooks=[StopAtThird()], runtime=runtime)
    assert StopAtThird.steps == 3 and history.steps == 3
    assert len(history.epochs) == 1 and history.samples_seen == 3 * 64


def test_a_stop_set_at_fit_start_trains_nothing(digits, runtime):
    class StopAtOnce(Hook):
        def on_fit_start(self, state):
            state.stop = True

    model = _model(digits.task)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    history = fit(model, digits.train, FAST, hooks=[StopAtOnce()], runtime=runtime)
    assert history.steps == 0 and history.epochs == []
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
