"""backdoorguard: find and remove backdoors in deep models.

    import backdoorguard as bg
    data = bg.load_dataset("digits")
    model = bg.create_model("cnn-small", data.task)
    attack = bg.create_attack("badnets", data.task, target=0)
    poisoned = attack.poison(data.train, rate=0.1, seed=0)
    bg.fit(model, poisoned, bg.TrainConfig(epochs=30))
    print(bg.evaluate(model, data.test, attack))
"""

from __future__ import annotations

__version__ = "0.1.0"

_EXPORTS = {
    "TaskSpec": "core.types", "ArrayDataset": "core.types", "PoisonedDataset": "core.types",
    "Splits": "core.types", "TrainConfig": "config", "AttackConfig": "config",
    "TrainRun": "config", "Runtime": "core.runtime", "fit": "core.training",
    "predict": "core.training", "evaluate": "core.metrics", "Metrics": "core.metrics",
    "save_model": "core.checkpoint", "load_model": "core.checkpoint",
    "load_user_model": "core.checkpoint", "load_dataset": "data",
    "create_model": "models", "create_attack": "attacks", "Attack": "attacks",
    "BadInput": "errors", "registry": "",
}


def __getattr__(name: str):
    # Lazy, so `import backdoorguard` does not import torch until it is needed.
    import importlib

    if name not in _EXPORTS:
        raise AttributeError(f"module 'backdoorguard' has no attribute {name!r}")
    module = _EXPORTS[name]
    if module == "":
        return importlib.import_module(f"{__name__}.{name}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = sorted(_EXPORTS)
