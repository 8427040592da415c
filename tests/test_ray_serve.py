"""`amanuensis serve --ray`: the FastAPI app as a Ray Serve ingress, the model as two replicas."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from amanuensis.evaluation import normalize
from amanuensis.server.ray_serve import RayModelPool, ReplicaAnswer, autoscaling_config
from amanuensis.server.settings import ServerSettings

from . import server_fixtures
from .server_fixtures import DATA, JFK, LONG_CLIP, MP3, SHORT_CLIP, run_server, upload

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="the ray extra is not installed (pip install 'amanuensis[ray]')")

CLIPS = [JFK, SHORT_CLIP, LONG_CLIP, MP3, DATA / "faster-whisper" / "stereo_diarization_right.flac"]
CONCURRENT = 8


def _post(url: str, path) -> dict:
    response = httpx.post(f"{url}/transcribe", files=upload(path), timeout=300)
    assert response.status_code == 200, response.text
    return response.json()


def _essence(answer: dict) -> dict:
    return {key: answer[key] for key in ("text", "language", "duration", "segments")}


def test_without_ray_the_flag_fails_in_one_line():
    code = ("import sys; sys.modules['ray'] = None; from amanuensis.server.main import main; "
            "sys.exit(main(['--ray', '--port', '0']))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env=server_fixtures_env())
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "cannot start: --ray needs Ray Serve, which is not installed: pip install 'amanuensis[ray]'" in lines[0]


def test_ray_settings_and_autoscaling_bounds():
    from amanuensis.cli import build_parser
    from amanuensis.server.settings import settings_from_args

    def settings(*flags: str) -> ServerSettings:
        return settings_from_args(build_parser().parse_args(["serve", *flags]))

    assert settings().ray_address is None
    assert settings("--ray").ray_address == ""
    assert settings("--ray", "auto").ray_address == "auto"
    fixed = settings("--ray", "--workers", "3")
    assert fixed.workers == 3 and autoscaling_config(fixed) is None
    scaling = autoscaling_config(settings("--ray", "--ray-min-replicas", "1", "--ray-max-replicas", "4",
                                          "--max-concurrent", "2"))
    assert scaling == {"min_replicas": 1, "max_replicas": 4, "initial_replicas": 1, "target_ongoing_requests": 2}


def server_fixtures_env() -> dict[str, str]:
    import os

    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(server_fixtures.ROOT / "src"),
                                                                     os.environ.get("PYTHONPATH")]))}


@pytest.fixture(scope="module")
def expected(tmp_path_factory) -> list[dict]:
    """The single-process server's answers, one request at a time."""
    with run_server(tmp_path_factory.mktemp("single"), "--cpu-threads", "1") as single:
        return [_essence(_post(single.url, clip)) for clip in CLIPS]


def test_a_replica_answer_that_arrives_late_does_not_lower_its_served_count():
    pool = RayModelPool(ServerSettings(), handle=None)
    identity = {"replica": "r1", "node": "n", "ip": "127.0.0.1", "pid": 1, "actor": ""}

    def answer(served: int, batches: int) -> ReplicaAnswer:
        counts = {"batches": batches, "chunks": batches, "shared_batches": 0, "largest_batch": 1}
        return ReplicaAnswer(None, {**identity, "served": served}, counts)

    for served in (1, 3, 2):  # the answers to two concurrent requests arrive out of order
        pool.record(answer(served, batches=served))
    assert pool._answers["r1"].replica["served"] == 3
    assert pool.batching()["batches"] == 3  # the batching counts of the newest answer


@needs_ray
def test_two_replicas_behind_the_fastapi_ingress(tmp_path, expected, monkeypatch):
    monkeypatch.setattr(server_fixtures, "START_TIMEOUT_S", 300.0)  # Ray and Serve start first
    args = ("--ray", "--workers", "2", "--cpu-threads", "1", "--max-concurrent", "4")
    with run_server(tmp_path, *args) as served:
        status = httpx.get(f"{served.url}/status", timeout=30).json()
        replicas = status["ray"]["replicas"]
        assert len(replicas) == 2 and all(r["node"] and r["replica"] for r in replicas), status["ray"]
        assert status["queue"]["slots"] == 8 and status["ray"]["autoscaling"] is None

        one_at_a_time = [_essence(_post(served.url, clip)) for clip in CLIPS]
        assert one_at_a_time == expected

        clips = [CLIPS[i % len(CLIPS)] for i in range(CONCURRENT)]
        with ThreadPoolExecutor(CONCURRENT) as pool:
            together = list(pool.map(lambda clip: _post(served.url, clip), clips))
        wanted = [expected[i % len(CLIPS)]["text"] for i in range(CONCURRENT)]
        same = sum(normalize(a["text"]) == normalize(b) for a, b in zip(together, wanted))
        assert same >= CONCURRENT - 1, [(a["text"], b) for a, b in zip(together, wanted)]

        job = httpx.post(f"{served.url}/v1/jobs", files=upload(JFK), timeout=60)
        assert job.status_code == 202, job.text
        deadline = time.monotonic() + 120
        while (view := httpx.get(f"{served.url}/v1/jobs/{job.json()['id']}", timeout=30).json())["status"] not in (
                "done", "failed") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert view["status"] == "done" and view["result"]["text"] == expected[0]["text"], view

        after = httpx.get(f"{served.url}/status", timeout=30).json()
        served_by = {r["replica"]: r["served"] for r in after["ray"]["replicas"]}
        assert len(served_by) == 2 and all(count >= 1 for count in served_by.values()), after["ray"]
        assert sum(served_by.values()) == len(CLIPS) + CONCURRENT + 1
        assert after["batching"]["enabled"] and after["batching"]["shared_batches"] > 0, after["batching"]
        assert after["requests"]["failed"] == 0 and after["jobs"]["failed"] == 0
    assert served.process.returncode == 0, served.log()[-3000:]
