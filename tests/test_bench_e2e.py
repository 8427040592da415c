"""amanuensis bench e2e: runs peers and us on the same audio and ends with one JSON line."""

from __future__ import annotations

import json

import pytest

from amanuensis.audio import SAMPLE_RATE, decode_audio
from amanuensis.bench import e2e

from .conftest import DATA


def test_word_error_rate_normalises_before_counting():
    assert e2e.word_error_rate(["Mr. Smith, 2 dogs!"], ["mister smith two dogs"]) == 0.0
    assert e2e.word_error_rate(["the cat sat down"], ["the cat down"]) == pytest.approx(0.25)


def test_refs_are_read_from_a_tsv(tmp_path):
    tsv = tmp_path / "refs.tsv"
    tsv.write_text("a/b.wav\tHello there.\n\nc.flac\tBye\n", encoding="utf-8")
    assert e2e.read_refs(tsv) == {"a/b.wav": "Hello there.", "c.flac": "Bye"}


def test_unknown_modes_are_refused(capsys):
    with pytest.raises(SystemExit):
        e2e.main(["--modes", "nonsense", str(DATA / "whisper" / "jfk.flac")])
    assert "unknown mode" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_prints_rows_for_peer_and_us_with_wer(capsys):
    files = [str(DATA / "whisper" / "jfk.flac"), str(DATA / "lhotse" / "LJ002-0020.wav")]
    code = e2e.main([*files, "--refs", str(DATA / "transcripts.tsv"), "--concat", "--json",
                     "--modes", "fw-beam5,amanuensis"])
    assert code == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["audio_seconds"] > 10
    names = [row["name"] for row in report["rows"]]
    assert names == ["fw-beam5", "amanuensis"]
    for row in report["rows"]:
        assert set(row) == {"name", "seconds", "realtime", "wer"}
        assert row["seconds"] > 0 and row["realtime"] > 0
        assert 0.0 <= row["wer"] < 0.2
    assert report["profile"]["chunks"] >= 1


@pytest.mark.slow
def test_orders_join_the_files_in_several_orders_and_report_each(capsys):
    files = [str(DATA / "whisper" / "jfk.flac"), str(DATA / "lhotse" / "LJ002-0020.wav"),
             str(DATA / "TTS" / "LJ001-0001.wav")]
    code = e2e.main([*files, "--refs", str(DATA / "transcripts.tsv"), "--concat", "--orders", "3", "--json",
                     "--modes", "amanuensis-beam1"])
    assert code == 0
    out = capsys.readouterr().out.strip().splitlines()
    report = json.loads(out[-1])
    assert report["orders"] == 3
    row = report["rows"][0]
    assert len(row["wer_by_order"]) == 3 and all(0.0 <= w < 0.2 for w in row["wer_by_order"])
    assert min(row["wer_by_order"]) <= row["wer"] <= max(row["wer_by_order"])
    single = sum(decode_audio(f).shape[0] for f in files) / SAMPLE_RATE
    assert report["audio_seconds"] == pytest.approx(3 * single, abs=0.1)
    assert any("WER % by order" in line for line in out)


def test_orders_need_concat(capsys):
    with pytest.raises(SystemExit):
        e2e.main(["--orders", "2", str(DATA / "whisper" / "jfk.flac")])
    assert "--orders needs --concat" in capsys.readouterr().err
