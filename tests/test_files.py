"""model/files.py: complete-or-nothing writes that never replace a file without force."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import errno

import pytest

import model.files as files
from model.files import OutputExists, check_new, signals_interrupt, write_file
from tests.helpers import assert_user_error, run

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


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_mode_is_what_the_umask_gives(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        assert files._umask() == umask
        p = write_file(tmp_path / "m.bin", b"x")
        q = write_file(tmp_path / "m.bin", b"y", force=True)      # replacing keeps the mode
    finally:
        os.umask(old)
    assert p.stat().st_mode & 0o777 == mode and q.read_bytes() == b"y"


def test_reading_the_umask_does_not_change_it_under_threads(tmp_path):
    """Eight writers at once: the umask is read, never left changed by a neighbour's read."""
    old = os.umask(0o027)
    try:
        threads = [threading.Thread(target=write_file, args=(tmp_path / f"{i}.bin", b"x")) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert os.umask(0o027) == 0o027
    finally:
        os.umask(old)
    assert {p.stat().st_mode & 0o777 for p in tmp_path.iterdir()} == {0o640}


@pytest.mark.parametrize("way", ["renameat2", "placeholder"])
def test_without_hard_links_a_new_name_is_still_exclusive(tmp_path, monkeypatch, way):
    """File systems without hard links: renameat2(RENAME_NOREPLACE), else an O_EXCL placeholder;
    either way an existing file is refused and no temporary file is left."""
    def no_link(src, dst, **kw):
        raise OSError(errno.EPERM, "Operation not permitted")
    monkeypatch.setattr(files.os, "link", no_link)
    if way == "placeholder":
        monkeypatch.setattr(files, "_rename_noreplace", lambda tmp, path: False)
    p = write_file(tmp_path / "a.bin", b"one")
    assert p.read_bytes() == b"one"
    with pytest.raises(OutputExists):
        write_file(p, b"two")

    def late(f):                          # and one created while we write
        f.write(b"ours")
        (tmp_path / "b.bin").write_bytes(b"theirs")
    with pytest.raises(OutputExists):
        write_file(tmp_path / "b.bin", late)
    assert p.read_bytes() == b"one" and (tmp_path / "b.bin").read_bytes() == b"theirs"
    assert _others(tmp_path, {"a.bin", "b.bin"}) == []


def test_renameat2_refuses_an_existing_name(tmp_path):
    src, dst = tmp_path / "s", tmp_path / "d"
    src.write_bytes(b"s")
    dst.write_bytes(b"d")
    try:
        with pytest.raises(OutputExists):
            if not files._rename_noreplace(str(src), dst):
                pytest.skip("no renameat2 here")
    finally:
        assert dst.read_bytes() == b"d" and src.read_bytes() == b"s"


def test_signal_handlers_only_while_in_force():
    before = signal.getsignal(signal.SIGTERM)
    with signals_interrupt():
        assert signal.getsignal(signal.SIGTERM) is not before
        with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)                  # the handler raises long before this ends
    assert signal.getsignal(signal.SIGTERM) is before


# ----------------------------------------------------------------- through the CLI

def _appearing(monkeypatch, module, name: str, content: bytes = b"theirs"):
    """Make ``module.write_file`` create the file ``name`` just before it writes it: a file
    that appears after the command's early check (another program, or a second cascade)."""
    real = files.write_file

    def wrapper(path, data, force=False):
        if Path(path).name == name:
            Path(path).write_bytes(content)
        return real(path, data, force)
    monkeypatch.setattr(module, "write_file", wrapper)


def test_cli_encode_keeps_a_file_created_mid_run(capsys, tmp_path, monkeypatch, tiny_model_path, speech_wav):
    import model.cli
    out = tmp_path / "o.cas"
    _appearing(monkeypatch, model.cli, "o.cas")
    rc, _, err = run(capsys, "encode", speech_wav, out, "--model", tiny_model_path)
    assert_user_error(rc, err)
    assert rc == 1 and "exists" in err and "--force" in err
    assert out.read_bytes() == b"theirs" and _others(tmp_path, {"o.cas"}) == []
    rc, _, err = run(capsys, "encode", speech_wav, out, "--model", tiny_model_path, "--force")
    assert rc == 0, err
    assert out.read_bytes()[:4] != b"thei" and out.stat().st_size > 100


