"""Board top level: the encoder and/or decoder core behind a UART link to a host.

The protocol (``docs/board.md``) is request/response, commands answered in order; the receive
FIFO holds a whole request, so a host may send the next ``E`` or ``D`` before the answer to the
previous one (INFO flag bit 4) and the link time hides behind the core's; all multi-byte values
are little-endian and code bits are packed least significant bit first (``np.packbits(...,
bitorder="little")``), stage 0 first:

========  ===========================================  ========================================
command   host sends after the command byte            board answers
========  ===========================================  ========================================
``E``     D words, 2 bytes each (signed, low A bits     ``E``, ceil(B/8) bytes of code bits
          used)                                         (B = sum(code_bits))
``D``     K (1 byte, 1..N), ceil(B_K/8) bytes of code   ``D``, D words, 2 bytes each,
          bits (B_K = sum(code_bits[:K]))               sign-extended
``T``     nothing                                       ``T``, flags (bit 0: encoder mismatch,
                                                        bit 1: decoder mismatch; 0 = pass)
``I``     nothing                                       ``I``, 8 bytes config hash, 1 byte flags
                                                        (bit 0 encoder, bit 1 decoder, bit 2 the
                                                        cores need a weight load, bit 3 they
                                                        have one, bit 4 two requests may be in
                                                        flight), 1 byte lanes P
``W``     the load image of each RAM-stored core,       ``W`` once every word is written
          encoder first (``Schedule.load_words()``,
          ceil(L/8) bytes per word, L =
          ``load_word_bits``)
========  ===========================================  ========================================

``E`` without an encoder, ``D`` without a decoder, or ``D`` with K outside 1..N answer ``!`` and
nothing else (for a bad K the code bytes that follow are read as commands: the host library
checks K first).  So do ``E``, ``D`` and ``T`` while RAM-stored cores wait for their weights, and
``W`` on a board whose weights are in ROM.  Other bytes are ignored.

Weights in ROM (``storage="rom"``, the bitstream carries them): after reset the board runs the
self-test once without answering, then lights ``led_pass`` or ``led_fail``.  Weights in RAM
(``"ram"``, or ``"spram"`` on the iCE40 UltraPlus, whose SPRAM a bitstream cannot initialize):
both LEDs stay dark until the host has sent ``W`` and then ``T``.  The self-test feeds ``selftest_frames`` stored frames (random integers of the
activation range, from a fixed seed) through the encoder and compares every code bit with
``model.golden.encode``; it feeds the expected codes (K = N) through the decoder and compares every
word with ``model.golden.decode``.
"""

import operator

import numpy as np
from amaranth.hdl import Array, Cat, Const, Elaboratable, Module, Mux, Signal
from amaranth.build import ResourceError
from amaranth.lib import io, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from model import golden
from model.golden import IntModel

from . import host
from .host import decode_request_len, encode_request_len
from .uart import UARTRx, UARTTx, baud_divisor

__all__ = ["BoardCore", "BoardTop", "selftest_vectors", "CMD_ENCODE", "CMD_DECODE", "CMD_SELFTEST",
           "CMD_INFO", "CMD_LOAD", "REPLY_REFUSED", "CORE_NAMES"]

CMD_ENCODE, CMD_DECODE, CMD_SELFTEST, CMD_INFO, CMD_LOAD = b"E"[0], b"D"[0], b"T"[0], b"I"[0], b"W"[0]
REPLY_REFUSED = b"!"[0]
CORE_NAMES = ("encoder", "decoder")


def selftest_vectors(model: IntModel, frames: int, seed: int = 1):
    """``(x, bits, y)``: ``frames`` random integer frames (T, D), their code bits (T, B) from
    ``golden.encode`` (stage 0 first) and ``golden.decode`` of those codes with all stages (T, D)."""
    cfg = model.config
    A = cfg.fixed.act_bits
    rng = np.random.default_rng(seed)
    x = rng.integers(-(1 << (A - 1)), 1 << (A - 1), (frames, cfg.coefficients), dtype=np.int64)
    codes = golden.encode(model, x)
    y = golden.decode(model, codes)
    return x, np.concatenate(codes, axis=1), y


def _default_core_classes():
    from .decoder import DecoderCore
    from .encoder import EncoderCore
    return EncoderCore, DecoderCore


