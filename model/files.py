"""Writing the user's files: the one helper every output of the tool goes through.

:func:`write_file` makes a file appear complete or not at all, and never replaces a file it was
not allowed to replace:

* the content goes to a temporary file beside the destination (``.NAME.XXXXXX.tmp``, same folder,
  so the last step is a link or rename within one file system), is flushed and ``fsync``-ed;
* its permissions follow the umask, as ``open(path, "w")`` would give them (``0o666 & ~umask``;
  the umask is read from ``/proc/self/status``, else with ``os.umask`` under a lock); with
  ``force`` a file that is replaced keeps its mode;
* without ``force`` the publication itself refuses an existing name, so a file created after the
  command started, or by a second command writing to the same path at the same time, is kept
  (:class:`OutputExists`).  In order of preference:

  1. ``link(tmp, dest)`` then ``unlink(tmp)``: ``link`` fails with ``EEXIST`` whatever appeared at
     ``dest`` (a file, a folder, a dangling symbolic link);
  2. where the file system has no hard links (``EPERM``, ``ENOTSUP``, ... : FAT, some network and
     FUSE file systems), Linux's ``renameat2(RENAME_NOREPLACE)``, equally atomic;
  3. where that is missing too, an exclusive create (``O_EXCL``) of ``dest`` reserves the name and
     the content is renamed over the placeholder.  A second ``cascade`` is refused by the
     reservation; a program that writes without any check and opens the empty placeholder in the
     instant before the rename would lose its write, and a reader may see the empty placeholder
     for that instant.  This is the only case weaker than the two above.

  With ``force`` the temporary file is renamed over the destination (``os.replace``);
* the temporary file is removed on every exit path Python sees: an exception, Ctrl-C, and
  SIGTERM / SIGHUP while :func:`signals_interrupt` is in force (the CLI's ``main`` turns them into
  ``KeyboardInterrupt``).  The signals are held while the temporary file is created and while it
  is published, so an interruption comes before, during the write, or after the publication, never
  between a name's creation and its bookkeeping.  A ``kill -9`` (or a power cut) cannot be
  handled: a stale ``.NAME.XXXXXX.tmp`` may then remain beside the destination; it is never read
  and may be deleted.

Nothing here knows the CLI: a refusal is :class:`OutputExists`, a ``CascadeError``, which
``cascade`` reports as its one-line error.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
import tempfile
import threading
from pathlib import Path
from typing import Callable

from .errors import CascadeError

#: The signals that interrupt a command (turned into ``KeyboardInterrupt``, then cleaned up).
INTERRUPTS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))

#: errno values meaning "no hard links on this file system" (then the next way is tried).
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK, errno.ENOSYS}
#: errno values meaning "no renameat2 / RENAME_NOREPLACE here".
_NO_RENAMEAT2 = {errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP}

_umask_lock = threading.Lock()


class OutputExists(CascadeError, FileExistsError):
    """The destination exists and ``force`` was not given."""

    def __init__(self, path: Path):
        super().__init__(f"{path} exists; use --force to overwrite it")
        self.path = path


def _umask() -> int:
    """The process umask, without changing it where the kernel reports it (Linux >= 4.7); else
    set and restored under a lock (``os.umask`` can only be read by setting it)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _umask_lock:
        old = os.umask(0o077)
        os.umask(old)
    return old


@contextlib.contextmanager
def _signals_held():
    """Hold (block) the interrupting signals in this thread; they are delivered on exit."""
    mask = getattr(signal, "pthread_sigmask", None)
    if mask is None:
        yield
        return
    old = mask(signal.SIG_BLOCK, INTERRUPTS)
    try:
        yield
    finally:
        mask(signal.SIG_SETMASK, old)


def write_file(path: str | Path, data: bytes | str | Callable, force: bool = False) -> Path:
    """Write ``data`` (bytes, text, or a function that writes to a binary file object) to ``path``
    completely or not at all.  Without ``force`` an existing ``path`` is never replaced
    (:class:`OutputExists`, raised at the moment of publication, so a file that appeared while
    the command ran is kept too).  See the module's docstring for the guarantees."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        with _signals_held():
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            try:
                mode = os.stat(path).st_mode & 0o7777 if force else None
            except (FileNotFoundError, NotADirectoryError):
                mode = None
            os.fchmod(f.fileno(), mode if mode is not None else 0o666 & ~_umask())
            if callable(data):
                data(f)
            else:
                f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        with _signals_held():
            if force:
                os.replace(tmp, path)
            else:
                _publish_new(tmp, path)
            tmp = None                      # published: nothing of ours to remove
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    _sync_folder(path.parent)
    return path


def _publish_new(tmp: str, path: Path) -> None:
    """Give ``tmp`` the name ``path`` only if no file has that name; ``tmp`` is gone afterwards
    (raises with ``tmp`` still there, for the caller to remove)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise OutputExists(path) from None
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
    else:
        os.unlink(tmp)
        return
    if _rename_noreplace(tmp, path):
        return
    try:   # neither: reserve the name exclusively, then move the content over the placeholder
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        raise OutputExists(path) from None
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)                 # our own empty placeholder
        raise


def _rename_noreplace(tmp: str, path: Path) -> bool:
    """``renameat2(tmp, path, RENAME_NOREPLACE)``: True when done, False where unsupported;
    :class:`OutputExists` when ``path`` exists."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    AT_FDCWD, RENAME_NOREPLACE = -100, 1
    if fn(AT_FDCWD, os.fsencode(tmp), AT_FDCWD, os.fsencode(str(path)), RENAME_NOREPLACE) == 0:
        return True
    err = ctypes.get_errno()
    if err == errno.EEXIST:
        raise OutputExists(path)
    if err in _NO_RENAMEAT2:
        return False
    raise OSError(err, os.strerror(err), str(path))


def _sync_folder(folder: Path) -> None:
    """Make the new name durable (best effort: some file systems cannot fsync a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived (a ``KeyboardInterrupt``, so code that cleans up on Ctrl-C
    cleans up on these too)."""


@contextlib.contextmanager
def signals_interrupt():
    """While in force, SIGTERM and SIGHUP raise :class:`Interrupted` (a ``KeyboardInterrupt``)
    like Ctrl-C, so that every ``finally`` (the temporary files above) runs when a command is
    killed; the previous handlers come back on exit.  Only the CLI's ``main`` uses it (importing
    this module changes no handler); a no-op outside the main thread."""
    def handler(signum, frame):
        raise Interrupted(signal.Signals(signum).name)
    saved = {}
    for sig in INTERRUPTS:
        if sig == getattr(signal, "SIGINT", None):
            continue                         # Python's own default already raises KeyboardInterrupt
        try:
            saved[sig] = signal.signal(sig, handler)
        except (ValueError, OSError):        # not the main thread, or a platform without it
            pass
    try:
        yield
    finally:
        for sig, old in saved.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(sig, old if old is not None else signal.SIG_DFL)
