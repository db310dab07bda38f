"""Small digits models shared by the detection tests: a clean cnn-small and its
BadNets twin (3×3 patch, target 0, 10 %), written as checkpoints."""

import pytest

from backdoorguard.config import AttackConfig, TrainRun
from backdoorguard.core.runtime import Runtime
from backdoorguard.pipeline import train_run, write_train_result

# The demo's model and settings with fewer epochs: on a narrower cnn-small (width 8)
# Neural Cleanse did not single out the target class.
TINY = {"model": "cnn-small", "train": {"epochs": 15}}


@pytest.fixture(scope="session")
def digits_pair(tmp_path_factory):
    """{"clean": dir, "backdoored": dir} of two tiny trained checkpoints."""
    root = tmp_path_factory.mktemp("detection_models")
    runtime = Runtime(seed=0, device="cpu", threads=1, progress=False)
    out = {}
    for name, attack in (("clean", None),
                         ("backdoored", AttackConfig(name="badnets", poison_rate=0.1, target=0))):
        result = train_run(TrainRun(dataset="digits", attack=attack, **TINY), runtime)
        out[name] = write_train_result(result, root / name)
    return out
