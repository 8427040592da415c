"""Jobs end to end on the real server: submit → poll → done, server-sent events, cancel, formats, errors,
and the CLI (`amanuensis jobs …`) against it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from amanuensis.audio import decode_audio

from .server_fixtures import JFK, LONG_CLIP, RunningServer, assert_error, run_server, upload, words, write_wav

pytestmark = pytest.mark.slow

JFK_WORDS = set(words("And so my fellow Americans, ask not what your country can do for you, "
                      "ask what you can do for your country."))
JOB_TIMEOUT_S = 240.0


def _first_cue_starts_at_the_speech(srt: str) -> bool:
    """JFK's first cue starts where his first word does, inside the first second, not at 0.0 before it."""
    first = re.match(r"1\n00:00:00,(\d{3}) --> ", srt)
    return first is not None and int(first.group(1)) > 0


def jfk_repeated(path: Path, times: int) -> Path:
    """JFK's sentence `times` times with a second of silence after each: long, with a checkable transcript."""
    speech = decode_audio(JFK)
    gap = np.zeros(16000, dtype=np.float32)
    return write_wav(path, np.concatenate([np.concatenate([speech, gap]) for _ in range(times)]))


def read_events(client: httpx.Client, job_id: str, stop=None) -> list[tuple[int, str, dict]]:
    """(id, event, data) from /v1/jobs/{id}/events until the stream ends (or `stop(name, data)` says so)."""
    events: list[tuple[int, str, dict]] = []
    with client.stream("GET", f"/v1/jobs/{job_id}/events", timeout=JOB_TIMEOUT_S) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        seq, name, data = 0, "message", []
        for line in response.iter_lines():
            if line.startswith("id:"):
                seq = int(line[3:])
            elif line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif not line and data:
                events.append((seq, name, json.loads("\n".join(data))))
                if stop and stop(name, events[-1][2]):
                    break
                name, data = "message", []
    return events


