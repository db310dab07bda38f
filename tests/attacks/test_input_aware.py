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
