"""Subtitle cues to a style guide, built from word times: SubRip and WebVTT writers.

A cue holds at most `max_line_count` lines of at most `max_line_width` characters (and
`max_words_per_line` words), lasts at most `max_cue_seconds`, never spans a change of speaker or a
long pause, and stays on screen long enough to be read at `max_chars_per_second` where the next cue
leaves room. Where to end each cue is chosen for the whole transcript at once (dynamic programming):
a cue ends best after a sentence, then after a clause or a pause, and a cue of one or two words or
one that must be read too fast costs more. A cue's lines are broken where their lengths balance,
never leaving one word alone on a line. Without word times (word_timestamps off) a segment's words
get times spread over the segment by their length, and the same rules cut them into cues.

`highlight_words` writes one entry per word said (karaoke, as Whisper's writer does): the cue's
text with the word being said underlined (`<u>`, valid cue markup in SubRip and WebVTT alike), and
the plain text in the gaps between words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .transcript import Transcript

SENTENCE_END = (".", "?", "!", "…", '."', '?"', '!"')
CLAUSE_END = (",", ";", ":", "—", "-")
LONG_PAUSE_SECONDS = 1.5
"""A pause this long between two words always ends a cue (no text shown over silence)."""
BREAK_PAUSE_SECONDS = 0.3
"""A pause this long between two words is a fair place to end a cue."""


@dataclass(frozen=True)
class SubtitleStyle:
    """The style guide cues are built to (the declared options of the same names)."""

    max_line_width: int = 42
    max_line_count: int = 2
    max_cue_seconds: float = 7.0
    max_chars_per_second: float = 20.0
    max_words_per_line: int | None = None
    highlight_words: bool = False


@dataclass
class TimedWord:
    """One word of a cue: its text without surrounding spaces, its times and speaker."""

    text: str
    start: float
    end: float
    speaker: str | None = None
    timed: bool = True
    """False when the time is spread over a segment without word times (no highlighting then)."""


@dataclass
class Cue:
    """One subtitle cue: its display time, its lines (words per line) and its speaker."""

    start: float
    end: float
    lines: list[list[TimedWord]]
    speaker: str | None = None

    @property
    def words(self) -> list[TimedWord]:
        """The cue's words in order."""
        return [word for line in self.lines for word in line]

    @property
    def text_lines(self) -> list[str]:
        """The cue's lines as plain text (without a speaker label)."""
        return [" ".join(word.text for word in line) for line in self.lines]


def timed_words(transcript: Transcript) -> list[TimedWord]:
    """Every word of the transcript with its time and speaker; segments without word times get their
    words' times spread over the segment in proportion to their length."""
    out: list[TimedWord] = []
    for segment in transcript.segments:
        if segment.words:
            for word in segment.words:
                if word.word.strip():
                    out.append(TimedWord(word.word.strip(), word.start, max(word.start, word.end),
                                         word.speaker or segment.speaker))
            continue
        texts = segment.text.split()
        total = sum(len(text) + 1 for text in texts) or 1
        start, span = segment.start, max(0.0, segment.end - segment.start)
        for text in texts:
            end = start + span * (len(text) + 1) / total
            out.append(TimedWord(text, start, end, segment.speaker, timed=False))
            start = end
    return out


def label_width(speaker: str | None) -> int:
    """Characters the `[SPEAKER] ` label takes on a cue's first line."""
    return len(f"[{speaker}] ") if speaker else 0


def _line_length(words: list[TimedWord]) -> int:
    return sum(len(word.text) for word in words) + len(words) - 1


def _fits(words: list[TimedWord], style: SubtitleStyle, extra: int) -> bool:
    if style.max_words_per_line and len(words) > style.max_words_per_line:
        return False
    return _line_length(words) + extra <= style.max_line_width


def lay_out(words: list[TimedWord], style: SubtitleStyle, label: int = 0) -> list[list[TimedWord]] | None:
    """The fewest lines (up to max_line_count) that hold `words`, broken where the line lengths balance
    and preferably after punctuation, with no line of one word; None when they do not fit. A single
    word longer than a line stands alone."""
    if len(words) == 1 or _fits(words, style, label):
        return [list(words)]
    for count in range(2, style.max_line_count + 1):
        if len(words) < 2 * count:
            break
        best = _balanced(words, count, style, label)
        if best is not None:
            return best
    return None


