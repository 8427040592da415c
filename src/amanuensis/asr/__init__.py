"""The recognition pipeline, in the order audio flows through it.

vad (speech regions) → chunking (regions packed into ≤30 s chunks, lanes) → decoding (settings, the
quality checks) → engine (CTranslate2 Whisper: features, batched encode + generate, word alignment)
→ scheduler (cross-request batches) → batched (the lanes driven chunk by chunk into segments);
languages splits multilingual audio into runs of one language; live/ holds the realtime sessions' policy
(turns on a stream, re-decoding the open turn, each turn's final decode). Nothing here knows about HTTP, jobs
or the command line.
"""
