"""The whole board top level (UART included) in Icarus + cocotb against the golden model: power-up
self-test LEDs, ``I``, ``T``, ``E`` and ``D`` (several K) answers, and a refused bad K."""

import numpy as np
import pytest

from model import golden
from model.config import preset
from sim.board import run_board


def test_board_tiny_against_golden(tmp_path):
    cfg = preset("tiny")
    model = golden.random_model(cfg, 3)
    A = cfg.fixed.act_bits
    frames = np.random.default_rng(11).integers(-(1 << (A - 1)), 1 << (A - 1), (2, cfg.coefficients))
    res = run_board(model, 4, tmp_path, frames, ks=[cfg.network.stages, 1])
    assert res["errors"] == []
    assert res["leds"] == [1, 0]


def test_board_spram_load_then_codec(tmp_path):
    """The iCE40 UltraPlus form: weights in SB_SPRAM256KA (Yosys' simulation model of the primitive),
    refused ``E`` before the load, ``W`` with the image, then self-test, ``E`` and ``D`` bit-exact."""
    cfg = preset("tiny").replace(fixed={"scale_bits": 8, "bias_bits": 8})
    model = golden.random_model(cfg, 5)
    A = cfg.fixed.act_bits
    frames = np.random.default_rng(12).integers(-(1 << (A - 1)), 1 << (A - 1), (1, cfg.coefficients))
    res = run_board(model, 16, tmp_path, frames, ks=[cfg.network.stages], storage="spram",
                    selftest_frames=1)
    assert res["errors"] == []
    assert res["leds"] == [0, 0]          # nothing tested before the weights are in
    assert res["leds_end"] == [1, 0]


def test_board_selftest_catches_wrong_rom(tmp_path):
    from hw.board import selftest_vectors
    cfg = preset("tiny")
    model = golden.random_model(cfg, 3)
    x, bits, y = selftest_vectors(model, 1)
    y = y.copy()
    y[0, 5] ^= 1
    frames = x[:1]
    res = run_board(model, 16, tmp_path, frames, ks=[1], selftest=(x, bits, y), selftest_frames=1)
    assert res["leds"] == [0, 1]
    assert res["errors"] == ["selftest: got {'encoder_ok': True, 'decoder_ok': False}, "
                             "expected {'encoder_ok': True, 'decoder_ok': True}"]


def _flash_board_case():
    cfg = preset("tiny").replace(fixed={"scale_bits": 8, "bias_bits": 8})
    model = golden.random_model(cfg, 5)
    A = cfg.fixed.act_bits
    frames = np.random.default_rng(13).integers(-(1 << (A - 1)), 1 << (A - 1), (2, cfg.coefficients))
    return cfg, model, frames


def test_board_boots_from_flash(tmp_path):
    """Weights in SPRAM, read at power-up from a SPI flash model (``sim/flash_model.py``, asleep
    until woken) at ``protocol.FLASH_IMAGE_OFFSET``: the self-test passes without any ``W``, and
    ``I``, ``E`` (two in flight) and ``D`` answer bit-exactly."""
    from hw import host, protocol
    from hw.flash import FlashCommand
    cfg, model, frames = _flash_board_case()
    res = run_board(model, 16, tmp_path, frames, ks=[cfg.network.stages, 2], storage="spram",
                    selftest_frames=1, flash_boot=True)
    assert res["errors"] == []
    assert res["leds"] == [1, 0] and res["leds_end"] == [1, 0]
    image = protocol.flash_image(host.load_payload(model, 16, ("encoder", "decoder")))
    assert res["flash"]["commands"] == [[FlashCommand.RELEASE_POWER_DOWN, None],
                                        [FlashCommand.READ, protocol.FLASH_IMAGE_OFFSET]]
    assert res["flash"]["bytes_read"] == len(image)


def test_board_refuses_a_flash_image_with_one_wrong_bit(tmp_path):
    """One weight bit flipped in the flash image: the boot's CRC check refuses it, ``led_fail``
    lights, ``E`` is answered ``NOT_LOADED``; a ``W`` over the UART then loads the board."""
    from hw import host, protocol
    cfg, model, frames = _flash_board_case()
    image = bytearray(protocol.flash_image(host.load_payload(model, 16, ("encoder", "decoder"))))
    image[protocol.REQUEST_HEADER + 3] ^= 0x10
    res = run_board(model, 16, tmp_path, frames, ks=[1], storage="spram", selftest_frames=1,
                    flash_boot=True, flash_image=bytes(image))
    assert res["errors"] == []
    assert res["leds"] == [0, 1]
    assert res["leds_end"] == [1, 0]


def _shipped_frames(n: int):
    """The shipped default model's integer model and ``n`` quantized frames of a real recording
    (the middle of a test-voice file)."""
    from pathlib import Path
    from model import dsp
    from model.codec import Codec
    from model.data import load_wav
    root = Path(__file__).resolve().parents[1]
    codec = Codec.load(root / "model" / "default" / "model.pt")
    wav = sorted((root / "data" / "test" / "cmu").glob("*.wav"))[0]
    an = dsp.analyze(load_wav(wav, codec.cfg.signal.sample_rate), codec.cfg, codec.lsf_q)
    x = golden.quantize_frames(an.frames, codec.cfg)
    mid = len(x) // 2
    return codec.int_model(), x[mid:mid + n]


@pytest.mark.slow  # minutes of Icarus each: the boot clocks in the whole image (61 / 111 kB)
@pytest.mark.parametrize("core", ["decoder", "encoder"])
def test_shipped_board_boots_from_flash(tmp_path, core):
    """The shipped model's iCEBreaker tops as committed (one core each, P = 16, SPRAM, flash boot)
    boot from the flash model and code real speech frames bit-exactly: the decoder at two K, the
    encoder with its code search, two requests in flight."""
    model, frames = _shipped_frames(2)
    N = model.config.network.stages
    res = run_board(model, 16, tmp_path, frames, ks=[N, 3], storage="spram", selftest_frames=1,
                    flash_boot=True, cores=(core,))
    assert res["errors"] == []
    assert res["leds"] == [1, 0]
