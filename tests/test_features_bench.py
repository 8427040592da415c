"""`amanuensis bench frontend` runs, prints its table, and ends with the JSON line the issue specifies."""

from __future__ import annotations

import json

from amanuensis.bench import frontend


def test_bench_frontend_json(capsys):
    code = frontend.main(
        [
            "--seconds",
            "4",
            "--json",
            "--repeat",
            "1",
            "--backends",
            "cpu,numpy,reference",
            "--peers",
            "faster_whisper",
            "--batch-frames",
            "1,100",
        ]
    )
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    payload = json.loads(lines[-1])
    assert payload["audio_seconds"] == 4.0
    rows = payload["rows"]
    names = [(r["name"], r["batch_frames"]) for r in rows]
    assert names == [
        ("faster_whisper", None),
        ("amanuensis:cpu", None),
        ("amanuensis:cpu", 1),
        ("amanuensis:cpu", 100),
        ("amanuensis:numpy", None),
        ("amanuensis:reference", None),
    ]
    keys = {"name", "backend", "batch_frames", "seconds", "realtime", "vs_faster_whisper", "max_abs_err", "peak_mb"}
    for row in rows:
        assert keys <= set(row)
        assert row["seconds"] > 0 and row["realtime"] > 0 and row["peak_mb"] >= 0
        assert row["max_abs_err"] <= 1e-4
    assert rows[0]["vs_faster_whisper"] == 1.0
    assert any("amanuensis:cpu" in line for line in lines[:-1]), "the table comes before the JSON line"
    assert lines[0].startswith("machine: ") and payload["machine"]["cpus"] >= 1, "the machine is named first"


def test_missing_peer_is_skipped(capsys):
    code = frontend.main(
        [
            "--seconds",
            "1",
            "--json",
            "--repeat",
            "1",
            "--backends",
            "cpu",
            "--peers",
            "no_such_peer_package",
            "--batch-frames",
            "",
        ]
    )
    assert code == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["rows"]
    assert [r["name"] for r in rows] == ["amanuensis:cpu"]
    assert rows[0]["vs_faster_whisper"] is None
