"""What a model file is, read without PyTorch: its format, version and codec config.

A model file (``Codec.save``) is a ``torch.save`` zip archive of one dict: ``format``
(``MODEL_FORMAT``), ``version`` (``MODEL_VERSION``), ``config`` (``CodecConfig.to_dict``),
``config_hash``, the weights (``state_dict``), the LSF quantizer, the codebooks and ``meta``.
``Codec.load`` reads all of it through ``torch.load(weights_only=True)``; commands that need
only the config (``cascade truncate``, the checks before a long job) read it with
:func:`read_config`, which unpickles the archive's ``data.pkl`` with every tensor left out and
no class but a few plain ones allowed (so it imports no PyTorch and runs no code from the file),
and :func:`check_head` is the one check of the fields both readers share.
"""

from __future__ import annotations

import collections
import pickle
import zipfile
from pathlib import Path

from .config import CodecConfig, ConfigError
from .errors import CascadeError

__all__ = ["MODEL_FORMAT", "MODEL_VERSION", "DEFAULT_MODEL", "ModelError", "check_file_head", "check_head",
           "read_config"]

MODEL_FORMAT = "cascade-model"
MODEL_VERSION = 1
DEFAULT_MODEL = Path(__file__).parent / "default" / "model.pt"

#: The largest ``data.pkl`` :func:`read_config` reads (the shipped models' are about 30 kB: the
#: weights are separate entries of the archive).
PICKLE_LIMIT = 16 << 20


class ModelError(CascadeError, ValueError):
    """A model file that is missing, damaged or made for other code."""


def check_file_head(d, path, *, fmt: str, version: int, what: str, error=None) -> CodecConfig:
    """The checks every file of this project that carries a codec config makes of its head (a
    dict with ``format``, ``version``, ``config``, ``config_hash``): the format is ``fmt``, the
    version ``version``, the config reads and its hash matches -> the config.  Raises ``error``
    (default ModelError; one line naming ``path`` and ``what`` the file is)."""
    error = error or ModelError
    if not isinstance(d, dict) or d.get("format") != fmt:
        raise error(f"{path} is not a cascade {what}")
    if d.get("version") != version:
        raise error(f"{path} has {what} format version {d.get('version')}, this code reads {version}")
    try:
        cfg = CodecConfig.from_dict(d["config"])
    except (ConfigError, TypeError, KeyError, AttributeError) as exc:
        raise error(f"{path}: its config does not fit this code: {exc}") from None
    if cfg.config_hash != d.get("config_hash"):
        raise error(f"{path}: config hash mismatch ({what} edited or made by other code)")
    return cfg


def check_head(d, path) -> CodecConfig:
    """:func:`check_file_head` of a loaded model dict.  Raises ModelError (one line)."""
    return check_file_head(d, path, fmt=MODEL_FORMAT, version=MODEL_VERSION, what="model file")


class _Omitted:
    """Stands for a tensor, a storage or any PyTorch object of the pickle (not read)."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return self

    def __setstate__(self, state):
        pass


class _ConfigUnpickler(pickle.Unpickler):
    _PLAIN = {("collections", "OrderedDict"): collections.OrderedDict}

    def find_class(self, module, name):
        if (module, name) in self._PLAIN:
            return self._PLAIN[(module, name)]
        if module == "torch" or module.startswith("torch."):
            return _Omitted
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a model file")

    def persistent_load(self, pid):
        return _Omitted()


def read_config(path=None) -> CodecConfig:
    """The codec config of a model file (default: the shipped model), checked as ``Codec.load``
    checks it, without PyTorch and without reading the weights.  Raises ModelError."""
    path = Path(path) if path is not None else DEFAULT_MODEL
    if not path.is_file():
        raise ModelError(f"model file {path} not found")
    try:
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if len(names) != 1 or z.getinfo(names[0]).file_size > PICKLE_LIMIT:
                raise ModelError(f"{path} is not a readable model file (no single data.pkl of at most "
                                 f"{PICKLE_LIMIT >> 20} MB)")
            raw = z.read(names[0])
        import io
        d = _ConfigUnpickler(io.BytesIO(raw)).load()
    except ModelError:
        raise
    except Exception as exc:  # zipfile and pickle raise many types for a damaged file
        raise ModelError(f"{path} is not a readable model file ({type(exc).__name__})") from None
    return check_head(d, path)
