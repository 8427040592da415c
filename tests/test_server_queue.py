"""The fair queue on its own: round-robin across clients, FIFO within one, bounded, cancel-safe."""

from __future__ import annotations

import asyncio

import pytest

from amanuensis.server.queue import FairQueue, QueueFull


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_round_robin_across_clients():
    async def scenario() -> list[str]:
        queue = FairQueue(workers=1, max_waiting=10)
        order: list[str] = []
        first = await queue.acquire("a")

        async def job(client: str, name: str) -> None:
            slot = await queue.acquire(client)
            order.append(name)
            await asyncio.sleep(0)
            queue.release(slot)

        tasks = [asyncio.create_task(job("a", f"a{i}")) for i in range(3)]
        await _settle()
        tasks.append(asyncio.create_task(job("b", "b0")))
        await _settle()
        assert queue.depth == 4 and queue.running == 1
        queue.release(first)
        await asyncio.gather(*tasks)
        assert queue.depth == 0 and queue.running == 0
        return order

    # b arrived after three requests of a, yet is served second: clients take turns.
    assert asyncio.run(scenario()) == ["a0", "b0", "a1", "a2"]


def test_refuses_past_the_limit():
    async def scenario() -> None:
        queue = FairQueue(workers=1, max_waiting=1)
        slot = await queue.acquire("a")
        waiter = asyncio.create_task(queue.acquire("b"))
        await _settle()
        with pytest.raises(QueueFull):
            await queue.acquire("c")
        queue.release(slot)
        assert await waiter == slot

    asyncio.run(scenario())


def test_cancelled_waiters_leave_no_trace():
    async def scenario() -> None:
        queue = FairQueue(workers=2, max_waiting=4)
        slots = [await queue.acquire("a"), await queue.acquire("a")]
        assert sorted(slots) == [0, 1]
        waiter = asyncio.create_task(queue.acquire("b"))
        await _settle()
        waiter.cancel()
        await _settle()
        assert queue.depth == 0
        queue.release(slots[0])
        assert queue.running == 1
        assert await asyncio.wait_for(queue.acquire("c"), 1) == slots[0]

    asyncio.run(scenario())


def test_timeout_while_waiting_frees_the_place():
    async def scenario() -> None:
        queue = FairQueue(workers=1, max_waiting=1)
        slot = await queue.acquire("a")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(queue.acquire("b"), 0.05)
        assert queue.depth == 0
        queue.release(slot)
        assert queue.running == 0

    asyncio.run(scenario())
