"""Progress lines: on a terminal at most one a second, never off one or when quiet."""

from __future__ import annotations

import io

import pytest

from tools import progress as progress_module
from tools.progress import Progress

pytestmark = pytest.mark.unit


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_line_a_second_and_a_last_one(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([0.0, 0.5, 1.2, 1.5, 2.0])
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: next(clock))
    out = Terminal()
    progress = Progress("replay: events sent", total=10, stream=out)
    for _ in range(3):
        progress.advance()
    progress.close()
    assert out.getvalue() == (
        "\rreplay: events sent: 2/10 (20%), 2/s \rreplay: events sent: 3/10 (30%), 2/s \n"
    )


@pytest.mark.parametrize(("stream", "quiet"), [(io.StringIO(), False), (Terminal(), True)])
def test_no_progress_off_a_terminal_or_when_quiet(stream: io.StringIO, quiet: bool) -> None:
    progress = Progress("dump", stream=stream, quiet=quiet)
    progress.advance(5)
    progress.close()
    assert stream.getvalue() == ""
