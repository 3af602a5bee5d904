"""cocotb bench of the whole board top level (``hw.board.BoardCore``: UART, command decoder,
self-test, cores), imported inside the simulator.

A byte mover: with a flash-booting board it first runs ``sim/flash_model.py``'s SPI flash on the
``flash`` pins until the boot is over; then it reads ``CASCADE_VECTORS`` (an .npz written by ``sim/board.py``) with the UART divisor
and the request byte strings with the number of reply frames each gets, bit-bangs each request into
``rx`` while it collects the reply frames from ``tx`` (each as long as its header says), and writes
the LED state after the power-up self-test, every reply frame (hex), the cycles each transaction
took, and any byte that arrives after the last reply, to ``CASCADE_RESULT`` (JSON).  The comparison with the golden model
happens outside, through ``hw.host``'s parse functions.
"""

import json
import os

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, First, RisingEdge, Timer

PERIOD_NS = 10


async def send_bytes(dut, data: bytes, div: int):
    for b in data:
        for bit in [0] + [(b >> i) & 1 for i in range(8)] + [1]:
            dut.rx.value = bit
            await ClockCycles(dut.clk, div)


async def recv_bytes(dut, n: int, div: int, timeout_cycles: int) -> bytes:
    out = bytearray()
    for _ in range(n):
        if int(dut.tx.value):
            edge = await First(FallingEdge(dut.tx), Timer(timeout_cycles * PERIOD_NS, "ns"))
            if not isinstance(edge, FallingEdge):
                return bytes(out)
        await ClockCycles(dut.clk, div // 2)
        assert int(dut.tx.value) == 0, "start bit glitch"
        b = 0
        for i in range(8):
            await ClockCycles(dut.clk, div)
            b |= int(dut.tx.value) << i
        await ClockCycles(dut.clk, div)
        assert int(dut.tx.value) == 1, f"stop bit missing in byte {len(out)}"
        out.append(b)
    return bytes(out)


async def recv_frames(dut, n: int, div: int, timeout_cycles: int) -> list[str]:
    """``n`` reply frames (``hw/protocol.py``: 6 header bytes, the payload length they give, CRC)."""
    from hw.protocol import CRC_BYTES, REPLY_HEADER
    out = []
    for _ in range(n):
        head = await recv_bytes(dut, REPLY_HEADER, div, timeout_cycles)
        rest = b""
        if len(head) == REPLY_HEADER:
            rest = await recv_bytes(dut, int.from_bytes(head[4:6], "little") + CRC_BYTES, div, timeout_cycles)
        out.append((head + rest).hex())
        if len(head) < REPLY_HEADER:
            break
    return out


async def flash_pins(dut, flash):
    """Drive ``flash__cipo`` from the flash model, the pins read in the middle of each cycle."""
    while True:
        await FallingEdge(dut.clk)
        dut.flash__cipo.value = flash.step(int(dut.flash__cs_n.value), int(dut.flash__sck.value),
                                           int(dut.flash__copi.value))


@cocotb.test()
async def board_transactions(dut):
    v = np.load(os.environ["CASCADE_VECTORS"])
    div, timeout = int(v["divisor"]), int(v["timeout_cycles"])
    requests = [bytes(r) for r in np.split(v["request_bytes"].astype(np.uint8), v["request_splits"])]
    counts = [int(n) for n in v["reply_frames"]]
    dut.rx.value = 1
    dut.rst.value = 1
    cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0

    result = {"boot_cycles": None, "replies": [], "cycles": []}
    cycles = 0
    flash = None
    if int(v["flash_offset"]) >= 0:
        from sim.flash_model import SPIFlashModel
        flash = SPIFlashModel(v["flash_image"].astype(np.uint8).tobytes(), int(v["flash_offset"]), asleep=True)
        pins = cocotb.start_soon(flash_pins(dut, flash))
    await ClockCycles(dut.clk, 2)
    while int(dut.busy.value):   # power-up self-test (ROM weights) or nothing (RAM weights)
        await RisingEdge(dut.clk)
        cycles += 1
        if cycles > timeout:
            break
    result["boot_cycles"] = cycles
    if flash is not None:
        pins.cancel()
        result["flash"] = {"commands": flash.commands, "bytes_read": flash.bytes_read}
    result["leds"] = [int(dut.led_pass.value), int(dut.led_fail.value)]

    for req, n in zip(requests, counts):
        t0 = cocotb.utils.get_sim_time("ns")
        receiver = cocotb.start_soon(recv_frames(dut, n, div, timeout))
        await send_bytes(dut, req, div)
        reply = await receiver
        result["replies"].append(reply)
        result["cycles"].append(int((cocotb.utils.get_sim_time("ns") - t0) // PERIOD_NS))
        await ClockCycles(dut.clk, 2 * div)
    result["extra"] = (await recv_bytes(dut, 1, div, int(v["quiet_cycles"]))).hex()   # nothing more may come
    result["leds_end"] = [int(dut.led_pass.value), int(dut.led_fail.value)]
    with open(os.environ["CASCADE_RESULT"], "w") as f:
        json.dump(result, f)
