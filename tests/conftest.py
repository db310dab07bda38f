import pytest
import torch

from backdoorguard.core.runtime import Runtime
from backdoorguard.data import load_dataset

# Tests run on one thread: fast on a shared 2-core machine, and reproducible.
torch.set_num_threads(1)


@pytest.fixture
def runtime():
    return Runtime(seed=0, device="cpu", threads=1, progress=False)


@pytest.fixture(scope="session")
def digits():
    return load_dataset("digits")
