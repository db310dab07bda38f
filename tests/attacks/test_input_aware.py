import pytest
import torch

from backdoorguard.attacks import create_attack
from backdoorguard.config import TrainConfig
from backdoorguard.core.metrics import evaluate
from backdoorguard.errors import BadInput
from backdoorguard.models import create_model


@pytest.fixture(scope="module")
def trained(digits):
    from backdoorguard.core.runtime import Runtime

    torch.manual_seed(0)
    model = create_model("cnn-small", digits.task, width=16, features=64)
    attack = create_attack("input-aware", digits.task, target=0, mask_epochs=3, width=8)
    config = TrainConfig(epochs=6, batch_size=64, lr=2e-3)
    attack.train_model(model, digits.train, config, 0.2,
                       Runtime(seed=0, device="cpu", threads=1, progress=False))
    return model, attack


def test_needs_training_before_use(digits):
    attack = create_attack("input-aware", digits.task)
    with pytest.raises(BadInput, match="learnt"):
        attack.apply(digits.test.x[:2])
    with pytest.raises(BadInput, match="train a model"):
        attack.poison(digits.train, 0.1, seed=0)


def test_triggers_are_per_input_and_sparse(trained, digits):
    _, attack = trained
    x = digits.test.x[:64]
    with torch.no_grad():
        masks = attack._mask(x)
        patterns = attack._pattern(x)
    assert masks.mean() < 3 * attack.mask_density
    assert (patterns[0] - patterns[1]).abs().mean() > 0.05, "different inputs, different triggers"
    out = attack.apply(x)
    assert out.min() >= 0 and out.max() <= 1


def test_backdoor_works_and_cross_triggers_do_not(trained, digits):
    model, attack = trained
    result = evaluate(model, digits.test, attack)
    assert result.clean_acc > 0.9 and result.asr > 0.8
    # a trigger made for another input should not fire (the cross-trigger mode)
    keep = digits.test.y != 0
    x = digits.test.x[keep]
    with torch.no_grad():
        crossed = attack._stamp(x, torch.roll(x, 1, 0))
        cross_asr = (model(crossed).argmax(1) == 0).float().mean().item()
    assert cross_asr < result.asr - 0.3


def test_learnt_state_round_trips(trained, digits):
    _, attack = trained
    fresh = create_attack("input-aware", digits.task, target=0, mask_epochs=3, width=8, seed=5)
    fresh.load_tensors(attack.tensors())
    x = digits.test.x[:16]
    assert torch.equal(fresh.apply(x), attack.apply(x))


def saturated_run(data, runtime):
    """Input-aware with both generators pushed into saturation, trained one epoch."""
    attack = create_attack("input-aware", data.task, mask_epochs=1, width=4)
    with torch.no_grad():
        attack.mask_net.decode[-1].bias.fill_(-30.0)
        attack.pattern_net.decode[-1].bias.fill_(30.0)
    masks = attack._mask(data.train.x[:2])
    assert torch.equal(masks[0], masks[1]), "the set-up must saturate the mask"
    with torch.random.fork_rng():  # leave the global generator as later tests expect it
        torch.manual_seed(0)
        model = create_model("cnn-small", data.task, width=4, features=8)
        attack.train_model(model, data.train, TrainConfig(epochs=1, batch_size=16, loss="l1"),
                           0.25, runtime)
    return model, attack


def test_a_saturated_generator_does_not_turn_training_into_nan(runtime):
    # Regression task on eye patches. A mask generator pushed far below zero gives
    # every pixel of every input the same mask value in float32, so two inputs get
    # identical masks; the diversity loss's root of 0 once sent NaN through Adam
    # into every weight (synthgaze's benchmark cell ended with MAE NaN).
    from backdoorguard.data import load_dataset

    data = load_dataset("synthgaze:64")
    model, attack = saturated_run(data, runtime)
    for net in (model, attack.mask_net, attack.pattern_net):
        assert all(torch.isfinite(p).all() for p in net.parameters())
    assert torch.isfinite(model(attack.apply(data.test.x[:8]))).all()
    # and the same seed gives the same weights, bit for bit
    again, _ = saturated_run(data, runtime)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                  again.state_dict().values()))
