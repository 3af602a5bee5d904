"""Progress bars and the console they draw on (stderr), shared by the commands that run long."""

from __future__ import annotations

from contextlib import contextmanager

__all__ = ["console", "progress_bars"]


def console():
    from rich.console import Console
    return Console(stderr=True)


@contextmanager
def progress_bars(enabled=True):
    """A ``rich`` progress display on stderr (``None`` when not ``enabled``)."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, MofNCompleteColumn
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console(), transient=False) as p:
        yield p
