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


class _Model:
    """A stand-in transcriber (weak-referenceable, so a test can see that nothing keeps it)."""

    def __init__(self, info: ModelInfo) -> None:
        self.info = info


def _info(name: str, mib: float = 1.0) -> ModelInfo:
    return ModelInfo(name=name, path=f"/models/{name}", multilingual=True, n_mels=80,
                     size_bytes=int(mib * 2**20), source="hub")


def _on_demand(**settings: object) -> ModelPool:
    pool = ModelPool(ServerSettings(batch_wait_ms=0, realtime_workers=0, **settings),
                     factory=lambda model, **_: _Model(model if isinstance(model, ModelInfo) else _info(model)))
    pool.load_default()
    return pool


def _loaded(pool: ModelPool) -> list[str]:
    return [info.name for info in pool.loaded_models()]


def test_an_explicit_load_past_max_models_is_refused_a_request_makes_room_from_idle_models():
    from amanuensis.errors import ModelConflictError

    pool = _on_demand(max_models=3)
    a, b, c = _info("a"), _info("b"), _info("c")
    pool.load(a)
    pool.load(b)
    assert pool.load(pool.default.info) is None and _loaded(pool) == ["tiny.en", "a", "b"]
    with pytest.raises(ModelConflictError) as refused:
        pool.load(c)
    assert refused.value.http_status == 409 and refused.value.code == "model_limit"
    pool.get(b, 0)  # b used last: a is the least recently used
    assert pool.get(c, 0).info.name == "c" and _loaded(pool) == ["tiny.en", "b", "c"]
    with pool.using(b, 0), pool.using(c, 0), pytest.raises(ModelConflictError, match="in use"):
        pool.get(a, 0)  # every other model is busy: nothing to unload
    assert _loaded(pool) == ["tiny.en", "b", "c"]


def test_unload_frees_every_reference_and_refuses_the_default_and_models_in_use():
    import gc
    import weakref

    from amanuensis.errors import ModelConflictError, ModelError

    pool = _on_demand(max_models=2)
    a = _info("a")
    kept = weakref.ref(pool.load(a).transcriber)
    with pytest.raises(ModelConflictError) as pinned:
        pool.unload(pool.default.info)
    assert pinned.value.code == "model_pinned"
    with pool.using(a, 0), pytest.raises(ModelConflictError) as busy:
        pool.unload(a)
    assert busy.value.code == "model_in_use"
    pool.hold("session-1", a, 0)
    with pytest.raises(ModelConflictError):
        pool.unload(a)
    pool.release("session-1")
    assert pool.unload(a) >= 0 and _loaded(pool) == ["tiny.en"]
    gc.collect()
    assert kept() is None, "the pool still refers to the unloaded model"
    with pytest.raises(ModelError, match="not loaded"):
        pool.unload(a)


def test_idle_models_unload_after_the_ttl_but_not_while_a_session_holds_them():
    import time

    pool = _on_demand(max_models=3, model_ttl=10)
    a, b = _info("a"), _info("b")
    pool.load(a)
    pool.load(b)
    pool.hold("session-1", b, 0)
    now = time.monotonic()
    assert pool.unload_idle(now + 5) == [] and pool.states()["/models/a"]["unload_in_s"] > 0
    assert pool.unload_idle(now + 11) == ["a"]
    pool.release("session-1")
    assert pool.unload_idle(time.monotonic() + 11) == ["b"] and _loaded(pool) == ["tiny.en"]
    assert _on_demand(model_ttl=0).unload_idle(now + 1e6) == []


def test_a_load_past_the_memory_limit_or_the_hosts_memory_is_refused(monkeypatch):
    from amanuensis.errors import ModelMemoryError
    from amanuensis.server import pool as pool_module

    pool = _on_demand(max_models=4, max_model_memory_mb=100)
    pool.default_memory = 40 * 2**20
    pool.load(_info("small", 50))
    with pytest.raises(ModelMemoryError) as refused:
        pool.load(_info("large", 20))  # 40 + 50 + 20 > 100
    assert refused.value.http_status == 507 and refused.value.code == "insufficient_memory"
    assert pool.get(_info("large", 20), 0).info.name == "large"  # a request unloads the idle one first
    monkeypatch.setattr(pool_module, "available_bytes", lambda: 30 * 2**20)
    with pytest.raises(ModelMemoryError, match="available"):
        _on_demand(max_models=4).load(_info("huge", 500))


def test_on_ray_the_ingress_refuses_to_load_another_model_itself():
    from amanuensis.errors import ModelError
    from amanuensis.server.ray_serve import RayModelPool

    pool = RayModelPool(ServerSettings(batch_wait_ms=0), handle=None)
    pool.replicas = [_Model(_info("tiny.en"))]
    assert pool.load(_info("tiny.en")) is None
    with pytest.raises(ModelError, match="not served here"):
        pool.load(_info("base"))
    assert pool.loaded_models() == [_info("tiny.en")]
