import pytest
import torch

from backdoorguard.core.types import TaskSpec
from backdoorguard.errors import BadInput
from backdoorguard.models import check_convention, create_model, has_convention, skip_connections

CASES = [
    ("cnn-small", TaskSpec("classification", "image", (1, 28, 28), 10), {}, 0),
    ("cnn-small", TaskSpec("regression", "image", (1, 36, 60), 2,
                           label_range=((-20, 20), (-30, 30))), {"width": 8}, 0),
    ("preact-resnet18", TaskSpec("classification", "image", (3, 16, 16), 10), {"width": 8}, 8),
    ("resnet1d", TaskSpec("classification", "series", (6, 100), 4), {"width": 8}, 3),
    ("resnet1d", TaskSpec("regression", "series", (1, 84), 1, label_range=((0, 1),)), {"width": 8}, 3),
    ("mlp", TaskSpec("regression", "tabular", (5,), 1, label_range=((0, 2),)), {"hidden": [16, 16]}, 0),
]


@pytest.mark.parametrize("name, task, args, n_skips", CASES)
def test_convention_and_shapes(name, task, args, n_skips):
    torch.manual_seed(0)
    model = create_model(name, task, **args).eval()
    x = torch.rand(3, *task.input_shape)
    assert has_convention(model)
    out = model(x)
    assert out.shape == (3, task.num_outputs)
    assert torch.equal(out, model.head(model.forward_features(x)))
    stages = model.forward_stages(x)
    assert len(stages) == len(model.stages)
    assert len(skip_connections(model)) == n_skips
    if task.kind == "regression":
        centre = torch.tensor([(lo + hi) / 2 for lo, hi in task.label_range])
        assert torch.equal(model.head.bias.detach(), centre)


@pytest.mark.parametrize("name, task, args, n_skips", [c for c in CASES if c[3]])
def test_skip_scale(name, task, args, n_skips):
    torch.manual_seed(0)
    model = create_model(name, task, **args).eval()
    x = torch.rand(3, *task.input_shape)
    _, block = skip_connections(model)[0]
    captured = {}
    handle = block.register_forward_hook(lambda m, i, o: captured.update(out=o))
    reference = model(x)
    full = captured["out"]
    # gamma = 1 is exactly the plain residual block: recompute it without the scale
    block.skip_scale.fill_(0.0)
    model(x)
    residual_only = captured["out"]
    handle.remove()
    assert not torch.equal(full, residual_only), "the scale must reach the shortcut"
    block.skip_scale.fill_(1.0)
    assert torch.equal(model(x), reference)
    assert "skip_scale" in dict(block.named_buffers())
    assert any(k.endswith("skip_scale") for k in model.state_dict())


@pytest.mark.parametrize("name, task, message", [
    ("cnn-small", TaskSpec("classification", "series", (1, 50), 2), "supports"),
    ("resnet1d", TaskSpec("classification", "image", (1, 8, 8), 2), "supports"),
    ("mlp", TaskSpec("classification", "image", (1, 8, 8), 2), "supports"),
    ("cnn-small", TaskSpec("classification", "image", (1, 2, 2), 2), "at least 4×4"),
])
def test_wrong_inputs_are_refused(name, task, message):
    with pytest.raises(BadInput, match=message):
        create_model(name, task)


def test_bad_arguments():
    task = TaskSpec("classification", "image", (1, 8, 8), 10)
    with pytest.raises(BadInput, match="bad arguments"):
        create_model("cnn-small", task, depth=3)


class _NoHead(torch.nn.Module):
    def forward_features(self, x):
        return x.flatten(1)


@pytest.mark.parametrize("model, missing", [
    (torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2)), "no forward_features"),
    (_NoHead(), "no nn.Linear head"),
])
def test_check_convention_names_the_method_and_what_is_missing(model, missing):
    check_convention(create_model("mlp", CASES[-1][1]), "sms")  # our models pass
    with pytest.raises(BadInput, match=f"^sms needs a model with forward_features.*{missing}$"):
        check_convention(model, "sms")
