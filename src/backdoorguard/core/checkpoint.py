"""Safe checkpoints: safetensors weights beside a JSON card, and atomic output folders.

A checkpoint directory holds

    model.safetensors   the state dict (tensors only: loading runs no code)
    model.json          the card: how to rebuild the model (registry name and
                        arguments, or a user factory), its TaskSpec, the training
                        configuration, attack, metrics, versions and the weights'
                        SHA-256

`load_model(dir)` rebuilds the model from the card and loads the weights strictly.
Pickle files (`.pt`, `.pth`, ...) are refused unless the caller passes
`trust_pickle=True`, and even then go through `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import BadInput
from .types import TaskSpec

CARD = "model.json"
WEIGHTS = "model.safetensors"
FORMAT = "backdoorguard.model/1"
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle")


def versions() -> dict[str, str]:
    from .. import __version__

    return {"backdoorguard": __version__, "torch": torch.__version__,
            "python": platform.python_version()}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(path: Path, data: Any) -> None:
    """Deterministic JSON (sorted keys, fixed indentation, trailing newline)."""
    path.write_text(json.dumps(data, indent=2, sort_keys=True, allow_nan=True) + "\n")


def write_json_atomic(path: str | Path, data: Any) -> None:
    """`write_json` to a file that appears whole or not at all: written beside
    `path` under a temporary name, given the usual file mode (0666 less the umask,
    0644 by default), then renamed over `path`; on any error the temporary file
    is removed and an existing `path` is left as it was."""
    path = Path(path)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial",
                                    dir=path.resolve().parent)
    os.close(handle)
    tmp = Path(name)
    try:
        write_json(tmp, data)
        tmp.chmod(0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except OSError as error:
        raise BadInput(f"cannot read {what} {str(path)!r}: {error.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadInput(f"{what} {str(path)!r} is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadInput(f"{what} {str(path)!r} must hold a JSON object")
    return data


# ---------------------------------------------------------------- model spec

def model_spec(model: nn.Module) -> dict[str, Any]:
    """How to rebuild `model`: set by `create_model` or `load_user_model`."""
    spec = getattr(model, "model_spec", None)
    if spec is None:
        raise BadInput("this model has no model_spec: build it with create_model() or "
                       "load_user_model() so its checkpoint can be rebuilt")
    return spec


def import_factory(path: str):
    """`package.module:function` to the function; `BadInput` if it cannot be found."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise BadInput(f"model factory {path!r} must look like package.module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise BadInput(f"cannot import module {module_name!r} for model factory: {error}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise BadInput(f"model factory {path!r}: {module_name} has no callable {attr!r}")
    return factory


def build_model(spec: dict[str, Any], task: TaskSpec) -> nn.Module:
    """A fresh model from a card's `model` entry."""
    from ..models import create_model

    args = dict(spec.get("args", {}))
    if "name" in spec:
        return create_model(spec["name"], task, **args)
    if "factory" in spec:
        model = import_factory(spec["factory"])(**args)
        if not isinstance(model, nn.Module):
            raise BadInput(f"model factory {spec['factory']!r} returned "
                           f"{type(model).__name__}, not a torch.nn.Module")
        model.model_spec = {"factory": spec["factory"], "args": args}
        return model
    raise BadInput("model card names neither a registered model nor a factory")


# ---------------------------------------------------------------- weights

def read_weights(path: Path, *, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """A state dict from safetensors, or (only when trusted) a weights-only pickle."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"weights file {str(path)!r} does not exist")
    if path.suffix in PICKLE_SUFFIXES:
        if not trust_pickle:
            raise BadInput(f"refusing to unpickle {str(path)!r}: pickle files can run code; "
                           "convert it to safetensors or pass --trust-pickle if you trust it")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - any unpickling failure is bad input
            raise BadInput(f"cannot load {str(path)!r} as weights only: {error}") from None
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise BadInput(f"{str(path)!r} does not hold a state dict of tensors")
        return state
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise BadInput(f"weights file {str(path)!r} is not a readable safetensors file "
                       f"({str(error).splitlines()[0] if str(error) else type(error).__name__})") from None


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Strict load with a one-line explanation of any mismatch."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {missing[0]!r})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]!r})")
    if wrong:
        k = wrong[0]
        problems.append(f"{len(wrong)} of the wrong shape (e.g. {k!r}: "
                        f"{tuple(state[k].shape)} vs {tuple(expected[k].shape)})")
    if problems:
        raise BadInput(f"weights in {source} do not match the model: tensors "
                       + ", ".join(problems))
    model.load_state_dict(state, strict=True)


# ---------------------------------------------------------------- save / load

def save_model(model: nn.Module, directory: str | Path, task: TaskSpec, *,
               card: dict[str, Any] | None = None) -> Path:
    """Write `model.safetensors` and `model.json` into an existing `directory`.

    `card` adds sections (training, attack, metrics, ...) to the card. Use
    `atomic_output` around it to avoid leaving a half-written directory.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    weights = directory / WEIGHTS
    save_file(state, str(weights), metadata={"format": FORMAT})
    full_card = {"format": FORMAT, "model": model_spec(model), "task": task.to_dict(),
                 "versions": versions(), "weights": {"file": WEIGHTS, "sha256": sha256(weights)}}
    full_card.update(card or {})
    write_json(directory / CARD, full_card)
    return directory


def read_card(directory: str | Path) -> dict[str, Any]:
    directory = Path(directory)
    if directory.is_file():
        hint = (" (pickle files are refused; see --model-factory and --trust-pickle)"
                if directory.suffix in PICKLE_SUFFIXES else "")
        raise BadInput(f"{str(directory)!r} is a file; a checkpoint is a directory holding "
                       f"{WEIGHTS} and {CARD}{hint}")
    if not directory.is_dir():
        raise BadInput(f"checkpoint directory {str(directory)!r} does not exist")
    card = read_json(directory / CARD, "model card")
    if card.get("format") != FORMAT:
        raise BadInput(f"model card in {str(directory)!r} has format {card.get('format')!r}, "
                       f"expected {FORMAT!r}")
    for key in ("model", "task"):
        if not isinstance(card.get(key), dict):
            raise BadInput(f"model card in {str(directory)!r} lacks its {key!r} section")
    return card


def load_model(directory: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model described by the card and load its weights strictly.

    Returns `(model, card)`; the model is on the CPU in eval mode.
    """
    directory = Path(directory)
    card = read_card(directory)
    task = TaskSpec.from_dict(card["task"])
    weights = directory / card.get("weights", {}).get("file", WEIGHTS)
    if not weights.is_file():
        raise BadInput(f"checkpoint {str(directory)!r} has a card but no weights file "
                       f"{weights.name!r}")
    expected_hash = card.get("weights", {}).get("sha256")
    if expected_hash and sha256(weights) != expected_hash:
        raise BadInput(f"weights file {str(weights)!r} does not match its card "
                       "(SHA-256 differs): the file was changed or corrupted")
    model = build_model(card["model"], task)
    load_weights(model, read_weights(weights), str(weights))
    return model.eval(), card


def load_user_model(factory: str, weights: str | Path, *, args: dict[str, Any] | None = None,
                    trust_pickle: bool = False) -> nn.Module:
    """A user's own model: `package.module:function` called with `args`, plus weights."""
    args = dict(args or {})
    model = import_factory(factory)(**args)
    if not isinstance(model, nn.Module):
        raise BadInput(f"model factory {factory!r} returned {type(model).__name__}, "
                       "not a torch.nn.Module")
    model.model_spec = {"factory": factory, "args": args}
    load_weights(model, read_weights(Path(weights), trust_pickle=trust_pickle), str(weights))
    return model.eval()


# ---------------------------------------------------------------- atomic output

def check_output(out: str | Path, *, overwrite: bool = False) -> Path:
    """Fail early (before any work) if `out` cannot be written."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BadInput(f"output {str(out)!r} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise BadInput(f"output directory {str(out)!r} exists and is not empty; "
                       "pass --overwrite to replace it")
    parent = out.resolve().parent
    existing = parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise BadInput(f"output {str(out)!r} is not writable (no write permission in "
                       f"{str(existing)!r})")
    return out


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_output(out: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside `out`; on success it replaces `out`.

    On any error the temporary directory is removed, so no half-written output
    is ever left under the requested name.
    """
    out = check_output(out, overwrite=overwrite)
    parent = out.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=parent))
        tmp.chmod(0o777 & ~_umask())
    except OSError as error:
        raise BadInput(f"cannot write output {str(out)!r}: {error.strerror}") from None
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for path in tmp.rglob("*"):
        if path.is_file():
            path.chmod(0o666 & ~_umask())
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=parent))
        os.replace(out, old / "previous")
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