class _Rom:
    """A synchronous ROM read in order: ``data`` is ``init[addr]`` where ``addr`` moves on by one
    in the cycle after ``advance`` and goes to 0 in the cycle after ``restart``."""

    def __init__(self, m, name, shape, init):
        init = [int(v) for v in init] or [0]
        self.mem = Memory(shape=shape, depth=len(init), init=init)
        m.submodules[name] = self.mem
        port = self.mem.read_port()
        self.addr = Signal(range(len(init) + 1), name=f"{name}_addr")
        self.advance = Signal(name=f"{name}_advance")
        self.restart = Signal(name=f"{name}_restart")
        nxt = Signal.like(self.addr, name=f"{name}_next")
        m.d.comb += nxt.eq(self.addr)
        with m.If(self.restart):
            m.d.comb += nxt.eq(0)
        with m.Elif(self.advance):
            m.d.comb += nxt.eq(self.addr + 1)
        m.d.comb += port.addr.eq(nxt)
        m.d.sync += self.addr.eq(nxt)
        self.data = port.data


class BoardCore(wiring.Component):
    """The board's logic without I/O buffers: UART, command decoder, cores, self-test.

    Parameters
    ----------
    model : IntModel
        The integer model the cores and the self-test are made from.
    lanes : int
        Passed to the cores.
    clk_freq : float
        Clock frequency in Hz (sets the UART divisor together with ``baud``).
    baud : int
        UART bit rate.  Alternatively ``divisor`` (clock cycles per bit) overrides both, e.g. for a
        fast simulation.
    cores : tuple of str
        Which cores to build: ``"encoder"``, ``"decoder"`` or both.
    selftest_frames : int
        Frames stored for the self-test (ROM: about ``frames * (2 * D * A + B)`` bits).
    encoder_cls, decoder_cls :
        Core classes (default ``hw.encoder.EncoderCore`` and ``hw.decoder.DecoderCore``).
    selftest : tuple, optional
        ``(x, bits, y)`` to store instead of :func:`selftest_vectors` (for tests with stand-in
        cores).
    storage : str
        Where the cores keep weights and parameters (``hw/store.py``): ``"rom"`` (in the
        bitstream), ``"ram"`` or ``"spram"`` (loaded by the host with ``W``).

    Ports: ``rx`` (in) and ``tx`` (out) UART lines; ``led_pass``, ``led_fail`` (self-test result,
    both 0 while it runs); ``busy`` (a command or the self-test runs).
    """
    rx: In(1, init=1)
    tx: Out(1, init=1)
    led_pass: Out(1)
    led_fail: Out(1)
    busy: Out(1)

    def __init__(self, model: IntModel, lanes: int = 1, *, clk_freq: float = 12e6, baud: int = 1_000_000,
                 divisor: int | None = None, cores=CORE_NAMES, selftest_frames: int = 2,
                 encoder_cls=None, decoder_cls=None, selftest=None, storage: str = "rom"):
        if not isinstance(model, IntModel):
            raise TypeError(f"model must be an IntModel, not {model!r}")
        model.check()
        cfg = model.config
        if cfg.fixed.act_bits > 16:
            raise ValueError(f"the UART protocol carries 16-bit words; act_bits is {cfg.fixed.act_bits}")
        cores = tuple(cores)
        if not cores or set(cores) - set(CORE_NAMES):
            raise ValueError(f"cores must be a non-empty subset of {CORE_NAMES}, not {cores!r}")
        self._model = model
        self._lanes = operator.index(lanes)
        if not 1 <= self._lanes <= host.MAX_BOARD_LANES:
            raise ValueError(f"a board top has 1..{host.MAX_BOARD_LANES} lanes (its info reply carries P "
                             f"in one byte), not {self._lanes}")
        self._divisor = operator.index(divisor) if divisor is not None else baud_divisor(clk_freq, baud)
        self._frames = operator.index(selftest_frames)
        if self._frames < 1:
            raise ValueError("selftest_frames must be at least 1")
        if encoder_cls is None or decoder_cls is None:
            if ("encoder" in cores and encoder_cls is None) or ("decoder" in cores and decoder_cls is None):
                enc_default, dec_default = _default_core_classes()
                encoder_cls = encoder_cls or enc_default
                decoder_cls = decoder_cls or dec_default
        kw = {} if storage == "rom" else {"storage": storage}
        self.encoder = encoder_cls(model, self._lanes, **kw) if "encoder" in cores else None
        self.decoder = decoder_cls(model, self._lanes, **kw) if "decoder" in cores else None
        self._storage = storage
        if selftest is None:
            selftest = selftest_vectors(model, self._frames)
        x, bits, y = (np.asarray(v) for v in selftest)
        if x.shape[0] != self._frames:
            raise ValueError(f"selftest has {x.shape[0]} frames, selftest_frames is {self._frames}")
        self._selftest = x, bits, y
        super().__init__()

    @property
    def model(self) -> IntModel:
        return self._model

    @property
    def divisor(self) -> int:
        return self._divisor

    @property
    def storage(self) -> str:
        return self._storage

    @property
    def cores(self) -> tuple:
        return tuple(n for n in CORE_NAMES if getattr(self, n) is not None)

    @property
    def rx_fifo_depth(self) -> int:
        """Bytes the receive FIFO holds: the longest ``E`` or ``D`` request plus 16, to a power
        of two.  While the board computes one request the next arrives here whole, so a host
        may keep two requests in flight (INFO flag bit 4); ``W`` is read as fast as it comes."""
        cfg = self._model.config
        longest = max(([encode_request_len(cfg)] if self.encoder is not None else [])
                      + ([decode_request_len(cfg)] if self.decoder is not None else []))
        return 1 << (longest + 16 - 1).bit_length()

    def elaborate(self, platform):
        m = Module()
        cfg = self._model.config
        A, D, N = cfg.fixed.act_bits, cfg.coefficients, cfg.network.stages
        B = cfg.code_bits_total
        prefix = [sum(cfg.network.code_bits[:k]) for k in range(N + 1)]
        T = self._frames
        enc, dec = self.encoder, self.decoder

        # ---- UART and receive FIFO ----------------------------------------------------------------
        m.submodules.uart_rx = urx = UARTRx(self._divisor)
        m.submodules.uart_tx = utx = UARTTx(self._divisor)
        m.submodules.rx_fifo = fifo = SyncFIFOBuffered(width=8, depth=self.rx_fifo_depth)
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx),
                     fifo.w_data.eq(urx.o.payload), fifo.w_en.eq(urx.o.valid), urx.o.ready.eq(fifo.w_rdy)]
        rx_data, rx_valid, rx_ready = fifo.r_data, fifo.r_rdy, fifo.r_en
        tx_data, tx_valid, tx_ready = utx.i.payload, utx.i.valid, utx.i.ready

        if enc is not None:
            m.submodules.encoder = enc
        if dec is not None:
            m.submodules.decoder = dec

        # ---- self-test ROMs -------------------------------------------------------------------------
        x, bits, y = self._selftest
        mask = (1 << A) - 1
        x_rom = _Rom(m, "x_rom", A, [int(v) & mask for v in x.reshape(-1)]) if enc is not None else None
        c_rom = _Rom(m, "c_rom", 1, bits.reshape(-1))
        y_rom = _Rom(m, "y_rom", A, [int(v) & mask for v in y.reshape(-1)]) if dec is not None else None

        # ---- registers ------------------------------------------------------------------------------
        word_cnt = Signal(range(D + 1))
        bit_cnt = Signal(range(B + 2))
        bit_pos = Signal(range(8))
        frame = Signal(range(T + 1))
        lo = Signal(8)
        word = Signal(16)
        sh = Signal(8)
        k = Signal(range(N + 1))
        k_pending = Signal()
        nbits = Signal(range(B + 1))
        flags = Signal(2)
        tested = Signal()
        reply = Signal()
        idx = Signal(range(10))

        loadable = [c for c in (enc, dec) if c is not None and self._storage != "rom"]
        all_loaded = Signal(init=1)
        if loadable:
            m.d.comb += all_loaded.eq(Cat(c.loaded for c in loadable).all())
        flags_byte = Signal(8)
        m.d.comb += flags_byte.eq((enc is not None) | ((dec is not None) << 1)
                                  | (bool(loadable) << 2) | (all_loaded << 3) | (1 << 4))
        info = [CMD_INFO, *bytes.fromhex(cfg.config_hash), 0, self._lanes]
        info_rom = Array(Const(b, 8) for b in info)
        prefix_rom = Array(Const(p, range(B + 1)) for p in prefix)

        m.d.comb += [self.led_pass.eq(tested & (flags == 0)), self.led_fail.eq(tested & (flags != 0))]

        if dec is not None:
            m.d.comb += [dec.k.payload.eq(k), dec.k.valid.eq(k_pending)]
            with m.If(dec.k.valid & dec.k.ready):
                m.d.sync += k_pending.eq(0)

        with m.FSM(init="BOOT") as fsm:
            m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))

            with m.State("BOOT"):
                m.d.sync += reply.eq(0)
                m.next = "IDLE" if loadable else "T_START"   # RAM weights: nothing to test yet

            with m.State("IDLE"):
                m.d.comb += rx_ready.eq(1)
                with m.If(rx_valid):
                    with m.Switch(rx_data):
                        with m.Case(CMD_ENCODE):
                            m.next = "E_ECHO" if enc is not None else "NAK"
                            with m.If(~all_loaded):
                                m.next = "NAK"
                        with m.Case(CMD_DECODE):
                            m.next = "D_K" if dec is not None else "NAK"
                            with m.If(~all_loaded):
                                m.next = "NAK"
                        with m.Case(CMD_SELFTEST):
                            m.d.sync += reply.eq(1)
                            m.next = "T_START"
                            with m.If(~all_loaded):
                                m.next = "NAK"
                        with m.Case(CMD_INFO):
                            m.d.sync += idx.eq(0)
                            m.next = "I_SEND"
                        with m.Case(CMD_LOAD):
                            m.next = "W_START" if loadable else "NAK"

            with m.State("NAK"):
                m.d.comb += [tx_data.eq(REPLY_REFUSED), tx_valid.eq(1)]
                with m.If(tx_ready):
                    m.next = "IDLE"

            with m.State("I_SEND"):
                m.d.comb += [tx_data.eq(Mux(idx == len(info) - 2, flags_byte, info_rom[idx])), tx_valid.eq(1)]
                with m.If(tx_ready):
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(idx == len(info) - 1):
                        m.next = "IDLE"

            # ---- W: load the weight/parameter images of the RAM-stored cores -------------------------
            if loadable:
                lbits = loadable[0].schedule.load_word_bits
                nbytes = (lbits + 7) // 8
                sizes = [c.schedule.weight_depth + c.schedule.param_depth for c in loadable]
                lcore = Signal(range(max(len(loadable), 2)))
                lword = Signal(8 * nbytes)
                lbyte = Signal(range(max(nbytes, 2)))
                lcnt = Signal(range(max(sizes)))
                for c in loadable:
                    m.d.comb += c.load.payload.eq(lword)
                with m.State("W_START"):
                    m.d.sync += [lcore.eq(0), lcnt.eq(0), lbyte.eq(0)]
                    m.next = "W_BYTE"
                with m.State("W_BYTE"):
                    m.d.comb += rx_ready.eq(1)
                    with m.If(rx_valid):
                        m.d.sync += lword.word_select(lbyte, 8).eq(rx_data)
                        with m.If(lbyte == nbytes - 1):
                            m.d.sync += lbyte.eq(0)
                            m.next = "W_PUSH"
                        with m.Else():
                            m.d.sync += lbyte.eq(lbyte + 1)
                with m.State("W_PUSH"):
                    for n, (c, size) in enumerate(zip(loadable, sizes)):
                        with m.If(lcore == n):
                            m.d.comb += c.load.valid.eq(1)
                            with m.If(c.load.ready):
                                m.next = "W_BYTE"
                                with m.If(lcnt == size - 1):
                                    m.d.sync += [lcnt.eq(0), lcore.eq(n + 1)]
                                    if n == len(loadable) - 1:
                                        m.next = "W_ECHO"
                                with m.Else():
                                    m.d.sync += lcnt.eq(lcnt + 1)
                with m.State("W_ECHO"):
                    m.d.comb += [tx_data.eq(CMD_LOAD), tx_valid.eq(1)]
                    with m.If(tx_ready):
                        m.next = "IDLE"

            # ---- E: encode one frame from the host --------------------------------------------------
            if enc is not None:
                with m.State("E_ECHO"):
                    m.d.comb += [tx_data.eq(CMD_ENCODE), tx_valid.eq(1)]
                    with m.If(tx_ready):
                        m.d.sync += word_cnt.eq(0)
                        m.next = "E_LO"
                with m.State("E_LO"):
                    m.d.comb += rx_ready.eq(1)
                    with m.If(rx_valid):
                        m.d.sync += lo.eq(rx_data)
                        m.next = "E_HI"
                with m.State("E_HI"):
                    m.d.comb += rx_ready.eq(1)
                    with m.If(rx_valid):
                        m.d.sync += word.eq(lo | (rx_data << 8))
                        m.next = "E_PUSH"
                with m.State("E_PUSH"):
                    m.d.comb += [enc.i.payload.eq(word[:A]), enc.i.valid.eq(1)]
                    with m.If(enc.i.ready):
                        m.d.sync += word_cnt.eq(word_cnt + 1)
                        with m.If(word_cnt == D - 1):
                            m.d.sync += [bit_cnt.eq(0), bit_pos.eq(0), sh.eq(0)]
                            m.next = "E_BITS"
                        with m.Else():
                            m.next = "E_LO"
                with m.State("E_BITS"):
                    m.d.comb += enc.o.ready.eq(1)
                    with m.If(enc.o.valid):
                        m.d.sync += [sh.bit_select(bit_pos, 1).eq(enc.o.payload),
                                     bit_pos.eq(bit_pos + 1), bit_cnt.eq(bit_cnt + 1)]
                        with m.If((bit_pos == 7) | (bit_cnt == B - 1)):
                            m.next = "E_SEND"
                with m.State("E_SEND"):
                    m.d.comb += [tx_data.eq(sh), tx_valid.eq(1)]
                    with m.If(tx_ready):
                        m.d.sync += [sh.eq(0), bit_pos.eq(0)]
                        with m.If(bit_cnt == B):
                            m.next = "IDLE"
                        with m.Else():
                            m.next = "E_BITS"

            # ---- D: decode K stages from the host -----------------------------------------------------
            if dec is not None:
                with m.State("D_K"):
                    m.d.comb += rx_ready.eq(1)
                    with m.If(rx_valid):
                        m.d.sync += [k.eq(rx_data), nbits.eq(prefix_rom[rx_data[:len(k)]])]
                        with m.If((rx_data >= 1) & (rx_data <= N)):
                            m.next = "D_ECHO"
                        with m.Else():
                            m.next = "NAK"
                with m.State("D_ECHO"):
                    m.d.comb += [tx_data.eq(CMD_DECODE), tx_valid.eq(1)]
                    with m.If(tx_ready):
                        m.d.sync += [k_pending.eq(1), bit_cnt.eq(0), word_cnt.eq(0)]
                        m.next = "D_BYTE"
                with m.State("D_BYTE"):
                    m.d.comb += rx_ready.eq(1)
                    with m.If(rx_valid):
                        m.d.sync += [sh.eq(rx_data), bit_pos.eq(0)]
                        m.next = "D_BITS"
                with m.State("D_BITS"):
                    m.d.comb += [dec.i.payload.eq(sh.bit_select(bit_pos, 1)), dec.i.valid.eq(1)]
                    with m.If(dec.i.ready):
                        m.d.sync += [bit_pos.eq(bit_pos + 1), bit_cnt.eq(bit_cnt + 1)]
                        with m.If(bit_cnt == nbits - 1):
                            m.next = "D_WORD"
                        with m.Elif(bit_pos == 7):
                            m.next = "D_BYTE"
                with m.State("D_WORD"):
                    m.d.comb += dec.o.ready.eq(1)
                    with m.If(dec.o.valid):
                        m.d.sync += word.eq(dec.o.payload.as_signed())
                        m.next = "D_LO"
                with m.State("D_LO"):
                    m.d.comb += [tx_data.eq(word[:8]), tx_valid.eq(1)]
                    with m.If(tx_ready):
                        m.next = "D_HI"
                with m.State("D_HI"):
                    m.d.comb += [tx_data.eq(word[8:]), tx_valid.eq(1)]
                    with m.If(tx_ready):
                        m.d.sync += word_cnt.eq(word_cnt + 1)
                        with m.If(word_cnt == D - 1):
                            m.next = "IDLE"
                        with m.Else():
                            m.next = "D_WORD"

            # ---- T: self-test ----------------------------------------------------------------------------
            with m.State("T_START"):
                m.d.sync += [flags.eq(0), tested.eq(0), frame.eq(0), word_cnt.eq(0), bit_cnt.eq(0)]
                for rom in (x_rom, c_rom, y_rom):
                    if rom is not None:
                        m.d.comb += rom.restart.eq(1)
                m.next = "T_EIN" if enc is not None else "T_DK"

            if enc is not None:
                with m.State("T_EIN"):
                    m.d.comb += [enc.i.payload.eq(x_rom.data), enc.i.valid.eq(1)]
                    with m.If(enc.i.ready):
                        m.d.comb += x_rom.advance.eq(1)
                        m.d.sync += word_cnt.eq(word_cnt + 1)
                        with m.If(word_cnt == D - 1):
                            m.d.sync += [word_cnt.eq(0), bit_cnt.eq(0)]
                            m.next = "T_EOUT"
                with m.State("T_EOUT"):
                    m.d.comb += enc.o.ready.eq(1)
                    with m.If(enc.o.valid):
                        m.d.comb += c_rom.advance.eq(1)
                        m.d.sync += bit_cnt.eq(bit_cnt + 1)
                        with m.If(enc.o.payload != c_rom.data):
                            m.d.sync += flags[0].eq(1)
                        with m.If(bit_cnt == B - 1):
                            m.d.sync += [frame.eq(frame + 1), bit_cnt.eq(0)]
                            with m.If(frame == T - 1):
                                m.next = "T_DSTART" if dec is not None else "T_DONE"
                            with m.Else():
                                m.next = "T_EIN"

            if dec is not None:
                with m.State("T_DSTART"):
                    m.d.comb += c_rom.restart.eq(1)
                    m.d.sync += [frame.eq(0), bit_cnt.eq(0), word_cnt.eq(0)]
                    m.next = "T_DK"
                with m.State("T_DK"):
                    m.d.sync += [k.eq(N), k_pending.eq(1), bit_cnt.eq(0), word_cnt.eq(0)]
                    m.next = "T_DIN"
                with m.State("T_DIN"):
                    m.d.comb += [dec.i.payload.eq(c_rom.data), dec.i.valid.eq(1)]
                    with m.If(dec.i.ready):
                        m.d.comb += c_rom.advance.eq(1)
                        m.d.sync += bit_cnt.eq(bit_cnt + 1)
                        with m.If(bit_cnt == B - 1):
                            m.next = "T_DOUT"
                with m.State("T_DOUT"):
                    m.d.comb += dec.o.ready.eq(1)
                    with m.If(dec.o.valid):
                        m.d.comb += y_rom.advance.eq(1)
                        m.d.sync += word_cnt.eq(word_cnt + 1)
                        with m.If(dec.o.payload.as_unsigned() != y_rom.data):
                            m.d.sync += flags[1].eq(1)
                        with m.If(word_cnt == D - 1):
                            m.d.sync += frame.eq(frame + 1)
                            with m.If(frame == T - 1):
                                m.next = "T_DONE"
                            with m.Else():
                                m.next = "T_DK"

            with m.State("T_DONE"):
                m.d.sync += tested.eq(1)
                with m.If(reply):
                    m.next = "T_ECHO"
                with m.Else():
                    m.next = "IDLE"
            with m.State("T_ECHO"):
                m.d.comb += [tx_data.eq(CMD_SELFTEST), tx_valid.eq(1)]
                with m.If(tx_ready):
                    m.next = "T_FLAGS"
            with m.State("T_FLAGS"):
                m.d.comb += [tx_data.eq(flags), tx_valid.eq(1)]
                with m.If(tx_ready):
                    m.next = "IDLE"
        return m


