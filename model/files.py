"""Writing the user's files: the one helper every output of the tool goes through.

:func:`write_file` makes a file appear complete or not at all, and never replaces a file it was
not allowed to replace:

* the content goes to a temporary file beside the destination (``.NAME.XXXXXX.tmp``, same folder,
  so the last step is a rename or link within one file system);
* its permissions follow the umask, as ``open(path, "w")`` would give them; with ``force`` a file
  that is replaced keeps its mode;
* without ``force`` the temporary file is *hard-linked* to the destination name, which fails when
  a file of that name exists, including one created after the command started or by a second
  command writing to the same path at the same time; only then is the temporary name removed.
  On a file system without hard links an exclusive create (``O_EXCL``) reserves the name first;
* the temporary file is removed on every exit path: an exception, Ctrl-C, or SIGTERM / SIGHUP
  once :func:`signals_interrupt` is in force (the CLI turns them into ``KeyboardInterrupt``).

Nothing here knows the CLI: a refusal is :class:`OutputExists`, a ``CascadeError``, which
``cascade`` reports as its one-line error.
"""

from __future__ import annotations

import errno
import os
import signal
import tempfile
from pathlib import Path
from typing import Callable

from .errors import CascadeError


class OutputExists(CascadeError, FileExistsError):
    """The destination exists and ``force`` was not given."""

    def __init__(self, path: Path):
        super().__init__(f"{path} exists; use --force to overwrite it")
        self.path = path


def _umask() -> int:
    old = os.umask(0o022)
    os.umask(old)
    return old


def write_file(path: str | Path, data: bytes | str | Callable, force: bool = False) -> Path:
    """Write ``data`` (bytes, text, or a function that writes to a binary file object) to ``path``
    completely or not at all.  Without ``force`` an existing ``path`` is never replaced
    (:class:`OutputExists`, raised at the moment of the final link, so a file that appeared while
    the command ran is kept too)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        try:
            mode = os.stat(path).st_mode & 0o7777 if force else None
        except FileNotFoundError:
            mode = None
        os.fchmod(fd, mode if mode is not None else 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        if force:
            os.replace(tmp, path)
        else:
            _link_new(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _link_new(tmp: str, path: Path) -> None:
    """Give ``tmp`` the name ``path`` only if no file has that name; ``tmp`` is gone afterwards."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise OutputExists(path) from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        try:  # no hard links here: reserve the name exclusively, then move the content over it
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            raise OutputExists(path) from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def check_new(path: str | Path, force: bool) -> Path:
    """The early check a command makes before it computes: ``path`` may be written (it does not
    exist, or ``force``) into a folder that exists.  :func:`write_file` checks again at the end."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not a file name")
    if path.exists() and not force:
        raise OutputExists(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"folder {path.parent} does not exist")
    return path


def signals_interrupt() -> None:
    """Make SIGTERM and SIGHUP raise ``KeyboardInterrupt`` like Ctrl-C, so that every ``finally``
    and ``except BaseException`` (the temporary files above) runs when a command is killed."""
    def handler(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            signal.signal(sig, handler)
        except (ValueError, OSError):  # not the main thread, or a platform without it
            pass
