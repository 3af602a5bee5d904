"""The one base class of every error a user can cause (bad audio, stream, model, config,
export, board or toolchain): ``cascade`` prints such an error as one line, ``cascade: error:
...``, and exits 1.  Kept in a module of its own, importing nothing, so that the CLI can catch
them all without importing the modules (PyTorch, SciPy, Amaranth) that raise them."""


class CascadeError(Exception):
    """An error a user can cause; its message is one line."""


class UserError(CascadeError):
    """A bad argument or input found by the command-line layer or a library function it calls."""
