"""Subtitles to a style guide: cues built from word times, checked on real speech of both dev sets.

The clips: the two longest of every source in speech/ and speech2/ (chosen from the inventories: 20
clips, about 200 s), transcribed once with word times. Every cue of every clip is parsed back from
SRT and WebVTT and checked against the limits, in the default style and in narrower ones; the
highlighted (karaoke) WebVTT of every clip is loaded by Chromium's track loader."""

from __future__ import annotations

import csv
import dataclasses
import html
import re
from pathlib import Path

import pytest

from amanuensis.formats import render
from amanuensis.options import TranscribeOptions
from amanuensis.subtitles import SubtitleStyle, TimedWord, build_cues, lay_out, timed_words
from amanuensis.transcript import Segment, Transcript, Word

from .conftest import DATA

DEV_SETS = (DATA, DATA.parent / "speech2")
TIME = r"(\d{2}):(\d{2}):(\d{2})[,.](\d{3})"
STYLES = {
    "default": SubtitleStyle(),
    "narrow": SubtitleStyle(max_line_width=28, max_line_count=2, max_cue_seconds=4.0, max_chars_per_second=15.0),
    "one line, 4 words": SubtitleStyle(max_line_width=42, max_line_count=1, max_words_per_line=4),
    "three lines": SubtitleStyle(max_line_width=20, max_line_count=3, max_cue_seconds=5.0),
}
CHROMIUM = Path("/usr/bin/chromium")