def wait_done(client: httpx.Client, job_id: str, timeout: float = JOB_TIMEOUT_S) -> dict:
    """Poll GET /v1/jobs/{id} until the job is finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.25)
    raise AssertionError(f"job {job_id} not finished after {timeout} s: {job}")


def submit(client: httpx.Client, path: Path, **fields: str) -> dict:
    response = client.post("/v1/jobs", files=upload(path), data=fields)
    assert response.status_code == 202, response.text
    return response.json()


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> RunningServer:
    workdir = tmp_path_factory.mktemp("jobs-server")
    # one chunk per batch step: progress and segments arrive chunk by chunk, as on a long file
    with run_server(workdir, "--data-dir", str(workdir / "data"), "--batch-size", "1") as running:
        yield running


@pytest.fixture(scope="module")
def http(server) -> httpx.Client:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def long_audio(tmp_path_factory) -> Path:
    return jfk_repeated(tmp_path_factory.mktemp("long") / "jfk-x12.wav", 12)


def test_submit_poll_done(http):
    queued = submit(http, JFK)
    assert set(queued) >= {"id", "status"} and queued["status"] in ("queued", "running")
    job = wait_done(http, queued["id"])
    assert job["status"] == "done", job
    assert job["progress"]["percent"] == 100.0 and job["progress"]["done_s"] == pytest.approx(11.0, abs=0.1)
    result = job["result"]
    assert set(words(result["text"])) >= JFK_WORDS, result["text"]
    assert result["segments"] and all("words" in s for s in result["segments"])
    text = http.get(f"/v1/jobs/{job['id']}", params={"format": "text"})
    assert text.headers["content-type"].startswith("text/plain") and set(words(text.text)) >= JFK_WORDS
    srt = http.get(f"/v1/jobs/{job['id']}", params={"format": "srt"}).text
    assert _first_cue_starts_at_the_speech(srt) and "country" in srt
    listed = http.get("/v1/jobs").json()["data"]
    assert queued["id"] in [j["id"] for j in listed] and "result" not in listed[0]
    assert http.get(f"/v1/jobs/{job['id']}/audio").content == JFK.read_bytes()


def test_a_jobs_subtitles_follow_its_options_or_the_querys(http):
    job = wait_done(http, submit(http, JFK, max_line_width="24", highlight_words="true")["id"])
    assert job["status"] == "done" and job["options"]["max_line_width"] == 24
    own = http.get(f"/v1/jobs/{job['id']}", params={"format": "srt"}).text
    lines = [line for line in own.split("\n") if line and not line[0].isdigit()]
    assert "<u>" in own and all(len(line.replace("<u>", "").replace("</u>", "")) <= 24 for line in lines), own
    asked = http.get(f"/v1/jobs/{job['id']}", params={"format": "vtt", "max_line_count": "1",
                                                     "highlight_words": "false"}).text
    cues = asked.strip().split("\n\n")[1:]
    assert "<u>" not in asked and cues and all(len(cue.split("\n")) == 2 for cue in cues), asked
    assert_error(http.get(f"/v1/jobs/{job['id']}", params={"format": "srt", "max_line_width": "wide"}),
                 400, "max_line_width")


def test_events_arrive_in_order_and_end_with_the_result(http):
    job = submit(http, LONG_CLIP)
    events = read_events(http, job["id"])
    seqs = [seq for seq, _, _ in events]
    assert seqs == list(range(1, len(events) + 1)), seqs
    names = [name for _, name, _ in events]
    assert names[0] == "status" and names[-1] == "done" and names.count("done") == 1, names
    assert "running" in [data["status"] for _, name, data in events if name == "status"]
    segments = [data for _, name, data in events if name == "segment"]
    assert len(segments) >= 3 and [s["id"] for s in segments] == list(range(len(segments)))
    progress = [data for _, name, data in events if name == "progress"]
    done = [p["done_s"] for p in progress]
    assert done == sorted(done) and progress[-1]["percent"] == 100.0, progress
    moving = [i for i, (_, name, data) in enumerate(events) if name == "progress" and data["done_s"] > 0]
    assert moving and min(moving) > names.index("segment")  # progress moves as decoded work arrives, not on a timer
    result = events[-1][2]["result"]
    assert [s["text"] for s in result["segments"]] == [s["text"] for s in segments]
    # a late listener gets the same story replayed, and Last-Event-ID resumes after a given event
    assert [n for _, n, _ in read_events(http, job["id"])] == names
    with http.stream("GET", f"/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": str(len(events) - 1)}) as r:
        tail = [line for line in r.iter_lines() if line.startswith("event:")]
    assert tail == ["event: done"]


def test_cancel_stops_work(http, server, long_audio):
    job = submit(http, long_audio)
    seen = read_events(http, job["id"], stop=lambda name, data: name == "progress" and data["done_s"] > 0)
    assert seen[-1][1] == "progress", seen
    cancelled = http.delete(f"/v1/jobs/{job['id']}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled", cancelled.text
    stopped_at = cancelled.json()["progress"]["done_s"]
    assert 0 < stopped_at < cancelled.json()["progress"]["total_s"]
    time.sleep(2.0)
    after = http.get(f"/v1/jobs/{job['id']}").json()
    assert after["status"] == "cancelled" and "result" not in after
    assert after["progress"]["done_s"] == stopped_at  # no chunk was decoded after the cancel
    assert_error(http.get(f"/v1/jobs/{job['id']}", params={"format": "text"}), 409, "id", "job_not_done")
    assert [n for _, n, _ in read_events(http, job["id"])][-1] == "cancelled"
    assert "job cancelled while running" in server.log()
    follow_up = wait_done(http, submit(http, JFK)["id"], timeout=120)  # the worker is free again
    assert follow_up["status"] == "done"


def test_cancel_a_queued_job_and_delete_finished_ones(http, long_audio):
    first = submit(http, long_audio)
    second = submit(http, JFK)
    response = http.delete(f"/v1/jobs/{second['id']}")
    assert response.json()["status"] == "cancelled"
    assert http.delete(f"/v1/jobs/{first['id']}").json()["status"] == "cancelled"
    gone = http.delete(f"/v1/jobs/{second['id']}")
    assert gone.json() == {"id": second["id"], "object": "transcription.job.deleted", "deleted": True}
    assert_error(http.get(f"/v1/jobs/{second['id']}"), 404, "id", "job_not_found")
    assert_error(http.get(f"/v1/jobs/{second['id']}/audio"), 404, "id", "job_not_found")


@pytest.mark.parametrize(
    ("request_args", "status", "param", "code"),
    [
        ({"files": {"file": ("x.txt", b"not audio at all", "text/plain")}}, 400, "file", "invalid_audio"),
        ({"files": {"file": ("empty.wav", b"", "audio/wav")}}, 400, "file", "invalid_audio"),
        ({"data": {"model": "tiny.en"}, "files": {"other": ("a", b"a")}}, 400, "other", "unknown_parameter"),
        ({"files": upload(JFK), "data": {"language": "xx"}}, 400, "language", "invalid_parameter"),
        ({"files": upload(JFK), "data": {"task": "summarise"}}, 400, "task", "invalid_parameter"),
        ({"files": upload(JFK), "data": {"task": "translate"}}, 400, "task", "invalid_parameter"),
        ({"files": upload(JFK), "data": {"bogus": "1"}}, 400, "bogus", None),
        ({"files": upload(JFK), "data": {"model": "no-such-model"}}, 400, "model", "model_not_found"),
        ({"files": upload(JFK), "data": {"callback_url": "file:///etc/passwd"}}, 400, "callback_url", None),
        ({"files": upload(JFK), "data": {"callback_url": "gopher://example.com/"}}, 400, "callback_url", None),
        ({"files": upload(JFK), "data": {"callback_url": "http://127.0.0.1:9/hook"}}, 400, "callback_url", None),
        ({"files": upload(JFK), "data": {"callback_url": "http://localhost/hook"}}, 400, "callback_url", None),
        ({"files": upload(JFK), "data": {"callback_url": "http://10.0.0.7/hook"}}, 400, "callback_url", None),
        ({"files": upload(JFK), "data": {"callback_url": "http://169.254.169.254/latest"}}, 400, "callback_url",
         None),
        ({"files": upload(JFK), "data": {"callback_url": "http://[::ffff:192.168.0.1]/"}}, 400, "callback_url",
         None),
    ],
)
def test_bad_submissions_are_4xx_naming_the_problem(http, request_args, status, param, code):
    assert_error(http.post("/v1/jobs", **request_args), status, param, code)


def test_bad_queries_are_4xx(http):
    assert_error(http.get("/v1/jobs/job_nope"), 404, "id", "job_not_found")
    assert_error(http.delete("/v1/jobs/job_nope"), 404, "id", "job_not_found")
    assert_error(http.get("/v1/jobs/job_nope/events"), 404, "id", "job_not_found")
    assert_error(http.get("/v1/jobs", params={"limit": 0}), 400, "limit")
    assert_error(http.get("/v1/jobs", params={"status": "sleeping"}), 400, "status")
    assert_error(http.get("/v1/jobs", params={"limit": "many"}), 400, "limit")
    job = http.get("/v1/jobs").json()["data"][0]
    assert_error(http.get(f"/v1/jobs/{job['id']}", params={"format": "docx"}), 400, "format")


def test_web_page_and_assets_are_served(http):
    page = http.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for asset in ("/static/app.js", "/static/app.css"):
        assert asset in page.text
        assert http.get(asset).status_code == 200
    assert "//cdn" not in page.text and "https://" not in page.text


def _cli(server: RunningServer, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "amanuensis.cli", "jobs", "--server", server.url, *args],
                          capture_output=True, text=True, timeout=JOB_TIMEOUT_S)


def test_cli_submit_wait_status_fetch(server, tmp_path):
    submitted = _cli(server, "submit", str(JFK))
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    assert job_id.startswith("job_")
    waited = _cli(server, "wait", job_id, "--format", "text", "--progress")
    assert waited.returncode == 0, waited.stderr
    assert set(words(waited.stdout)) >= JFK_WORDS
    assert "100%" in waited.stderr  # the progress bar
    status = json.loads(_cli(server, "status", job_id).stdout)
    assert status["status"] == "done" and status["id"] == job_id
    target = tmp_path / "jfk.srt"
    assert _cli(server, "fetch", job_id, "--format", "srt", "-o", str(target)).returncode == 0
    assert _first_cue_starts_at_the_speech(target.read_text())
    both = _cli(server, "submit", str(JFK), "--wait", "--format", "vtt")
    assert both.returncode == 0 and both.stdout.startswith("WEBVTT"), both.stderr


def test_cli_errors_are_one_line(server, tmp_path):
    missing = _cli(server, "fetch", "job_nope")
    assert missing.returncode == 2 and "no job with id" in missing.stderr
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"junk")
    refused = _cli(server, "submit", str(junk))
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    offline = subprocess.run([sys.executable, "-m", "amanuensis.cli", "jobs", "--server", "http://127.0.0.1:9",
                              "status"], capture_output=True, text=True, timeout=60)
    assert offline.returncode == 1 and "cannot reach the server" in offline.stderr


def test_jobs_and_the_page_need_the_api_key_when_one_is_set(tmp_path):
    with run_server(tmp_path, "--api-key", "sesame", "--data-dir", str(tmp_path / "data")) as server, \
            httpx.Client(base_url=server.url, timeout=60) as client:
        assert_error(client.get("/v1/jobs"), 401, None, "invalid_api_key")
        assert_error(client.post("/v1/jobs", files=upload(JFK)), 401, None, "invalid_api_key")
        assert_error(client.get("/"), 401, None, "invalid_api_key")
        assert_error(client.get("/static/app.js"), 401, None, "invalid_api_key")
        keyed = {"Authorization": "Bearer sesame"}
        assert client.get("/", headers=keyed).status_code == 200
        assert client.get("/static/app.js", headers=keyed).status_code == 200
        job = client.post("/v1/jobs", files=upload(JFK), headers=keyed)
        assert job.status_code == 202
        events = client.get(f"/v1/jobs/{job.json()['id']}/events", headers=keyed, timeout=JOB_TIMEOUT_S)
        assert "event: done" in events.text


def test_a_second_server_on_the_same_data_directory_refuses_jobs(server, tmp_path):
    data = next(arg for arg in reversed(server.process.args) if arg.endswith("data"))
    with run_server(tmp_path, "--data-dir", data) as second, httpx.Client(base_url=second.url) as client:
        assert_error(client.get("/v1/jobs"), 503, None, "jobs_unavailable")
        assert client.get("/ready").status_code == 200  # the rest of the server works
