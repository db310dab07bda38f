import json
import os

import pytest
import torch

from backdoorguard.core import checkpoint
from backdoorguard.core.checkpoint import (atomic_output, load_model, load_user_model,
                                           save_model, write_json_atomic)
from backdoorguard.errors import BadInput
from backdoorguard.models import create_model


@pytest.fixture
def saved(digits, tmp_path):
    torch.manual_seed(0)
    model = create_model("cnn-small", digits.task, width=8, features=16)
    # non-trivial BatchNorm statistics, so buffers are part of the round trip
    model.train()
    model(digits.train.x[:64])
    model.eval()
    save_model(model, tmp_path, digits.task, card={"metrics": {"clean_acc": 0.5}})
    return model, tmp_path


def test_round_trip_is_bit_exact(saved, digits):
    model, path = saved
    loaded, card = load_model(path)
    assert card["model"] == {"name": "cnn-small", "args": {"width": 8, "features": 16}}
    assert card["metrics"] == {"clean_acc": 0.5}
    with torch.no_grad():
        assert torch.equal(model(digits.test.x), loaded(digits.test.x))


def test_changed_weights_file_is_detected(saved):
    _, path = saved
    data = bytearray((path / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (path / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(BadInput, match="does not match its card"):
        load_model(path)


def test_corrupt_weights_file_is_one_clear_error(saved):
    _, path = saved
    (path / "model.safetensors").write_bytes(b"not a safetensors file")
    card = json.loads((path / "model.json").read_text())
    del card["weights"]["sha256"]
    (path / "model.json").write_text(json.dumps(card))
    with pytest.raises(BadInput, match="not a readable safetensors"):
        load_model(path)


def test_card_that_does_not_match_weights(saved):
    _, path = saved
    card = json.loads((path / "model.json").read_text())
    card["model"]["args"]["width"] = 16
    (path / "model.json").write_text(json.dumps(card))
    with pytest.raises(BadInput, match="wrong shape"):
        load_model(path)


def test_missing_pieces(tmp_path, saved):
    with pytest.raises(BadInput, match="does not exist"):
        load_model(tmp_path / "nowhere")
    _, path = saved
    (path / "model.safetensors").unlink()
    with pytest.raises(BadInput, match="no weights file"):
        load_model(path)
    (path / "model.json").write_text("{not json")
    with pytest.raises(BadInput, match="not valid JSON"):
        load_model(path)


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_pickles_are_refused_unless_trusted_and_then_weights_only(tmp_path, saved):
    model, _ = saved
    state_file = tmp_path / "weights.pt"
    torch.save(model.state_dict(), state_file)
    factory = "tests.factories:tiny_cnn"
    with pytest.raises(BadInput, match="refusing to unpickle"):
        load_user_model(factory, state_file)
    loaded = load_user_model(factory, state_file, trust_pickle=True)
    assert torch.equal(loaded.head.weight, model.head.weight)
    evil = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, evil)
    with pytest.raises(BadInput, match="weights only"):
        load_user_model(factory, evil, trust_pickle=True)


def test_user_factory_with_safetensors_round_trips(tmp_path, saved, digits):
    model, path = saved
    loaded = load_user_model("tests.factories:tiny_cnn", path / "model.safetensors")
    save_model(loaded, tmp_path, digits.task)
    again, card = load_model(tmp_path)
    assert card["model"]["factory"] == "tests.factories:tiny_cnn"
    assert torch.equal(again(digits.test.x[:4]), model(digits.test.x[:4]))
    with pytest.raises(BadInput, match="cannot import"):
        load_user_model("no_such_module:f", path / "model.safetensors")


def test_atomic_output_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with atomic_output(out) as tmp:
            (tmp / "half.json").write_text("{")
            raise RuntimeError("boom")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []
    with atomic_output(out) as tmp:
        (tmp / "done.json").write_text("{}")
    assert (out / "done.json").exists()
    with pytest.raises(BadInput, match="not empty"):
        atomic_output(out).__enter__()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(BadInput, match="not writable"):
        atomic_output(locked / "out").__enter__()


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_write_json_atomic_leaves_a_whole_file_or_none(tmp_path, monkeypatch, umask_022):
    path = tmp_path / "thresholds.json"
    write_json_atomic(path, {"threshold": 1.0})
    assert json.loads(path.read_text()) == {"threshold": 1.0}
    assert path.stat().st_mode & 0o777 == 0o644

    def interrupted(target, data):
        target.write_text('{"thresh')
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "write_json", interrupted)
    with pytest.raises(OSError):
        write_json_atomic(path, {"threshold": 2.0})
    with pytest.raises(OSError):
        write_json_atomic(tmp_path / "new.json", {"threshold": 2.0})
    # the old file is whole, the new one never appeared, no temporary file is left
    assert json.loads(path.read_text()) == {"threshold": 1.0}
    assert [p.name for p in tmp_path.iterdir()] == ["thresholds.json"]
