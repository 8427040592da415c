"""Corpus runs: many files into OUTDIR with a resumable manifest, on local workers or a Ray cluster."""

from .inputs import CorpusFile, InputError, collect_inputs
from .manifest import MANIFEST_NAME, Manifest, ManifestEntry, options_digest
from .runner import CorpusRun, RunSummary

__all__ = [
    "MANIFEST_NAME",
    "CorpusFile",
    "CorpusRun",
    "InputError",
    "Manifest",
    "ManifestEntry",
    "RunSummary",
    "collect_inputs",
    "options_digest",
]
