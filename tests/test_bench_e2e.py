"""amanuensis bench e2e: runs peers and us on the same audio and ends with one JSON line."""

from __future__ import annotations

import json

import pytest

from amanuensis.audio import SAMPLE_RATE, decode_audio
from amanuensis.bench import e2e, machine

from .conftest import DATA


def test_word_error_rate_normalises_before_counting():
    assert e2e.word_error_rate(["Mr. Smith, 2 dogs!"], ["mister smith two dogs"]) == 0.0
    assert e2e.word_error_rate(["the cat sat down"], ["the cat down"]) == pytest.approx(0.25)


def test_the_machine_is_named_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9R14\n", encoding="utf-8")
    assert machine.cpu_model(cpuinfo) == "AMD EPYC 9R14"
    assert machine.cpu_model(tmp_path / "missing") != ""
    line = machine.summary({"cpu": "AMD EPYC 9R14", "cpus": 2, "load": 0.5, "load_end": 1.25, "ctranslate2": "4.8.5",
                            "device": "cpu", "compute_type": "int8", "decoders": 2, "threads_per_decoder": 1,
                            "frontend": "cpu (c-avx2)"})
    assert line == ("machine: AMD EPYC 9R14, 2 cpus, load 0.5 -> 1.25, ctranslate2 4.8.5, cpu int8, "
                    "ours 2 decoder(s) x 1 thread(s), front end cpu (c-avx2)")


def test_the_report_names_the_front_end_kernel_that_ran(transcriber):
    """Features from the compiled kernel and from its numpy fallback differ by rounding, enough to change
    a decoded word: a report says which one ran."""
    from amanuensis.features.backends.cpu import CpuBackend, kernel_available
    from amanuensis.features.chain import FrontendChain

    info = machine.describe(transcriber)
    label = transcriber.frontend.active
    assert info["frontend"].startswith(label)
    if label == "cpu":
        assert info["frontend"] in ("cpu (numpy)", *(f"cpu (c-{isa})" for isa in ("avx2", "avx512", "baseline")))
        assert ("(c-" in info["frontend"]) == kernel_available()
    assert machine.frontend_in_use(None) is None
    assert machine.frontend_in_use(FrontendChain([CpuBackend(use_kernel=False)])) == "cpu (numpy)"


def test_refs_are_read_from_a_tsv(tmp_path):
    tsv = tmp_path / "refs.tsv"
    tsv.write_text("a/b.wav\tHello there.\n\nc.flac\tBye\n", encoding="utf-8")
    assert e2e.read_refs(tsv) == {"a/b.wav": "Hello there.", "c.flac": "Bye"}


def test_unknown_modes_are_refused(capsys):
    with pytest.raises(SystemExit):
        e2e.main(["--modes", "nonsense", str(DATA / "whisper" / "jfk.flac")])
    assert "unknown mode" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_prints_rows_for_peer_and_us_with_wer(capsys, tmp_path):
    files = [str(DATA / "whisper" / "jfk.flac"), str(DATA / "lhotse" / "LJ002-0020.wav")]
    code = e2e.main([*files, "--refs", str(DATA / "transcripts.tsv"), "--concat", "--json",
                     "--modes", "fw-beam5,amanuensis", "--texts", str(tmp_path / "texts.tsv")])
    assert code == 0
    out = capsys.readouterr().out.strip().splitlines()
    report = json.loads(out[-1])
    assert "texts" not in report
    lines = [line.split("\t") for line in (tmp_path / "texts.tsv").read_text(encoding="utf-8").splitlines()]
    assert lines[0] == ["index", "source", "mode", "reference", "text"]
    assert [(row[0], row[1], row[2]) for row in lines[1:]] == [  # one joined recording per source and mode
        ("0", "whisper", "fw-beam5"), ("1", "lhotse", "fw-beam5"),
        ("0", "whisper", "amanuensis"), ("1", "lhotse", "amanuensis")]
    for row in (lines[1], lines[3]):
        assert "ask not what your country" in row[3].lower() and "ask not what your country" in row[4].lower()
    assert report["audio_seconds"] > 10
    names = [row["name"] for row in report["rows"]]
    assert names == ["fw-beam5", "amanuensis"]
    for row in report["rows"]:
        assert set(row) == {"name", "seconds", "realtime", "wer"}
        assert row["seconds"] > 0 and row["realtime"] > 0
        assert 0.0 <= row["wer"] < 0.2
    assert report["profile"]["chunks"] >= 1
    info = report["machine"]
    assert info["cpus"] >= 1 and info["cpu"] and info["ctranslate2"]
    assert info["decoders"] >= 1 and info["threads_per_decoder"] >= 1
    assert out[0].startswith("machine: ") and f"{info['cpus']} cpus" in out[0]


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
    for part in report["sources"].values():  # each source's spread over the orders, too
        (row,) = part["rows"]
        assert len(row["wer_by_order"]) == 3
        assert min(row["wer_by_order"]) <= row["wer"] <= max(row["wer_by_order"])
    assert sum("WER % by order" in line for line in out) == 1 + len(report["sources"])