@pytest.mark.parametrize("command, name", [("export", "manifest.json"), ("export", "weights.npz"),
                                           ("export-rtl", "rtl.json"), ("export-rtl", "encoder.v")])
def test_cli_folder_outputs_keep_a_file_created_mid_run(capsys, tmp_path, monkeypatch, tiny_model_path,
                                                        command, name):
    """export and export-rtl write each file of their folder through the helper: one that
    appears while they run is kept (exit 1, one line); with --force it is replaced."""
    extra = ("--lanes", "8") if command == "export-rtl" else ()
    out = tmp_path / "out"
    _appearing(monkeypatch, files, name)
    rc, _, err = run(capsys, command, "--model", tiny_model_path, "--out", out, *extra)
    assert_user_error(rc, err)
    assert rc == 1 and name in err
    assert (out / name).read_bytes() == b"theirs"
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]
    monkeypatch.undo()
    rc, _, err = run(capsys, command, "--model", tiny_model_path, "--out", out, "--force", *extra)
    assert rc == 0, err
    assert (out / name).read_bytes() != b"theirs"


def test_cli_force_keeps_the_mode_of_the_file_it_replaces(capsys, tmp_path, tiny_model_path, speech_wav):
    out = tmp_path / "o.cas"
    out.write_bytes(b"old")
    out.chmod(0o644)
    old = os.umask(0o077)
    try:
        rc, _, err = run(capsys, "encode", speech_wav, out, "--model", tiny_model_path, "--force")
    finally:
        os.umask(old)
    assert rc == 0, err
    assert out.stat().st_mode & 0o777 == 0o644 and out.read_bytes() != b"old"


def test_cli_sigterm_in_process_is_one_line_and_leaves_no_temporary_file(
        capsys, tmp_path, monkeypatch, tiny_model_path, speech_wav):
    """SIGTERM while the output is being written: exit 1, one line, no temporary file, no output,
    and the handler is the previous one again afterwards."""
    import model.cli
    real = files.write_file

    def killed_mid_write(path, data, force=False):
        def data_then_signal(f):
            f.write(data[:10])
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
            f.write(data[10:])
        return real(path, data_then_signal, force)
    monkeypatch.setattr(model.cli, "write_file", killed_mid_write)
    before = signal.getsignal(signal.SIGTERM)
    rc, _, err = run(capsys, "encode", speech_wav, tmp_path / "o.cas", "--model", tiny_model_path)
    assert_user_error(rc, err)
    assert rc == 1 and "interrupted (SIGTERM)" in err
    assert os.listdir(tmp_path) == []
    assert signal.getsignal(signal.SIGTERM) is before


_KILLED_CLI = """
import sys, time
from pathlib import Path
import model.cli, model.files
real = model.files.write_file
def slow(path, data, force=False):
    def write(f):
        f.write(data[:10]); f.flush()
        Path(sys.argv[1]).write_text("1")
        time.sleep(60)
        f.write(data[10:])
    return real(path, write, force)
model.cli.write_file = slow
sys.exit(model.cli.main(sys.argv[2:]))
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: s.name)
def test_cli_killed_mid_write_removes_the_temporary_file(tmp_path, tiny_model_path, speech_wav, sig):
    """A real ``cascade encode`` process signalled while it writes its output: the temporary
    file goes, the destination never appears, exit 1 with one line."""
    folder = tmp_path / "out"
    folder.mkdir()
    ready = tmp_path / "ready"
    p = subprocess.Popen([sys.executable, "-c", _KILLED_CLI, str(ready), "encode", str(speech_wav),
                          str(folder / "o.cas"), "--model", str(tiny_model_path)], cwd=REPO,
                         env=dict(os.environ, PYTHONPATH=str(REPO)), stderr=subprocess.PIPE, text=True,
                         # a shell's background job inherits SIGINT ignored, and the CLI leaves an
                         # ignored signal ignored: give the child the default a terminal gives it
                         preexec_fn=lambda: signal.signal(sig, signal.SIG_DFL))
    t0 = time.time()
    while not ready.exists():
        assert time.time() - t0 < 120 and p.poll() is None, "the command did not start writing"
        time.sleep(0.05)
    assert any(n.startswith(".o.cas.") for n in os.listdir(folder))     # it is mid-write
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 1, err
    assert err.strip().splitlines()[-1].startswith("cascade: error: interrupted"), err
    assert len([l for l in err.splitlines() if l.strip()]) == 1, err
    assert os.listdir(folder) == []