class BoardTop(Elaboratable):
    """:class:`BoardCore` on a platform: ``uart`` 0, ``led`` 0 = self-test failed, ``led`` 1 =
    passed (iCEBreaker: red and green; ULX3S: LEDs 0 and 1), ``led`` 2 = busy where it exists.

    ``clk_freq`` must be the platform's default clock (checked at elaboration)."""

    def __init__(self, model: IntModel, lanes: int = 1, *, clk_freq: float, baud: int = 1_000_000, **kwargs):
        self.clk_freq = clk_freq
        self.core = BoardCore(model, lanes, clk_freq=clk_freq, baud=baud, **kwargs)

    def elaborate(self, platform):
        m = Module()
        if platform is not None and abs(platform.default_clk_frequency - self.clk_freq) > 1:
            raise ValueError(f"BoardTop made for {self.clk_freq / 1e6:g} MHz, platform clock is "
                             f"{platform.default_clk_frequency / 1e6:g} MHz")
        m.submodules.core = core = self.core
        uart = platform.request("uart", 0, dir={"rx": "-", "tx": "-"})
        m.submodules.rx_buf = rx_buf = io.Buffer("i", uart.rx)
        m.submodules.tx_buf = tx_buf = io.Buffer("o", uart.tx)
        m.d.comb += [core.rx.eq(rx_buf.i), tx_buf.o.eq(core.tx)]
        for n, sig in enumerate((core.led_fail, core.led_pass, core.busy)):
            try:
                led = platform.request("led", n, dir="-")
            except ResourceError:  # fewer LEDs on this board
                break
            m.submodules[f"led{n}_buf"] = buf = io.Buffer("o", led)
            m.d.comb += buf.o.eq(sig)
        return m
