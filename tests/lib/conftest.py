"""Shared fixtures of the library tests."""

import pytest
import torch


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a test module, restored afterwards for the other modules.

    The models in these tests are small: a second thread only adds overhead, and on a busy 2-core machine the
    threads' waiting for each other makes them several times slower. Use it with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
