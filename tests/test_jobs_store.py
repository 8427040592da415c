"""The job store and manager without a model: persistence, claiming, expiry, orphan sweep, data-dir lock,
and the manager's cancel / shutdown mechanics (a runner that reports progress like the pipeline does)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from amanuensis.jobs import DataDirBusy, JobCancelled, JobManager, JobStore
from amanuensis.pipeline import TranscribeOptions
from amanuensis.transcript import Segment, Transcript


def _upload(store: JobStore, name: str = "a.wav", content: bytes = b"RIFF....") -> Path:
    path = store.upload_dir / f"amanuensis-upload-{name}"
    path.write_bytes(content)
    return path


def _add(store: JobStore, **kwargs):
    return store.add(_upload(store), filename="a.wav", model="tiny.en", response_format="json",
                     options=TranscribeOptions(language="en").to_dict(), **kwargs)


def test_add_claim_finish_roundtrip(tmp_path):
    store = JobStore(tmp_path)
    job = _add(store)
    assert job.status == "queued" and store.audio_path(job).read_bytes() == b"RIFF...."
    assert not list(store.upload_dir.iterdir())  # moved, not copied
    assert TranscribeOptions.from_dict(store.get(job.id).options).language == "en"
    assert store.claim(job.id) and not store.claim(job.id)
    store.progress(job.id, 5.0, 10.0)
    assert store.get(job.id).done_s == 5.0 and store.get(job.id).attempts == 1
    transcript = Transcript(text="hi", language="en", duration=10.0, segments=[Segment(0, 0.0, 1.0, " hi")])
    assert store.finish(job.id, "done", result=transcript.to_dict())
    assert not store.finish(job.id, "failed")  # finished jobs stay finished
    assert Transcript.from_dict(store.get(job.id).result) == transcript
    assert [j.id for j in store.list()] == [job.id] and store.list()[0].result is None
    store.close()


def test_running_jobs_are_requeued_and_unfinished_ones_kept_in_order(tmp_path):
    store = JobStore(tmp_path)
    first, second = _add(store), _add(store)
    store.claim(first.id)
    store.close()
    again = JobStore(tmp_path)
    assert again.requeue_running() == 1
    assert [(j.id, j.status) for j in again.unfinished()] == [(first.id, "queued"), (second.id, "queued")]
    again.close()


def test_expiry_removes_old_finished_jobs_and_their_audio_only(tmp_path):
    store = JobStore(tmp_path)
    old, running = _add(store), _add(store)
    store.claim(old.id)
    store.finish(old.id, "cancelled")
    store.claim(running.id)
    assert store.expire(time.time() - 60) == 0  # finished a moment ago: kept
    assert store.expire(time.time() + 1) == 1
    assert store.get(old.id) is None and not store.audio_path(old).exists()
    assert store.get(running.id) is not None and store.audio_path(running).exists()
    store.close()


def test_orphans_left_by_a_crash_are_swept(tmp_path):
    store = JobStore(tmp_path)
    kept = _add(store)
    half = _upload(store, "half")
    stray = store.audio_dir / "job_stray.wav"
    stray.write_bytes(b"x")
    assert store.sweep_orphans() == 2
    assert not half.exists() and not stray.exists() and store.audio_path(kept).exists()
    store.close()


def test_one_process_per_data_directory(tmp_path):
    store = JobStore(tmp_path)
    with pytest.raises(DataDirBusy, match="in use by another amanuensis process"):
        JobStore(tmp_path)
    store.close()
    JobStore(tmp_path).close()  # released on close


class SteppingRunner:
    """Reports progress every 50 ms over 100 'seconds' of audio, in a thread, like the pipeline."""

    def __init__(self, total: int = 100) -> None:
        self.total = total
        self.steps = 0
        self.started = threading.Event()

    async def __call__(self, job, audio, options, progress, on_segment):
        return await asyncio.to_thread(self._work, progress, on_segment)

    def _work(self, progress, on_segment):
        progress(0.0, float(self.total))
        self.started.set()
        for second in range(1, self.total + 1):
            time.sleep(0.05)
            on_segment(Segment(second - 1, second - 1.0, float(second), f" word{second}"))
            progress(float(second), float(self.total))
            self.steps += 1
        return Transcript(text="done", language="en", duration=float(self.total), segments=[])


def test_manager_cancel_raises_inside_the_work_and_stops_it(tmp_path):
    async def scenario():
        runner = SteppingRunner()
        manager = JobManager(JobStore(tmp_path), runner)
        await manager.start()
        job = await manager.submit(_upload(manager.store), filename="a.wav", model=None, response_format="json",
                             options=TranscribeOptions())
        while runner.steps < 3:
            await asyncio.sleep(0.02)
        cancelled = await manager.cancel(job.id)
        steps = runner.steps
        await asyncio.sleep(0.3)
        events = [event.name async for event in manager.events(job.id)]
        await manager.stop()
        return cancelled, steps, runner.steps, events

    cancelled, steps, later, events = asyncio.run(scenario())
    assert cancelled.status == "cancelled" and 0 < cancelled.done_s < 100
    assert later == steps  # the work stopped: no step after the cancel
    assert events[0] == "status" and events[-1] == "cancelled" and "segment" in events


def test_manager_stop_requeues_the_running_job_without_counting_the_attempt(tmp_path):
    async def scenario():
        runner = SteppingRunner()
        manager = JobManager(JobStore(tmp_path), runner)
        await manager.start()
        job = await manager.submit(_upload(manager.store), filename="a.wav", model=None, response_format="json",
                             options=TranscribeOptions())
        await asyncio.to_thread(runner.started.wait, 10)
        started = time.monotonic()
        await manager.stop()
        return job, time.monotonic() - started, runner.steps

    job, stop_seconds, steps = asyncio.run(scenario())
    assert stop_seconds < 2.0 and steps < 100  # interrupted between chunks, not waited out
    store = JobStore(tmp_path)
    again = store.get(job.id)
    assert again.status == "queued" and again.attempts == 0
    store.close()


def test_a_job_that_keeps_crashing_the_server_is_failed_not_rerun_forever(tmp_path):
    store = JobStore(tmp_path)
    job = _add(store)
    for _ in range(3):
        store.claim(job.id)
        store.requeue_running()
    store.claim(job.id)  # attempt 4 was running when the server died again
    store.close()

    async def scenario():
        manager = JobManager(JobStore(tmp_path), SteppingRunner(), max_attempts=3)
        await manager.start()
        found = manager.get(job.id)
        await manager.stop()
        return found

    found = asyncio.run(scenario())
    assert found.status == "failed" and found.error["code"] == "job_crashed"


def test_job_cancelled_is_an_exception():
    assert issubclass(JobCancelled, Exception)


def test_cancel_while_waiting_for_a_worker_slot_is_immediate_and_the_worker_carries_on(tmp_path):
    class GatedRunner(SteppingRunner):
        """Waits for a slot (the gate) before working, as the server's runner waits for a worker."""

        def __init__(self) -> None:
            super().__init__(total=10)
            self.gate = asyncio.Event()

        async def __call__(self, job, audio, options, progress, on_segment):
            await self.gate.wait()
            return await super().__call__(job, audio, options, progress, on_segment)

    async def scenario():
        runner = GatedRunner()
        manager = JobManager(JobStore(tmp_path), runner)
        await manager.start()
        options = TranscribeOptions()
        first = await manager.submit(_upload(manager.store, "1"), filename="1.wav", model=None,
                                     response_format="json", options=options)
        while first.id not in manager.live:
            await asyncio.sleep(0.01)
        started = time.monotonic()
        cancelled = await manager.cancel(first.id)
        took = time.monotonic() - started
        runner.gate.set()
        second = await manager.submit(_upload(manager.store, "2"), filename="2.wav", model=None,
                                      response_format="json", options=options)
        while not manager.get(second.id).finished:
            await asyncio.sleep(0.05)
        result = manager.get(second.id)
        await manager.stop()
        return cancelled, took, result

    cancelled, took, second = asyncio.run(scenario())
    assert cancelled.status == "cancelled" and took < 1.0
    assert second.status == "done" and second.result["text"] == "done"


