"""Speaker outputs without a model: diarized_json and RTTM, overlapped speech detected and marked on
words and segments, known-speaker option parsing, and the diarization bench's RTTM reading and scoring."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from amanuensis.bench.diarize import Recording, read_rttm, score
from amanuensis.diarize.assign import assign_speakers
from amanuensis.diarize.turns import SpeakerTurn, to_turns
from amanuensis.errors import OptionsError
from amanuensis.formats import render
from amanuensis.models import resolve_model
from amanuensis.options import BY_NAME, TranscribeOptions
from amanuensis.transcript import Segment, Transcript, Word

CLIP = "data:audio/wav;base64,UklGRiQAAABXQVZF"


def transcript() -> Transcript:
    words = [Word(" Hello", 0.0, 0.5, 0.9), Word(" there.", 0.5, 1.0, 0.9), Word(" Hi", 1.5, 1.8, 0.9),
             Word(" you.", 1.8, 2.2, 0.9)]
    return Transcript("Hello there. Hi you.", "en", 3.0, [Segment(0, 0.0, 2.2, " Hello there. Hi you.", words=words)])


def labelled() -> Transcript:
    turns = [SpeakerTurn(0.0, 1.2, "SPEAKER_00"), SpeakerTurn(1.4, 2.5, "SPEAKER_01"),
             SpeakerTurn(1.8, 2.5, "SPEAKER_00", overlap=True)]
    return assign_speakers(transcript(), turns)


def test_words_take_the_main_speaker_and_overlap_is_marked():
    result = labelled()
    assert [s.speaker for s in result.segments] == ["SPEAKER_00", "SPEAKER_01"]
    assert [w.overlap for s in result.segments for w in s.words] == [False, False, False, True]
    assert [s.overlap for s in result.segments] == [False, True]
    data = json.loads(render(result, "json"))
    assert "overlap" not in data["segments"][0] and data["segments"][1]["overlap"] is True
    assert [w.get("overlap", False) for w in data["segments"][1]["words"]] == [False, True]


def test_diarized_json_is_openais_shape():
    data = json.loads(render(labelled(), "diarized_json"))
    assert data["task"] == "transcribe" and data["duration"] == 3.0 and data["text"] == "Hello there. Hi you."
    assert [(s["type"], s["speaker"], s["text"]) for s in data["segments"]] == [
        ("transcript.text.segment", "SPEAKER_00", "Hello there."), ("transcript.text.segment", "SPEAKER_01", "Hi you.")]
    assert len({s["id"] for s in data["segments"]}) == 2


def test_rttm_lines_read_back_as_the_segments(tmp_path: Path):
    path = tmp_path / "talk.rttm"
    path.write_text(render(labelled(), "rttm", name="talk"))
    assert read_rttm(path) == {"talk": [(0.0, 1.0, "SPEAKER_00"), (1.5, 2.2, "SPEAKER_01")]}
    assert render(labelled(), "rttm").split()[1] == "audio"  # no recording named


def test_a_second_speaker_becomes_turns_marked_overlap():
    speakers = np.array([0] * 60 + [1] * 40)
    second = np.full(100, -1)
    second[20:60] = 1  # speaker 1 talks over speaker 0 for 40 frames
    turns = to_turns(speakers, 100, second)
    assert [(t.start, t.end, t.speaker, t.overlap) for t in turns] == [
        (0.0, 0.6, "SPEAKER_00", False), (0.2, 0.6, "SPEAKER_01", True), (0.6, 1.0, "SPEAKER_01", False)]


def test_known_speakers_parse_and_are_checked():
    option = BY_NAME["known_speakers"]
    assert option.parse(f"Ada Lovelace={CLIP}") == (("Ada Lovelace", CLIP),)
    for bad in ("ada", f"={CLIP}", "ada=clip.wav", "ada=data:audio/wav;base64,@@", "ada=data:audio/wav,UklG"):
        with pytest.raises(OptionsError) as refused:
            option.parse(bad)
        assert refused.value.param == "known_speakers"
    with pytest.raises(OptionsError, match="different name"):
        option.check((("a", CLIP), ("a", CLIP)))
    with pytest.raises(OptionsError, match="at most 4"):
        option.check(tuple((str(i), CLIP) for i in range(5)))
    stored = json.loads(json.dumps(TranscribeOptions(known_speakers=(("a", CLIP),)).to_dict()))
    assert TranscribeOptions.from_dict(stored).known_speakers == (("a", CLIP),)


def test_bench_scores_parts_with_pyannote():
    reference = [(0.0, 4.0, "a"), (5.0, 9.0, "b")]
    recordings = [Recording("r", np.zeros(160000, dtype=np.float32), reference)]
    perfect = score(recordings, {"r": [(0.0, 4.0, "x"), (5.0, 9.0, "y")]})
    assert perfect["pooled"]["collar 0"]["der"] == pytest.approx(0.0)
    merged = score(recordings, {"r": [(0.0, 9.0, "x")]})["files"]["r"]["collar 0"]
    assert merged["confusion"] == pytest.approx(0.5) and merged["false"] == pytest.approx(1 / 8)
    assert merged["missed"] == 0.0 and merged["der"] == pytest.approx(0.625)


def test_cli_speaker_flag_reads_the_clip_and_speaker_formats_turn_diarization_on(tmp_path: Path, capsys):
    from amanuensis.cli import build_parser
    from amanuensis.cli.flags import options_from_args, speakers_for_formats
    from amanuensis.options import CLI

    clip = tmp_path / "ada.wav"
    clip.write_bytes(b"RIFF$\x00\x00\x00WAVE")
    args = build_parser().parse_args(["transcribe", "talk.wav", "--speaker", f"ada={clip}", "--speaker", f"bob={CLIP}"])
    options = options_from_args(args, CLI)
    assert options.known_speakers == (("ada", "data:audio/x-wav;base64,UklGRiQAAABXQVZF"), ("bob", CLIP))
    assert not options.diarize and speakers_for_formats(options, ["text", "rttm"]).diarize
    with pytest.raises(OptionsError) as refused:
        options.validate(resolve_model(None))
    assert refused.value.param == "known_speakers"
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(["transcribe", "talk.wav", "--speaker", f"ada={tmp_path / 'missing.wav'}"])
    assert stopped.value.code == 2 and "--speaker ada: cannot read" in capsys.readouterr().err
