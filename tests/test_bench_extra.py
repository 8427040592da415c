"""`amanuensis bench` is a development tool: without the bench extra's packages it stops before any bench
runs, with exit code 2 and one line naming the install command."""

from __future__ import annotations

import sys

import pytest

from amanuensis.bench import INSTALL_HINT, REQUIRED_MODULES
from amanuensis.cli import main


@pytest.mark.parametrize("which", ["e2e", "frontend", "realtime", "load", "corpus", "soak"])
def test_a_missing_extra_is_one_line_and_exit_2(which, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, REQUIRED_MODULES[0], None)  # as if it were not installed
    assert main(["bench", which]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and INSTALL_HINT in err and REQUIRED_MODULES[0] in err


def test_with_the_extra_each_bench_is_reached(capsys):
    for which in ("load", "corpus"):
        with pytest.raises(SystemExit) as exit_:
            main(["bench", which, "--help"])
        assert exit_.value.code == 0
        assert f"usage: amanuensis bench {which}" in capsys.readouterr().out
