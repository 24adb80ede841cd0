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


#: a tiny synthetic CIFAR run: ResNet-20 IR²Net, 64 training and 40 test images of 16x16
TINY_RUN = ["data.dataset=synthetic", "data.synthetic.train_size=64",
            "data.synthetic.test_size=40", "data.synthetic.image_size=16",
            "train.batch_size=16", "eval.batch_size=16", "train.epochs=2", "progress=false"]


@pytest.fixture
def tiny_run_settings() -> list[str]:
    """The overrides of :data:`TINY_RUN`, for a test that trains its own variant of it."""
    return list(TINY_RUN)


@pytest.fixture(scope="session")
def tiny_trained_run(tmp_path_factory):
    """(run folder, metrics) of :data:`TINY_RUN`, trained once for every test that scores or
    exports a finished run (none of them writes into the folder)."""
    from ir2net.config import load_config
    from ir2net.training import run

    folder = tmp_path_factory.mktemp("tiny-run")
    return folder, run(load_config("cifar10_resnet20_bireal", TINY_RUN), folder)
