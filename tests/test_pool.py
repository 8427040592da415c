"""The server's model copies: the workers' replicas and the realtime sessions' own copies."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from amanuensis.models import ModelInfo
from amanuensis.pipeline import default_cpu_threads
from amanuensis.server.pool import ModelPool
from amanuensis.server.settings import ServerSettings


class _Loads:
    """A transcriber factory that records what it was asked to load."""

    def __init__(self) -> None:
        self.threads: list[int] = []

    def __call__(self, name: str, *, cpu_threads: int, **_: object) -> SimpleNamespace:
        self.threads.append(cpu_threads)
        info = ModelInfo(name=name, path=f"/models/{name}", multilingual=False, n_mels=80, size_bytes=0,
                         source="embedded")
        return SimpleNamespace(info=info)


def _pool(**settings: object) -> tuple[ModelPool, _Loads]:
    loads = _Loads()
    pool = ModelPool(ServerSettings(batch_wait_ms=0, **settings), factory=loads)
    pool.load_default()
    return pool, loads


def test_realtime_sessions_get_their_own_copies_loaded_at_the_first_session():
    pool, loads = _pool(workers=1, realtime_workers=2)
    assert loads.threads == [default_cpu_threads(1)]  # the worker's replica: all the cores
    info = pool.default.info
    assert pool.get(info, 0) is pool.default and pool.get(info, 1) is pool.default
    live = [pool.get(info, slot, live=True) for slot in range(4)]
    assert loads.threads[1:] == [default_cpu_threads(2)] * 2, "two copies, sharing the cores, loaded once"
    assert live[0] is live[2] and live[1] is live[3] and live[0] is not live[1]
    assert all(copy is not pool.default for copy in live)


@pytest.mark.parametrize("workers", [1, 2])
def test_with_no_realtime_workers_sessions_decode_on_the_workers_replicas(workers):
    pool, loads = _pool(workers=workers, realtime_workers=0)
    info = pool.default.info
    assert [pool.get(info, slot, live=True) for slot in range(2)] == [pool.replicas[s % workers] for s in range(2)]
    assert len(loads.threads) == workers
