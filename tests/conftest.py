import numpy as np
import pytest

import pagetax
from helpers import SIZE


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture
def backing(rng):
    """A scratch tmpfs backing filled with random bytes."""
    with pagetax.Backing.scratch(SIZE) as b:
        b.view()[:] = rng.integers(0, 256, SIZE, dtype=np.uint8)
        yield b
