import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_and_threads():
    """Each test starts seeded and with the process's thread count (a CLI call in-process
    with --threads would otherwise change the numerics of every later test)."""
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv("IR2NET_CACHE", str(path))
    return path