def _balanced(words: list[TimedWord], count: int, style: SubtitleStyle, label: int) -> list[list[TimedWord]] | None:
    """`words` in `count` lines of two words or more each, minimising the spread of line lengths."""
    best: tuple[float, list[list[TimedWord]]] | None = None

    def place(first: int, lines: list[list[TimedWord]]) -> None:
        nonlocal best
        left = count - len(lines)
        if left == 1:
            last = words[first:]
            if len(last) < 2 or not _fits(last, style, 0 if lines else label):
                return
            candidate = [*lines, last]
            lengths = [_line_length(line) for line in candidate]
            lengths[0] += label
            cost = (max(lengths) - min(lengths)) / style.max_line_width
            cost += sum(0.0 if _ends_phrase(line[-1].text) else 0.25 for line in candidate[:-1])
            if best is None or cost < best[0]:
                best = (cost, candidate)
            return
        for end in range(first + 2, len(words) - 2 * (left - 1) + 1):
            line = words[first:end]
            if not _fits(line, style, 0 if lines else label):
                break
            place(end, [*lines, line])

    place(0, [])
    return best[1] if best else None


def _ends_phrase(text: str) -> bool:
    return text.endswith(SENTENCE_END) or text.endswith(CLAUSE_END)


def _break_cost(words: list[TimedWord], j: int) -> float:
    """What ending a cue before word `j` costs: nothing at a sentence end, a change of speaker, a long
    pause or the end; little after a clause or a pause; most inside a phrase."""
    if j >= len(words) or words[j].speaker != words[j - 1].speaker:
        return 0.0
    pause = words[j].start - words[j - 1].end
    text = words[j - 1].text
    if text.endswith(SENTENCE_END) or pause >= LONG_PAUSE_SECONDS:
        return 0.0
    cost = 0.3 if text.endswith(CLAUSE_END) else 1.0
    return min(cost, 0.2) if pause >= BREAK_PAUSE_SECONDS else cost


def _room(words: list[TimedWord], i: int, j: int, style: SubtitleStyle) -> float:
    """Seconds cue words[i:j] may stay on screen: until the next word (of any cue) or max_cue_seconds."""
    until = words[j].start if j < len(words) else math.inf
    return max(1e-3, min(style.max_cue_seconds, until - words[i].start))


class _Text:
    """Prefix sums of word lengths: the length of any run of words, and how far a line from a word reaches."""

    def __init__(self, words: list[TimedWord], style: SubtitleStyle) -> None:
        self.words, self.style = words, style
        self.ends = [0]
        for word in words:
            self.ends.append(self.ends[-1] + len(word.text) + 1)
        self.far = [0] * len(words)
        """far[i]: the furthest j such that words[i:j] fits one line without a label (two pointers)."""
        j = 0
        for i in range(len(words)):
            j = max(j, i)
            while j < len(words) and self._fits(i, j + 1, 0):
                j += 1
            self.far[i] = j

    def _fits(self, i: int, j: int, extra: int) -> bool:
        words_cap = self.style.max_words_per_line
        return (not words_cap or j - i <= words_cap) and self.length(i, j) + extra <= self.style.max_line_width

    def length(self, i: int, j: int) -> int:
        """Characters of words[i:j] joined by spaces."""
        return self.ends[j] - self.ends[i] - 1

    def reach(self, i: int, limit: int, extra: int = 0) -> int:
        """The furthest j <= limit such that words[i:j] fits one line (`extra` characters taken)."""
        if i >= limit:
            return i
        if not extra:
            return min(self.far[i], limit)
        j = i
        while j < limit and self._fits(i, j + 1, extra):
            j += 1
        return j

    def cue_ends(self, i: int, limit: int, label: int) -> list[int]:
        """Every j <= limit such that words[i:j] can be laid out as a cue: on one line, or on 2 to
        max_line_count lines of two words or more each (a reachability walk, line by line)."""
        first = self.reach(i, limit, label)
        ends = set(range(i + 1, max(first, i + 1) + 1))
        starts = set(range(i + 2, first + 1))
        for _ in range(self.style.max_line_count - 1):
            following: set[int] = set()
            for a in starts:
                following.update(range(a + 2, self.reach(a, limit) + 1))
            ends |= following
            starts = following
        return sorted(ends)


def _cue_cost(words: list[TimedWord], text: _Text, breaks: list[float], i: int, j: int, style: SubtitleStyle) -> float:
    """A cue of words[i:j]: one per cue, what ending it there costs, more for a cue of one or two words
    cut out of a phrase, and more the faster it must be read."""
    cost = 1.0 + breaks[j]
    alone = j - i
    if alone <= 2 and (breaks[i] > 0 or breaks[j] > 0):
        cost += 1.5 if alone == 1 else 0.5
    speed = text.length(i, j) / _room(words, i, j, style)
    if speed > style.max_chars_per_second:
        cost += 2.0 * (speed / style.max_chars_per_second - 1.0)
    return cost


