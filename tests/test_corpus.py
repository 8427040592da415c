"""`amanuensis batch`: outputs for every file, failures recorded, resume after a kill, options digest."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import time

import pytest

from amanuensis.asr.decoding import DecodeSettings
from amanuensis.cli import main
from amanuensis.corpus import Manifest, ManifestEntry, collect_inputs, options_digest
from amanuensis.corpus.local import plan_parallelism
from amanuensis.evaluation import normalize
from amanuensis.pipeline import TranscribeOptions

from .corpus_fixtures import CLIPS, JUNK, batch_command, batch_env, latest, make_corpus, read_manifest, run_batch


def test_every_file_transcribed_junk_recorded_and_rerun_skips(tmp_path, references):
    corpus = make_corpus(tmp_path)
    out = tmp_path / "out"
    first = run_batch(str(corpus), "-o", str(out), "--format", "text,json", "--workers", "2", "--threads", "1")
    assert first.returncode == 1, first.stderr
    summary = first.stderr.strip().splitlines()[-1]
    assert "9 files: 8 transcribed, 0 already done, 1 failed" in summary and "manifest.jsonl" in summary
    for relative in CLIPS:
        stem = relative.rsplit(".", 1)[0]
        text = (out / f"{stem}.txt").read_text()
        assert text.strip(), relative
        assert json.loads((out / f"{stem}.json").read_text())["text"].strip() == text.strip()
    assert normalize((out / "read/jfk.txt").read_text()) == normalize(references["whisper/jfk.flac"])
    entries = latest(out)
    assert len(entries) == 9
    broken = entries[str(corpus / JUNK)]
    assert broken["status"] == "failed" and "audio" in broken["error"] and broken["outputs"] == []
    done = [e for e in entries.values() if e["status"] == "done"]
    assert {e["worker"] for e in done} == {"local-0", "local-1"}
    for entry in done:
        assert entry["language"] == "en" and entry["duration"] > 0 and len(entry["sha256"]) == 64
        assert entry["outputs"] == [entry["outputs"][0], entry["outputs"][0][:-3] + "json"]
    assert not list(out.rglob("*.tmp"))

    again = run_batch(str(corpus), "-o", str(out), "--format", "text,json")
    assert again.returncode == 1
    assert "9 files: 0 transcribed, 8 already done, 1 failed" in again.stderr
    lines = read_manifest(out)
    assert len(lines) == 10 and lines[-1]["path"] == str(corpus / JUNK) and lines[-1]["attempts"] == 2

    (corpus / JUNK).unlink()
    fixed = run_batch(str(corpus), "-o", str(out), "--format", "text,json")
    assert fixed.returncode == 0, fixed.stderr
    assert "8 files: 0 transcribed, 8 already done, 0 failed" in fixed.stderr


def test_killed_run_resumes_redoing_only_what_was_not_done(tmp_path):
    corpus = make_corpus(tmp_path, junk=False)
    out = tmp_path / "out"
    args = (str(corpus), "-o", str(out), "--workers", "1", "--threads", "1", "--beam-size", "1")
    process = subprocess.Popen(batch_command(*args), env=batch_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while len(read_manifest(out)) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    before = latest(out)
    assert 3 <= len(before) < len(CLIPS), "the kill came too late to test resuming"
    assert all(e["status"] == "done" for e in before.values())
    for entry in before.values():  # a done line is written only after its outputs
        assert all((out / o).is_file() for o in entry["outputs"])

    resumed = run_batch(*args)
    assert resumed.returncode == 0, resumed.stderr
    lines = read_manifest(out)
    redone = [e["path"] for e in lines[len(before):]]
    assert sorted(redone) == sorted(set(str(corpus / c) for c in CLIPS) - set(before))
    assert f"{len(CLIPS) - len(before)} transcribed, {len(before)} already done, 0 failed" in resumed.stderr
    assert len(list(out.rglob("*.txt"))) == len(CLIPS) and not list(out.rglob("*.tmp"))


def test_changed_options_redo_the_files(tmp_path):
    corpus = tmp_path / "in"
    corpus.mkdir()
    for name in ("read/jfk.flac", "librispeech/right.flac"):
        (corpus / name.split("/")[1]).write_bytes((make_corpus(tmp_path, junk=False) / name).read_bytes())
    out = tmp_path / "out"
    assert main(["batch", str(corpus), "-o", str(out), "--beam-size", "1"]) == 0
    assert main(["batch", str(corpus), "-o", str(out), "--beam-size", "1"]) == 0
    assert len(read_manifest(out)) == 2
    assert main(["batch", str(corpus), "-o", str(out), "--beam-size", "2"]) == 0
    lines = read_manifest(out)
    assert len(lines) == 4 and lines[2]["options"] != lines[0]["options"]
    (out / "jfk.txt").unlink()  # an output gone missing is redone too
    assert main(["batch", str(corpus), "-o", str(out), "--beam-size", "2"]) == 0
    assert len(read_manifest(out)) == 5 and (out / "jfk.txt").is_file()


def test_options_digest_follows_every_field_model_and_formats():
    base = options_digest(TranscribeOptions(), "tiny.en", ["text"])
    assert base == options_digest(TranscribeOptions(), "tiny.en", ["text", "text"])
    for field in dataclasses.fields(TranscribeOptions):
        value = getattr(TranscribeOptions(), field.name)
        if field.name == "decoding":
            changed = DecodeSettings(window_margin_s=None)
        elif isinstance(value, bool):
            changed = not value
        elif isinstance(value, int):
            changed = value + 1
        elif isinstance(value, str):
            changed = value + "x"
        elif value is None:
            changed = 2 if "speakers" in field.name else "en"
        else:
            changed = 0.5
        assert options_digest(TranscribeOptions(**{field.name: changed}), "tiny.en", ["text"]) != base, field.name
    assert options_digest(TranscribeOptions(), "base", ["text"]) != base
    assert options_digest(TranscribeOptions(), "tiny.en", ["text", "srt"]) != base


def test_manifest_ignores_and_repairs_a_torn_last_line(tmp_path):
    path = tmp_path / "manifest.jsonl"
    entry = ManifestEntry(path="/a.wav", size=1, sha256="x", options="d", status="done", outputs=["a.txt"])
    path.write_text(entry.to_json() + "\n" + entry.to_json()[:30])
    manifest = Manifest(path)
    assert list(manifest.entries) == ["/a.wav"]
    manifest.append(dataclasses.replace(entry, path="/b.wav"))
    assert [json.loads(line)["path"] for line in path.read_text().splitlines() if line.startswith("{\"path\":\"/")
            and line.endswith("}")] == ["/a.wav", "/b.wav"]
    assert list(Manifest(path).entries) == ["/a.wav", "/b.wav"]


def test_inputs_folders_lists_and_clashing_names(tmp_path):
    corpus = make_corpus(tmp_path)
    (corpus / "read" / "jfk.mp3").write_bytes(b"x")  # beside jfk.flac: both keep their suffix
    listing = tmp_path / "more.txt"
    listing.write_text("# a comment\ncorpus/librispeech/left.flac\n\n" + str(tmp_path / "missing.wav") + "\n")
    files = collect_inputs([corpus / "read", listing])
    stems = {str(f.stem): str(f.path) for f in files}
    assert stems == {
        "corpus/read/jfk.flac": str(corpus / "read/jfk.flac"),
        "corpus/read/jfk.mp3": str(corpus / "read/jfk.mp3"),
        "corpus/read/lj/LJ001-0001": str(corpus / "read/lj/LJ001-0001.wav"),
        "corpus/read/lj/LJ001-0002": str(corpus / "read/lj/LJ001-0002.wav"),
        "corpus/librispeech/left": str(corpus / "librispeech/left.flac"),
        "missing": str(tmp_path / "missing.wav"),
    }
    assert [str(p) for p in files[0].outputs(["text", "srt"])][0].endswith(".txt")


def test_missing_listed_file_fails_alone(tmp_path):
    corpus = make_corpus(tmp_path, junk=False)
    listing = tmp_path / "list.lst"
    listing.write_text("corpus/librispeech/right.flac\ncorpus/gone.wav\n")
    out = tmp_path / "out"
    assert main(["batch", str(listing), "-o", str(out), "--beam-size", "1"]) == 1
    entries = latest(out)
    assert entries[str(corpus / "gone.wav")]["status"] == "failed"
    assert "cannot read" in entries[str(corpus / "gone.wav")]["error"]
    assert entries[str(corpus / "librispeech/right.flac")]["status"] == "done"
    assert (out / "librispeech/right.txt").is_file()


@pytest.mark.parametrize("args, message", [
    (["nowhere", "-o", "OUT"], "no such file or folder: nowhere"),
    (["IN", "-o", "OUT", "--format", "json,verbose_json"], "both write .json"),
    (["IN", "-o", "OUT", "--format", "docx"], "unknown format 'docx'"),
    (["IN", "-o", "OUT", "--language", "de"], "language 'de' is not supported"),
    (["IN", "-o", "OUT", "--replicas", "2"], "--replicas and --gpus-per-replica need --ray"),
    (["IN", "-o", "OUT", "--model", "no-such-model"], "no-such-model"),
    (["IN", "-o", "OUT", "--ray", "--workers", "2"], "with --ray, use --replicas"),
])
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys, args, message):
    (tmp_path / "IN").mkdir()
    (tmp_path / "IN" / "a.wav").write_bytes(b"x")
    args = [str(tmp_path / a) if a in ("IN", "OUT") else a for a in args]
    try:
        code = main(["batch", *args])
    except SystemExit as exc:  # argparse's own checks (a flag's type)
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err


def test_ray_flag_without_ray_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    (tmp_path / "a.flac").write_bytes((make_corpus(tmp_path, junk=False) / "librispeech/right.flac").read_bytes())
    assert main(["batch", str(tmp_path / "a.flac"), "-o", str(tmp_path / "out"), "--ray"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "amanuensis batch: error: --ray needs Ray, which is not installed: pip install 'amanuensis[ray]'"


def test_progress_bar_counts_files_and_audio_hours(capsys):
    from amanuensis.corpus.progress import CorpusProgress

    progress = CorpusProgress(total_seconds=360.0, total_files=4, enabled=True)
    progress.advance(180.0, failed=False)
    progress.advance(36.0, failed=True)
    progress.close()
    err = capsys.readouterr().err
    assert "60%" in err and "2/4 files, 1 failed, 0.06 h audio" in err, err
    assert CorpusProgress(10.0, 2, enabled=False).bar is None


def test_parallelism_fills_the_cores():
    assert plan_parallelism(cores=2) == (2, 1)
    assert plan_parallelism(cores=8) == (8, 1)
    assert plan_parallelism(cores=8, threads=4) == (2, 4)
    assert plan_parallelism(cores=8, workers=2) == (2, 4)
    assert plan_parallelism(cores=2, workers=3, threads=2) == (3, 2)


def test_corpus_bench_runs_configurations_side_by_side(tmp_path, capsys):
    from amanuensis.bench.corpus import main as bench

    corpus = tmp_path / "in"
    corpus.mkdir()
    (corpus / "right.flac").write_bytes((make_corpus(tmp_path, junk=False) / "librispeech/right.flac").read_bytes())
    assert bench([str(corpus), "--configs", "1x1,2x1", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "round 1   1x1:" in out and "round 1   2x1:" in out and "(1 files" in out
    assert "  1x1:" in out and "ratio 1.00" in out and "  2x1:" in out
    assert out.startswith("machine: "), "the machine is named first"
