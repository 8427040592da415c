"""Test conversations from real clips in ../shared/data (built by amanuensis.bench.conversations)."""

from amanuensis.bench.conversations import (  # noqa: F401
    CONVERSATION,
    JFK,
    JFK_SPLIT_S,
    PAUSES_S,
    SPEECH,
    Conversation,
    active_spans,
    concatenate,
    four_speaker_conversation,
    load_clip,
    stereo_conversation,
    trim_silence,
)
