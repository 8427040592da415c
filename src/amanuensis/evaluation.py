"""Word error rate on normalised text (Whisper's English normaliser, scored with jiwer)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def _normalizer():
    try:
        from whisper_normalizer.english import EnglishTextNormalizer
    except ImportError as exc:
        raise ImportError("scoring needs the test extra: pip install 'amanuensis[test]'") from exc
    return EnglishTextNormalizer()


def normalize(text: str) -> str:
    """Whisper's English normalisation (spelling, numbers, punctuation, case)."""
    return " ".join(_normalizer()(text).split())


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus WER over normalised pairs (total edits / total reference words)."""
    import jiwer

    pairs = [(normalize(r), normalize(h)) for r, h in zip(references, hypotheses)]
    pairs = [(r, h) for r, h in pairs if r]
    return float(jiwer.wer([r for r, _ in pairs], [h for _, h in pairs]))


def read_references(tsv: Path) -> dict[str, str]:
    """`relative_path<TAB>text` lines (the format of transcripts.tsv) as a dict of absolute paths."""
    refs: dict[str, str] = {}
    for line in Path(tsv).read_text(encoding="utf-8").splitlines():
        if line.strip():
            relative, text = line.split("\t", 1)
            refs[str((Path(tsv).parent / relative).resolve())] = text
    return refs
