"""The SPI flash reader (``hw/flash.py``) in Amaranth's simulator against the testbench flash model
(``sim/flash_model.py``), and the flash-boot options' refusals."""

import random

import pytest
from amaranth.sim import Simulator

from hw.flash import FlashCommand, SPIFlashReader
from sim.flash_model import SPIFlashModel


def _read(data: bytes, offset: int, ready_p: float, asleep: bool, place: int | None = None, seed: int = 2):
    """Run the reader on a flash holding ``data`` at ``place`` (default ``offset``); return the
    bytes it handed on, the model, the cycles until ``done``, and whether CS stayed high after."""
    dut = SPIFlashReader(offset, len(data), wake_cycles=7)
    flash = SPIFlashModel(data, offset if place is None else place, asleep=asleep)
    got, state = [], {}

    async def bench(ctx):
        rng = random.Random(seed)
        for cycle in range(40 * len(data) + 200):
            flash_in = flash.step(ctx.get(dut.bus.cs_n), ctx.get(dut.bus.sck), ctx.get(dut.bus.copi))
            ctx.set(dut.bus.cipo, flash_in)
            ready = rng.random() < ready_p
            ctx.set(dut.o.ready, ready)
            if ctx.get(dut.o.valid) and ready:
                got.append(ctx.get(dut.o.payload))
            await ctx.tick()
            if ctx.get(dut.done):
                state["cycles"] = cycle + 1
                break
        await ctx.tick().repeat(5)
        state["cs_n"] = ctx.get(dut.bus.cs_n)
        state["valid_after"] = ctx.get(dut.o.valid)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return bytes(got), flash, state


@pytest.mark.parametrize("ready_p", [1.0, 0.3])
def test_reader_reads_the_image_in_order(ready_p):
    data = bytes(random.Random(1).randrange(256) for _ in range(57))
    got, flash, state = _read(data, 0x10_2345, ready_p, asleep=True)
    assert got == data
    assert flash.commands == [(FlashCommand.RELEASE_POWER_DOWN, None), (FlashCommand.READ, 0x10_2345)]
    assert flash.bytes_read == len(data)
    assert state["cs_n"] == 1 and state["valid_after"] == 0
    if ready_p == 1.0:      # the documented pace: 17 cycles a byte after wake-up and the command
        assert state["cycles"] <= SPIFlashReader.CYCLES_PER_BYTE * len(data) + 2 * 8 + 7 + 2 * 32 + 8


def test_reader_reads_where_it_is_told():
    """An image elsewhere in the flash is not found: the reader gets the erased bytes."""
    data = bytes(range(1, 20))
    got, _, _ = _read(data, 0x100000, 1.0, asleep=False, place=0x200000)
    assert got == b"\xff" * len(data)


def test_reader_refuses_impossible_reads():
    with pytest.raises(ValueError):
        SPIFlashReader(1 << 24, 4)
    with pytest.raises(ValueError):
        SPIFlashReader((1 << 24) - 2, 4)
    with pytest.raises(ValueError):
        SPIFlashReader(0, 0)


def test_flash_boot_needs_ram_storage():
    from hw.board import BoardCore
    from model import golden
    from model.config import preset
    model = golden.random_model(preset("tiny"), 0)
    with pytest.raises(ValueError, match="flash boot"):
        BoardCore(model, 1, storage="rom", flash_boot=True)
    board = BoardCore(model, 1, storage="ram", flash_boot=True)
    assert "flash" in board.signature.members and board.flash_boot
    assert "flash" not in BoardCore(model, 1, storage="ram").signature.members