def build_cues(words: list[TimedWord], style: SubtitleStyle | None = None) -> list[Cue]:
    """Cut `words` into cues to `style` (see the module's docstring), times monotonic and non-overlapping."""
    style = style or SubtitleStyle()
    n = len(words)
    text = _Text(words, style)
    breaks = [0.0] + [_break_cost(words, j) for j in range(1, n + 1)]
    best = [math.inf] * n + [0.0]
    choice = [0] * n
    for i in range(n - 1, -1, -1):
        limit = i + 1  # the cue may not pass a change of speaker, max_cue_seconds or a long pause
        while (limit < n and words[limit].speaker == words[i].speaker
               and words[limit].end - words[i].start <= style.max_cue_seconds
               and words[limit].start - words[limit - 1].end < LONG_PAUSE_SECONDS):
            limit += 1
        for j in text.cue_ends(i, limit, label_width(words[i].speaker)):
            cost = _cue_cost(words, text, breaks, i, j, style) + best[j]
            if cost < best[i]:
                best[i], choice[i] = cost, j
    cues: list[Cue] = []
    i = 0
    while i < n:
        j = choice[i]
        lines = lay_out(words[i:j], style, label_width(words[i].speaker))
        cues.append(Cue(words[i].start, words[j - 1].end, lines or [words[i:j]], words[i].speaker))
        i = j
    return _timed(cues, style)


def _timed(cues: list[Cue], style: SubtitleStyle) -> list[Cue]:
    """Cue times: from the first word, held until it can be read (up to the next cue and
    max_cue_seconds), monotonic and non-overlapping."""
    previous_end = 0.0
    for k, cue in enumerate(cues):
        following = cues[k + 1].start if k + 1 < len(cues) else math.inf
        start = max(cue.start, previous_end)
        reading = start + sum(len(line) for line in cue.text_lines) / style.max_chars_per_second
        end = max(cue.end, min(reading, following))
        end = min(end, start + style.max_cue_seconds)
        cue.start, cue.end = start, max(end, start + 0.001)
        previous_end = cue.end
    return cues


def cues(transcript: Transcript, style: SubtitleStyle | None = None) -> list[Cue]:
    """The transcript's subtitle cues to `style`."""
    return build_cues(timed_words(transcript), style)


def timestamp(seconds: float, separator: str) -> str:
    """HH:MM:SS{separator}mmm for subtitle formats."""
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def entries(cue: Cue, highlight: bool) -> list[tuple[float, float, int | None]]:
    """(start, end, index of the word underlined or None) for each entry written for a cue: one entry,
    or with `highlight` one per word said and one per gap between words (Whisper's karaoke). A word
    timed with no duration is marked until the next word starts."""
    words = cue.words
    if not highlight or not all(word.timed for word in words):
        return [(cue.start, cue.end, None)]
    out: list[tuple[float, float, int | None]] = []
    last = cue.start
    for index, word in enumerate(words):
        start = min(max(word.start, last), cue.end)
        following = words[index + 1].start if index + 1 < len(words) else cue.end
        end = min(word.end if word.end > start else following, cue.end)
        if start > last:
            out.append((last, start, None))
        if end > start:
            out.append((start, end, index))
            last = end
        else:
            last = start
    if cue.end > last:
        out.append((last, cue.end, None))
    return out


def _escape_vtt(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _lines(cue: Cue, marked: int | None, escape: bool) -> list[str]:
    """The cue's lines with word `marked` underlined (`<u>`), escaped for WebVTT when `escape`."""
    out, index = [], 0
    for line in cue.lines:
        texts = []
        for word in line:
            text = _escape_vtt(word.text) if escape else word.text
            texts.append(f"<u>{text}</u>" if index == marked else text)
            index += 1
        out.append(" ".join(texts))
    return out


def to_srt(transcript: Transcript, style: SubtitleStyle | None = None) -> str:
    """SubRip: numbered entries, HH:MM:SS,mmm times, `[SPEAKER_00] ` before a diarized cue's text."""
    style = style or SubtitleStyle()
    blocks = []
    for cue in cues(transcript, style):
        for start, end, marked in entries(cue, style.highlight_words):
            lines = _lines(cue, marked, escape=False)
            if cue.speaker:
                lines[0] = f"[{cue.speaker}] {lines[0]}"
            text = "\n".join(lines)
            blocks.append(f"{len(blocks) + 1}\n{timestamp(start, ',')} --> {timestamp(end, ',')}\n{text}\n")
    return "\n".join(blocks)


def to_vtt(transcript: Transcript, style: SubtitleStyle | None = None) -> str:
    """WebVTT: HH:MM:SS.mmm times, a `<v SPEAKER_00>` voice span around a diarized cue's text."""
    style = style or SubtitleStyle()
    blocks = ["WEBVTT\n"]
    for cue in cues(transcript, style):
        for start, end, marked in entries(cue, style.highlight_words):
            text = "\n".join(_lines(cue, marked, escape=True))
            if cue.speaker:
                text = f"<v {cue.speaker}>{text}</v>"
            blocks.append(f"{timestamp(start, '.')} --> {timestamp(end, '.')}\n{text}\n")
    return "\n".join(blocks)
