"""`amanuensis bench soak` for half a minute against a real server: one stream of speech, file requests,
jobs and a round of each misbehaving client; the report has its fields, filled."""

from __future__ import annotations

import json

import pytest

from amanuensis.bench import soak

from .server_fixtures import run_server

pytestmark = pytest.mark.slow


def test_a_short_soak_reports_every_field(tmp_path, capsys):
    with run_server(tmp_path, "--max-realtime-sessions", "6", "--realtime-idle-timeout", "5") as server:
        assert soak.main(["--server", server.url, "--minutes", "0.5", "--streams", "1", "--file-every", "5",
                          "--job-every", "15", "--misbehave-every", "20", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["minutes"], report["streams"]) == (0.5, 1)
    assert report["start"]["rss_mb"] > 50 and report["end"]["rss_mb"] > 50
    assert report["start"]["sessions_open"] == 0
    [minute] = report["per_minute"]
    assert minute["minute"] == 1 and minute["delta_words"] > 0 and 0 < minute["delta_p50_s"] <= minute["delta_p95_s"]
    assert minute["files"] >= 3 and 0 < minute["file_p50_s"] <= minute["file_p95_s"]
    assert minute["rss_mb"] > 50 and minute["sessions_open_max"] >= 1
    assert report["totals"]["jobs_done"] >= 1 and report["totals"]["turns"] >= 1
    assert report["errors"]["well_behaved"] == 0, report["errors"]
    assert set(report["misbehaving"]) == {"silent", "non_reading", "mid_turn"}
    assert report["misbehaving"]["silent"][0].startswith("closed 1008"), report["misbehaving"]
    assert report["summary"]["delta_p95_first5_s"] == minute["delta_p95_s"]
    assert report["machine"]["cpus"] >= 1


@pytest.mark.parametrize("argv", [["--minutes", "0"], ["--streams", "0"], ["--server", "http://example.com:9004"]])
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        soak.main(argv)
    assert exited.value.code == 2
