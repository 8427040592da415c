"""A progress bar over the whole corpus: files and audio hours done, ETA (on stderr when it is a TTY)."""

from __future__ import annotations

import sys


class CorpusProgress:
    """tqdm over the corpus's declared audio seconds, with files done in the postfix."""

    def __init__(self, total_seconds: float, total_files: int, enabled: bool | None = None) -> None:
        self.total_files = total_files
        self.files = 0
        self.failed = 0
        self.seconds = 0.0
        self.bar = None
        if enabled is None:
            enabled = sys.stderr.isatty()
        if enabled and total_files:
            from tqdm import tqdm

            self.bar = tqdm(total=round(max(total_seconds, 1.0), 1), unit="s", desc="batch", file=sys.stderr,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix} [{elapsed}<{remaining}]")
            self._postfix()

    def _postfix(self) -> None:
        failed = f", {self.failed} failed" if self.failed else ""
        self.bar.set_postfix_str(f"{self.files}/{self.total_files} files{failed}, "
                                 f"{self.seconds / 3600:.2f} h audio", refresh=True)

    def advance(self, declared_seconds: float, failed: bool) -> None:
        """One more file finished (done or failed)."""
        self.files += 1
        self.failed += int(failed)
        self.seconds += declared_seconds
        if self.bar is not None:
            self.bar.n = round(min(self.seconds, self.bar.total), 1)
            self._postfix()

    def close(self) -> None:
        """Remove the bar."""
        if self.bar is not None:
            self.bar.close()
