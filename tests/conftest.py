"""Fixtures shared by the test modules."""

import sys
from pathlib import Path

import pytest

# Make the generated-media helpers importable as `media_factory` from every test module.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def torch_one_thread():
    """Run a test with one torch thread: on the shared 2-core machine, contending torch threads run
    far slower than one. Modules that train or run torch models use it with
    `pytestmark = pytest.mark.usefixtures("torch_one_thread")`."""
    import torch  # here, so modules without torch do not import it

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
