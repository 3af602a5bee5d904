"""cocotb testbench of the encoder and decoder cores (imported inside the simulator).

Reads the vectors .npz named by ``CASCADE_VECTORS`` (written by ``sim/runner.py``): the input
streams, the expected output words with their (frame, stage, word) origin, the valid/ready
probabilities and a seed.  Writes a JSON summary to ``CASCADE_RESULT`` and fails the test on any
mismatch unless ``CASCADE_CHECK=0``.
"""

import json
import os
import random

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

from sim.streams import receive, send


@cocotb.test()
async def run_vectors(dut):
    v = np.load(os.environ["CASCADE_VECTORS"])
    side = str(v["side"])
    rng = random.Random(int(v["seed"]))
    p_valid, p_ready = float(v["p_valid"]), float(v["p_ready"])
    expected = v["expected"].astype(np.int64)
    n_exp = len(expected)
    max_cycles = int(v["max_cycles"])

    dut.rst.value = 1
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    if side == "decoder":
        dut.k__valid.value = 0
    if "load" in v.files:
        dut.load__valid.value = 0
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    for _ in range(3):
        await FallingEdge(dut.clk)
    dut.rst.value = 0

    if "load" in v.files:
        # a RAM-stored core: send the weight/parameter image first, as the board does
        await send(dut, "load", v["load"], bits=int(v["load_bits"]), p_valid=p_valid, rng=random.Random(rng.random()))
        for _ in range(2):
            await FallingEdge(dut.clk)
        assert int(dut.loaded.value) == 1, "core not loaded after its whole image"

    if side == "encoder":
        cocotb.start_soon(send(dut, "i", v["inputs"], bits=int(v["act_bits"]), p_valid=p_valid, rng=rng))
    else:
        cocotb.start_soon(send(dut, "k", v["ks"], bits=8, p_valid=p_valid, rng=random.Random(rng.random())))
        cocotb.start_soon(send(dut, "i", v["inputs"], bits=1, p_valid=p_valid, rng=random.Random(rng.random())))

    got, times = await receive(dut, "o", n_exp, p_ready=p_ready, rng=rng, max_cycles=max_cycles,
                               signed=side == "decoder")
    cycle = (times[-1] if times else 0) if len(got) == n_exp else max_cycles

    got_a = np.array(got + [None] * (n_exp - len(got)), dtype=object)
    mism = [n for n in range(n_exp) if got_a[n] is None or int(got_a[n]) != int(expected[n])]
    first = None
    if mism:
        n = mism[0]
        first = {"frame": int(v["exp_frame"][n]), "stage": int(v["exp_stage"][n]),
                 "word": int(v["exp_word"][n]), "expected": int(expected[n]),
                 "got": None if got_a[n] is None else int(got_a[n])}
    # steady-state frame period: distance between the last words of consecutive frames
    per_frame = int(v["words_per_frame"])
    cpf = None
    if per_frame > 0 and len(got) == n_exp and n_exp // per_frame >= 3:
        ends = [times[(f + 1) * per_frame - 1] for f in range(n_exp // per_frame)]
        diffs = np.diff(ends)[1:]
        cpf = int(np.median(diffs))
    result = {"side": side, "words": n_exp, "received": len(got), "mismatches": len(mism),
              "cycles_per_frame": cpf, "first_mismatch": first, "cycles": cycle}
    with open(os.environ["CASCADE_RESULT"], "w") as f:
        json.dump(result, f)
    if os.environ.get("CASCADE_CHECK", "1") != "0":
        assert len(got) == n_exp, f"timeout: {len(got)} of {n_exp} words after {cycle} cycles"
        assert not mism, f"{len(mism)} mismatches, first {first}"