def _database_bytes(store: JobStore) -> bytes:
    """Everything SQLite keeps on disk for the store: the database, its write-ahead log and its index."""
    return b"".join(path.read_bytes() for path in store.data_dir.glob("jobs.sqlite3*"))


def _finished_job(store: JobStore, secret: str):
    job = store.add(_upload(store), filename=f"{secret}.wav", model="tiny.en", response_format="json",
                    options=TranscribeOptions(language="en").to_dict())
    store.claim(job.id)
    store.progress(job.id, 5.0, 10.0)
    text = f" the words {secret} said"
    transcript = Transcript(text=text, language="en", duration=10.0, segments=[Segment(0, 0.0, 1.0, text)])
    store.finish(job.id, "done", result=transcript.to_dict())
    return job


@pytest.mark.parametrize("how", ["delete", "expire"])
def test_a_deleted_job_leaves_nothing_readable_in_the_database_files(tmp_path, how):
    store = JobStore(tmp_path)
    kept = _finished_job(store, "keptsecret")
    gone = _finished_job(store, "gonesecret")
    for _ in range(50):  # more jobs, so the deleted rows share pages with others and reach the log
        _finished_job(store, "filler")
    before = _database_bytes(store)
    assert gone.id.encode() in before and b"gonesecret" in before  # the check below can fail
    if how == "delete":
        assert store.delete(gone.id)
    else:
        store._execute("UPDATE jobs SET finished_at = 0 WHERE id = ?", (gone.id,))
        assert store.expire(1.0) == 1
    after = _database_bytes(store)
    assert gone.id.encode() not in after and b"gonesecret" not in after
    assert kept.id.encode() in after and b"keptsecret" in after
    assert store.get(kept.id).result["text"] == " the words keptsecret said"
    store.close()