def dev_clips(per_source: int = 2) -> list[Path]:
    """The `per_source` longest clips of every source (the first folder of a path) of both dev sets."""
    chosen = []
    for root in DEV_SETS:
        with open(root / "inventory.tsv", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        by_source: dict[str, list[dict]] = {}
        for row in rows:
            by_source.setdefault(row["path"].split("/")[0], []).append(row)
        for source in sorted(by_source):
            longest = sorted(by_source[source], key=lambda row: -float(row["seconds"]))[:per_source]
            chosen += [root / row["path"] for row in longest]
    return chosen


@dataclasses.dataclass
class Entry:
    start: float
    end: float
    lines: list[str]
    """The text lines as written (with markup and the SRT speaker label)."""

    @property
    def plain(self) -> list[str]:
        """The lines without markup or speaker label."""
        return [re.sub(r"^\[[^\]]+\] ", "", re.sub(r"</?(u|v)( [^>]*)?>", "", line)) for line in self.lines]


def _seconds(groups: tuple[str, ...]) -> float:
    h, m, s, ms = (int(x) for x in groups)
    return h * 3600 + m * 60 + s + ms / 1000


def parse(text: str, fmt: str) -> list[Entry]:
    """SubRip or WebVTT parsed strictly: numbering, time lines, non-blank text lines, ordered times."""
    blocks = text.strip().split("\n\n")
    if fmt == "vtt":
        assert blocks[0] == "WEBVTT"
        blocks = blocks[1:]
    out: list[Entry] = []
    for number, block in enumerate(blocks, start=1):
        lines = block.split("\n")
        if fmt == "srt":
            assert lines[0] == str(number), block
            lines = lines[1:]
        match = re.fullmatch(f"{TIME} --> {TIME}", lines[0])
        assert match, block
        entry = Entry(_seconds(match.groups()[:4]), _seconds(match.groups()[4:]), lines[1:])
        assert entry.lines and all(line.strip() for line in entry.lines), block
        assert entry.start < entry.end, block
        assert not out or out[-1].end <= entry.start, (out[-1], entry)
        out.append(entry)
    return out


def check_cues(entries: list[Entry], style: SubtitleStyle, words: list[str]) -> None:
    """Every cue within the style's limits; the cues hold exactly the transcript's words, in order."""
    for k, entry in enumerate(entries):
        assert 1 <= len(entry.lines) <= style.max_line_count, entry
        for line, plain in zip(entry.lines, entry.plain, strict=True):
            count = len(plain.split())
            assert len(re.sub(r"</?u>", "", line)) <= style.max_line_width or count == 1, (line, style)
            assert not style.max_words_per_line or count <= style.max_words_per_line, (line, style)
            assert len(entry.lines) == 1 or count >= 2, f"orphan line in {entry}"
        duration = entry.end - entry.start
        assert duration <= style.max_cue_seconds + 0.0015, entry
        speed = sum(len(line) for line in entry.plain) / duration
        following = entries[k + 1].start if k + 1 < len(entries) else None
        held_to_limit = (following is not None and entry.end >= following - 0.0015) or (
            duration >= style.max_cue_seconds - 0.0015)
        # a cue is read at max_chars_per_second unless the speech is faster: then it stays until the next
        # cue or for max_cue_seconds (ms rounding of the times allows a little over)
        assert speed <= style.max_chars_per_second * 1.01 + 0.05 or held_to_limit, (entry, speed)
    assert [w for e in entries for line in e.plain for w in line.split()] == words


@pytest.fixture(scope="module")
def dev_transcripts(transcriber) -> dict[str, Transcript]:
    return {str(path.relative_to(DATA.parent)): transcriber.transcribe(path, TranscribeOptions(word_timestamps=True))
            for path in dev_clips()}


def without_word_times(transcript: Transcript) -> Transcript:
    """The same transcript as word_timestamps=false gives it: segments without words."""
    segments = [dataclasses.replace(segment, words=None) for segment in transcript.segments]
    return dataclasses.replace(transcript, segments=segments)


def test_the_dev_clips_are_every_source_of_both_sets():
    chosen = {(path.parent.parent.name, path.parent.name) for path in dev_clips()}
    every = {(root.name, path.parent.name) for root in DEV_SETS for path in root.glob("*/*") if path.is_file()}
    assert chosen == every and len(chosen) >= 10


@pytest.mark.slow
@pytest.mark.parametrize("name", STYLES)
def test_every_cue_of_the_dev_clips_keeps_the_style(dev_transcripts, name):
    style = STYLES[name]
    cues_seen = 0
    for clip, transcript in dev_transcripts.items():
        for timed in (transcript, without_word_times(transcript)):
            words = [w.text for w in timed_words(timed)]
            srt = parse(render(timed, "srt", style), "srt")
            vtt = parse(render(timed, "vtt", style), "vtt")
            assert [(e.start, e.end, e.plain) for e in srt] == [(e.start, e.end, e.plain) for e in vtt], clip
            check_cues(srt, style, words)
            cues_seen += len(srt)
    assert cues_seen >= 2 * len(dev_transcripts)


@pytest.mark.slow
def test_word_highlighting_marks_each_word_said_in_turn(dev_transcripts):
    style = SubtitleStyle(highlight_words=True)
    for clip, transcript in dev_transcripts.items():
        for fmt in ("srt", "vtt"):
            entries = parse(render(transcript, fmt, style), fmt)
            check_cues(_cues_of(entries), style, [w.text for w in timed_words(transcript)])
            marked = [re.findall(r"<u>([^<]*)</u>", "\n".join(e.lines)) for e in entries]
            assert all(len(found) <= 1 for found in marked), clip
            said = [found[0] for found in marked if found]
            spoken = [html.unescape(w.text) if fmt == "vtt" else w.text for w in timed_words(transcript)]
            position = 0
            for word in said:  # the marks follow the words in order (ValueError: one out of order)
                position = spoken.index(html.unescape(word) if fmt == "vtt" else word, position) + 1
            # a word is not marked when it has no duration and the next starts with it
            assert len(said) >= len(spoken) - 1, clip


def _cues_of(entries: list[Entry]) -> list[Entry]:
    """Highlighted entries joined back into their cues (consecutive entries with the same plain text)."""
    cues: list[Entry] = []
    for entry in entries:
        if cues and cues[-1].plain == entry.plain and cues[-1].end == entry.start:
            cues[-1] = Entry(cues[-1].start, entry.end, entry.plain)
        else:
            cues.append(Entry(entry.start, entry.end, entry.plain))
    return cues


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_chromium_loads_every_highlighted_webvtt(dev_transcripts):
    """Chromium's WebVTT parser drops a cue it cannot read: every cue must arrive, `<u>` as an element."""
    from playwright.sync_api import sync_playwright

    from .test_web import CHROMIUM_ARGS

    files = {f"/{i}.vtt": render(t, "vtt", SubtitleStyle(highlight_words=True))
             for i, t in enumerate(dev_transcripts.values())}
    files["/diarized.vtt"] = render(diarized(), "vtt", SubtitleStyle(highlight_words=True))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page()
        page.route("http://subtitles.test/**", lambda route: route.fulfill(
            status=200, content_type="text/vtt" if route.request.url.endswith(".vtt") else "text/html",
            body=files.get(route.request.url.removeprefix("http://subtitles.test"), "<!doctype html><video></video>")))
        page.goto("http://subtitles.test/")
        for path, text in files.items():
            loaded = page.evaluate(
                """(src) => new Promise((resolve, reject) => {
                    const track = document.createElement('track');
                    track.kind = 'subtitles';
                    track.src = src;
                    track.addEventListener('load', () => resolve([...track.track.cues].map((cue) => {
                        const html = cue.getCueAsHTML();
                        return {start: cue.startTime, end: cue.endTime,
                                underlined: [...html.querySelectorAll('u')].map((u) => u.textContent),
                                voice: [...html.querySelectorAll('span[title]')].map((v) => v.title),
                                text: html.textContent};
                    })));
                    track.addEventListener('error', () => reject(new Error('track failed: ' + src)));
                    document.querySelector('video').appendChild(track);
                    track.track.mode = 'hidden';
                })""", path)
            entries = parse(text, "vtt")
            assert len(loaded) == len(entries), path
            for cue, entry in zip(loaded, entries, strict=True):
                assert cue["start"] == pytest.approx(entry.start, abs=1e-3)
                assert cue["end"] == pytest.approx(entry.end, abs=1e-3)
                marks = re.findall(r"<u>([^<]*)</u>", "\n".join(entry.lines))
                assert cue["underlined"] == [html.unescape(mark) for mark in marks]
                assert cue["text"].split() == html.unescape(" ".join(entry.plain)).split()
            if path == "/diarized.vtt":
                assert {v for cue in loaded for v in cue["voice"]} == {"SPEAKER_00", "SPEAKER_01"}
        browser.close()


# -- the rules, on words made up to test each one --------------------------------------------------------


def _words(text: str, start: float = 0.0, step: float = 0.3, speaker: str | None = None) -> list[TimedWord]:
    out = []
    for token in text.split():
        out.append(TimedWord(token, round(start, 3), round(start + step - 0.05, 3), speaker))
        start += step
    return out


def diarized() -> Transcript:
    """Two speakers, the second cutting in mid-sentence; markup characters in the text."""
    first = _words("So we agreed that the budget & the <draft> plan", 0.5, 0.3, "SPEAKER_00")
    second = _words("No, we did not agree on that at all.", first[-1].end + 0.1, 0.3, "SPEAKER_01")
    words = [Word(" " + w.text, w.start, w.end, 0.9, w.speaker) for w in first + second]
    segment = Segment(0, words[0].start, words[-1].end, "".join(w.word for w in words), words=words,
                      speaker="SPEAKER_00")
    return Transcript(segment.text.strip(), "en", words[-1].end + 1, [segment])


def test_lines_balance_and_never_leave_one_word_alone():
    style = SubtitleStyle(max_line_width=42)
    words = _words("The quick brown fox jumps over the lazy dog near the riverbank today")
    lines = lay_out(words, style)
    assert lines is not None and len(lines) == 2
    lengths = [len(" ".join(w.text for w in line)) for line in lines]
    assert abs(lengths[0] - lengths[1]) <= 8 and max(lengths) <= 42
    # three words that need two lines would leave one alone: no layout, the cue builder cuts elsewhere
    assert lay_out(_words("Incomprehensibilities notwithstanding, electroencephalographically"), style) is None
    cues = build_cues(_words("Incomprehensibilities notwithstanding, electroencephalographically"), style)
    assert [len(cue.lines) for cue in cues] == [1, 1] and [len(cue.words) for cue in cues] == [2, 1]


def test_a_cue_never_spans_a_change_of_speaker_and_markup_is_escaped():
    transcript = diarized()
    cues = build_cues(timed_words(transcript))
    assert [cue.speaker for cue in cues] == ["SPEAKER_00", "SPEAKER_01"]
    assert cues[0].end <= cues[1].start
    srt, vtt = render(transcript, "srt"), render(transcript, "vtt")
    assert "[SPEAKER_01] No, we" in srt and "<draft>" in srt
    assert "<v SPEAKER_00>" in vtt and "&lt;draft&gt;" in vtt and "&amp;" in vtt and "<draft>" not in vtt


def test_cues_end_at_sentences_and_long_pauses():
    words = _words("This is one sentence. And here is another one that goes on.")
    cues = build_cues(words, SubtitleStyle(max_line_width=42, max_line_count=1))
    assert cues[0].text_lines == ["This is one sentence."]
    paused = _words("We waited", 0.0) + _words("and then we left", 3.0)
    assert [c.text_lines for c in build_cues(paused)] == [["We waited"], ["and then we left"]]


def test_a_cue_is_held_for_reading_where_the_next_leaves_room():
    words = _words("Quick words said fast.", 0.0, 0.15) + _words("Later ones.", 6.0)
    first, second = build_cues(words, SubtitleStyle(max_chars_per_second=10))
    assert first.end == pytest.approx(first.start + len("Quick words said fast.") / 10)
    assert second.start == pytest.approx(6.0)
    crowded = _words("Quick words said fast.", 0.0, 0.15) + _words("Next.", 0.7, speaker="SPEAKER_01")
    first, second = build_cues(crowded, SubtitleStyle(max_chars_per_second=10))
    assert first.end == pytest.approx(second.start)  # no room: held only until the next cue


def test_max_cue_seconds_and_words_per_line():
    words = _words(" ".join(["word"] * 40), 0.0, 0.5)
    style = SubtitleStyle(max_cue_seconds=3.0, max_words_per_line=3)
    cues = build_cues(words, style)
    assert all(cue.end - cue.start <= 3.0 + 1e-9 for cue in cues)
    assert all(len(line) <= 3 for cue in cues for line in cue.lines)
    assert sum(len(cue.words) for cue in cues) == 40


def test_segments_without_word_times_are_split_by_their_text():
    text = (" It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of"
            " foolishness.")
    transcript = Transcript(text.strip(), "en", 12.0, [Segment(0, 1.0, 10.0, text)])
    entries = parse(render(transcript, "srt", SubtitleStyle(highlight_words=True)), "srt")
    check_cues(entries, SubtitleStyle(), text.split())
    assert len(entries) >= 2 and entries[0].start == 1.0 and entries[-1].end <= 10.0 + 1e-3
    assert "<u>" not in render(transcript, "srt", SubtitleStyle(highlight_words=True))  # no word times, no marks


def test_the_declared_options_make_the_style():
    options = TranscribeOptions(max_line_width=30, max_line_count=3, highlight_words=True, max_words_per_line=5,
                                max_cue_seconds=4.5, max_chars_per_second=12.0)
    assert options.subtitle_style() == SubtitleStyle(30, 3, 4.5, 12.0, 5, True)
    assert TranscribeOptions().subtitle_style() == SubtitleStyle()
