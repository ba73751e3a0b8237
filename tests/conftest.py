"""Shared test settings: one torch thread (small models are fastest that way, and a busy
2-core machine with two threads can be 50x slower)."""
import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    torch.set_num_threads(1)
    yield
