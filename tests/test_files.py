"""model/files.py: complete-or-nothing writes that never replace a file without force."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from model.files import OutputExists, check_new, write_file

REPO = Path(__file__).resolve().parent.parent


def _others(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def test_new_file_and_refusal(tmp_path):
    p = write_file(tmp_path / "a.bin", b"one")
    assert p.read_bytes() == b"one"
    with pytest.raises(OutputExists, match="--force"):
        write_file(p, b"two")
    assert p.read_bytes() == b"one"
    write_file(p, "three", force=True)
    assert p.read_text() == "three"
    assert _others(tmp_path, {"a.bin"}) == []                       # no temporary file left


def test_file_created_while_writing_is_kept(tmp_path):
    """The destination appears after the early check and before the write ends (another
    program, or a second cascade run): it survives, and no temporary file is left."""
    dest = tmp_path / "out.cas"
    check_new(dest, force=False)

    def slow(f):
        f.write(b"ours")
        dest.write_bytes(b"theirs")            # created meanwhile
    with pytest.raises(OutputExists):
        write_file(dest, slow)
    assert dest.read_bytes() == b"theirs"
    assert _others(tmp_path, {"out.cas"}) == []


def test_concurrent_writers_exactly_one_wins(tmp_path):
    dest = tmp_path / "race.bin"
    barrier = threading.Barrier(8)
    results = []

    def writer(i):
        def data(f):
            f.write(bytes([i]) * 1000)
            barrier.wait()                     # all eight hold a complete temporary file
        try:
            write_file(dest, data)
            results.append(("ok", i))
        except OutputExists:
            results.append(("refused", i))
    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for r, i in results if r == "ok"]
    assert len(winners) == 1 and len(results) == 8
    assert dest.read_bytes() == bytes([winners[0]]) * 1000
    assert _others(tmp_path, {"race.bin"}) == []


def test_permissions_follow_umask_and_force_keeps_mode(tmp_path):
    old = os.umask(0o027)
    try:
        p = write_file(tmp_path / "u.bin", b"x")
    finally:
        os.umask(old)
    assert p.stat().st_mode & 0o777 == 0o640
    q = tmp_path / "keep.bin"
    q.write_bytes(b"old")
    q.chmod(0o644)
    write_file(q, b"new", force=True)
    assert q.stat().st_mode & 0o777 == 0o644 and q.read_bytes() == b"new"


def test_failed_writer_leaves_nothing(tmp_path):
    def boom(f):
        f.write(b"half")
        raise RuntimeError("disk on fire")
    with pytest.raises(RuntimeError):
        write_file(tmp_path / "x.bin", boom)
    assert list(tmp_path.iterdir()) == []


def test_check_new(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputExists):
        check_new(tmp_path / "f", False)
    assert check_new(tmp_path / "f", True) == tmp_path / "f"
    with pytest.raises(IsADirectoryError):
        check_new(tmp_path, True)
    with pytest.raises(FileNotFoundError):
        check_new(tmp_path / "no" / "f", False)


def test_sigterm_mid_write_removes_the_temporary_file(tmp_path):
    """A real process killed with SIGTERM while it writes: the temporary file goes, the
    destination never appears."""
    dest = tmp_path / "big.bin"
    ready = tmp_path / "ready"
    code = (
        "import sys, time; from pathlib import Path\n"
        "from model.files import signals_interrupt, write_file\n"
        "signals_interrupt()\n"
        "def slow(f):\n"
        "    f.write(b'x' * 1000); Path(sys.argv[2]).write_text('1')\n"
        "    time.sleep(60)\n"
        "try:\n"
        "    write_file(Path(sys.argv[1]), slow)\n"
        "except KeyboardInterrupt:\n"
        "    sys.exit(130)\n")
    p = subprocess.Popen([sys.executable, "-c", code, str(dest), str(ready)], cwd=REPO,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))
    t0 = time.time()
    while not ready.exists():
        assert time.time() - t0 < 60 and p.poll() is None, "writer did not start"
        time.sleep(0.05)
    assert any(n.startswith(".big.bin.") for n in os.listdir(tmp_path))   # it is mid-write
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=30) == 130
    assert sorted(os.listdir(tmp_path)) == ["ready"]