def test_orders_need_concat(capsys):
    with pytest.raises(SystemExit):
        e2e.main(["--orders", "2", str(DATA / "whisper" / "jfk.flac")])
    assert "--orders needs --concat" in capsys.readouterr().err


def test_several_refs_files_give_sources_by_first_path_component(tmp_path):
    for name in ("setA", "setB"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "transcripts.tsv").write_text(
            "corpus1/x.wav\tone\ncorpus1/deep/y.wav\ttwo\ncorpus2/z.wav\tthree\n", encoding="utf-8")
    parser_args = e2e.argparse.Namespace(
        files=[], refs=[str(tmp_path / "setA" / "transcripts.tsv"), str(tmp_path / "setB" / "transcripts.tsv")],
        limit=0)
    clips = e2e._clips(parser_args)
    assert [(s, r) for s, _, r in clips] == [
        ("setA/corpus1", "one"), ("setA/corpus1", "two"), ("setA/corpus2", "three"),
        ("setB/corpus1", "one"), ("setB/corpus1", "two"), ("setB/corpus2", "three")]
    assert clips[1][1] == tmp_path / "setA" / "corpus1" / "deep" / "y.wav"
    # files named on the command line take their source and reference from the TSV that lists them
    one = e2e.argparse.Namespace(files=[str(tmp_path / "setB" / "corpus2" / "z.wav")],
                                 refs=[str(tmp_path / "setB" / "transcripts.tsv")], limit=0)
    assert [(s, r) for s, _, r in e2e._clips(one)] == [("corpus2", "three")]


def test_peer_rows_use_a_fresh_unmodified_faster_whisper_model(transcriber):
    from faster_whisper.feature_extractor import FeatureExtractor

    peer = e2e.peer_model(transcriber, threads=1)
    assert peer.model is not transcriber.recognizer.model
    assert type(peer.feature_extractor) is FeatureExtractor
    assert not isinstance(transcriber.recognizer.frontend, FeatureExtractor)


@pytest.mark.slow
@pytest.mark.parametrize("concat", [True, False])
def test_the_report_has_a_table_per_source(capsys, concat):
    files = [str(DATA / "whisper" / "jfk.flac"), str(DATA / "TTS" / "LJ001-0001.wav"),
             str(DATA / "TTS" / "LJ001-0002.wav")]
    code = e2e.main([*files, "--refs", str(DATA / "transcripts.tsv"), "--json",
                     "--modes", "fw-batched-beam1,amanuensis-beam1", *(["--concat"] if concat else [])])
    assert code == 0
    out = capsys.readouterr().out.strip().splitlines()
    report = json.loads(out[-1])
    assert list(report["sources"]) == ["whisper", "TTS"]
    seconds = sum(p["audio_seconds"] for p in report["sources"].values())
    assert seconds == pytest.approx(report["audio_seconds"], abs=0.02)
    for part in report["sources"].values():
        assert [r["name"] for r in part["rows"]] == ["fw-batched-beam1", "amanuensis-beam1"]
        assert all(0.0 <= r["wer"] < 0.3 and r["seconds"] > 0 for r in part["rows"])
    for overall in report["rows"]:
        per_source = [r for p in report["sources"].values() for r in p["rows"] if r["name"] == overall["name"]]
        assert overall["seconds"] == pytest.approx(sum(r["seconds"] for r in per_source), abs=0.01)
    assert "-- whisper" in "\n".join(out) and "-- TTS" in "\n".join(out)


def test_a_fresh_sampler_repeats_the_fallback_draws_whatever_was_sampled_before(transcriber):
    """CTranslate2 ignores a new seed once a worker has drawn: the bench swaps in a new model before
    each source, so temperature-fallback draws repeat (and without the swap they do not)."""
    import ctranslate2
    from faster_whisper import WhisperModel

    whisper = WhisperModel(transcriber.info.path, device="cpu", compute_type=transcriber.compute_type,
                           cpu_threads=2, local_files_only=True)
    audio = decode_audio(DATA / "whisper" / "jfk.flac")
    features = ctranslate2.StorageView.from_array(whisper.feature_extractor(audio)[None, :, :3000].copy())
    start = whisper.hf_tokenizer.token_to_id("<|startoftranscript|>")

    def draw() -> list[list[int]]:
        ctranslate2.set_random_seed(0)
        result = whisper.model.generate(features, [[start]], beam_size=1, num_hypotheses=4, sampling_topk=0,
                                        sampling_temperature=1.0, max_length=40)
        return result[0].sequences_ids

    e2e.fresh_sampler(whisper, transcriber.info.path, transcriber.compute_type, 2)
    first = draw()
    assert draw() != first  # the seed alone does not restart the draws
    e2e.fresh_sampler(whisper, transcriber.info.path, transcriber.compute_type, 2)
    assert draw() == first
