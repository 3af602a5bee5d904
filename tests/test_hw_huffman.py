"""hw/huffman.py against model/huffman.py, bit-exact, in Icarus through cocotb (sim/huffman_tb.py)."""

import shutil

import numpy as np
import pytest

from model.config import preset
from model.huffman import bits_to_symbols, train_codebooks

pytestmark = pytest.mark.skipif(shutil.which("iverilog") is None, reason="needs Icarus Verilog")


def vectors(cfg, tmp_path, sections=((0, 5), (1, 3), (0, 1), (1, 6)), seed=0):
    """Codebooks trained on skewed codes; sections (stage, frames) of other codes."""
    rng = np.random.default_rng(seed)
    train = [(rng.random((400, b)) < 0.12 + 0.15 * n).astype(np.uint8)
             for n, b in enumerate(cfg.network.code_bits)]
    cbs = train_codebooks(train, cfg)
    k = cfg.entropy.symbol_bits
    stages, counts, bits, data, nbytes = [], [], [], [], []
    for s, f in sections:
        c = (rng.random((f, cfg.network.code_bits[s])) < 0.12 + 0.15 * s).astype(np.uint8)
        sec = cbs[s].encode_bits(c)
        assert np.array_equal(cbs[s].decode_bits(sec, f, c.shape[1]), c)
        stages.append(s)
        counts.append(bits_to_symbols(c, k).size)
        bits.append(c.reshape(-1))
        data.append(np.frombuffer(sec, np.uint8))
        nbytes.append(len(sec))
    path = tmp_path / "vectors.npz"
    np.savez(path, stages=np.array(stages), counts=np.array(counts), bits=np.concatenate(bits),
             data=np.concatenate(data), sec_bytes=np.array(nbytes))
    return cbs, path


def run_sim(component, name, test, cfg, vec, tmp_path, seed=1):
    from hw.huffman import _stage_shape
    from sim.runner import build_icarus

    runner = build_icarus(component, name, tmp_path / "build")
    env = {"HUFFMAN_VECTORS": str(vec), "HUFFMAN_K": str(cfg.entropy.symbol_bits),
           "HUFFMAN_STAGE_BITS": str(_stage_shape(cfg.network.stages).width),
           "HUFFMAN_SEED": str(seed)}
    runner.test(hdl_toplevel=name, test_module="sim.huffman_tb", testcase=test,
                build_dir=tmp_path / "build", extra_env=env, seed=seed)


@pytest.mark.parametrize("symbol_bits", [8, 4])
def test_encoder_bit_exact(tmp_path, symbol_bits):
    from hw.huffman import HuffmanEncoder
    cfg = preset("tiny").replace(entropy={"symbol_bits": symbol_bits})
    cbs, vec = vectors(cfg, tmp_path)
    run_sim(HuffmanEncoder(cbs), "huffman_enc", "encoder_matches_model", cfg, vec, tmp_path)


@pytest.mark.parametrize("symbol_bits", [8, 4])
def test_decoder_bit_exact(tmp_path, symbol_bits):
    from hw.huffman import HuffmanDecoder
    cfg = preset("tiny").replace(entropy={"symbol_bits": symbol_bits})
    cbs, vec = vectors(cfg, tmp_path)
    run_sim(HuffmanDecoder(cbs, max_symbols=1024), "huffman_dec", "decoder_matches_model", cfg,
            vec, tmp_path)
