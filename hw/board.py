"""Board top level: the encoder and/or decoder core behind a framed UART link to a host.

The protocol (``docs/board.md``; command bytes, status codes, INFO layout, frame layout and
lengths in ``hw/protocol.py``, shared with the host side ``hw/host.py``) is request/response,
answered in order.  Every request is a frame with a length and a CRC-16; the receiver
(``hw/link.py``) checks it into a buffer that holds a whole ``E`` or ``D`` request, so a host may
send the next one before the answer to the previous (INFO flag ``TWO_IN_FLIGHT``) and the link time
hides behind the core's, and the command logic here never sees a byte of a malformed, truncated or
corrupted request: those are answered with an error status instead.  Payloads (all multi-byte
values little-endian; code bits packed least significant bit first, stage 0 first,
``np.packbits(..., bitorder="little")``):

========  ===========================================  ========================================
command   request payload                              ``OK`` reply payload
========  ===========================================  ========================================
``E``     D words, 2 bytes each (signed, low A bits     ceil(B/8) bytes of code bits
          used)                                         (B = sum(code_bits))
``D``     K (1 byte, 1..N), ceil(B_K/8) bytes of code   D words, 2 bytes each, sign-extended
          bits (B_K = sum(code_bits[:K]))
``T``     nothing                                       flags (bit 0: encoder mismatch,
                                                        bit 1: decoder mismatch; 0 = pass)
``I``     nothing                                       8 bytes config hash, 1 byte flags
                                                        (``protocol.InfoFlag``), 1 byte lanes P,
                                                        1 byte protocol version
``W``     the load image of each RAM-stored core,       nothing (status ``OK`` once every word
          encoder first (``Schedule.load_words()``,     is written and the CRC matched)
          ceil(L/8) bytes per word, L =
          ``load_word_bits``)
========  ===========================================  ========================================

``E`` without an encoder and ``D`` without a decoder answer ``NO_CORE``; ``E``, ``D`` and ``T``
while RAM-stored cores wait for their weights answer ``NOT_LOADED``; ``W`` on a board whose weights
are in ROM answers ``NOT_WRITABLE`` (each after the whole request has arrived).

Weights in ROM (``storage="rom"``, the bitstream carries them): after reset the board runs the
self-test once without answering, then lights ``led_pass`` or ``led_fail``.  Weights in RAM
(``"ram"``, or ``"spram"`` on the iCE40 UltraPlus, whose SPRAM a bitstream cannot initialize):
both LEDs stay dark until the host has sent ``W`` and then ``T``.  The self-test feeds ``selftest_frames`` stored frames (random integers of the
activation range, from a fixed seed) through the encoder and compares every code bit with
``model.golden.encode``; it feeds the expected codes (K = N) through the decoder and compares every
word with ``model.golden.decode``.
"""

import math
import operator
from contextlib import contextmanager

import numpy as np
from amaranth.hdl import Array, Cat, Const, Elaboratable, Module, Mux, Signal
from amaranth.build import ResourceError
from amaranth.lib import io, stream, wiring
from amaranth.lib.wiring import In, Out

from model.golden import IntModel

from .clocks import SystemClock
from .flash import SPIBus, SPIFlashReader, WAKE_SECONDS
from . import protocol
from .link import CommandRule, PacketFIFO, ReplyFramer, RequestDeframer
from .payload import (BitsFromBytes, BytesFromBits, BytesFromWords, SelfTest, WordsFromBytes,
                      selftest_vectors)
from .protocol import Command, InfoFlag, Status
from .uart import UARTRx, UARTTx, baud_divisor

__all__ = ["BoardCore", "BoardTop", "selftest_vectors", "CORE_NAMES"]

CORE_NAMES = ("encoder", "decoder")


def _default_core_classes():
    from .decoder import DecoderCore
    from .encoder import EncoderCore
    return EncoderCore, DecoderCore


class ImageStreamer(wiring.Component):
    """The payload of a ``W`` request into the load streams of the RAM-stored cores: bytes from
    ``i`` (``word_bytes`` per word, little-endian) become words on ``o``, the first ``sizes[0]``
    words for core 0 (``core`` = 0), the next ``sizes[1]`` for core 1, ...; ``done`` pulses when
    the last word of the last core has been taken.  ``start`` (while idle) begins a new image."""

    def __init__(self, word_bytes: int, sizes):
        self._nbytes, self._sizes = int(word_bytes), tuple(int(n) for n in sizes)
        super().__init__({"start": In(1), "i": In(stream.Signature(8)),
                          "o": Out(stream.Signature(8 * self._nbytes)),
                          "core": Out(range(max(len(self._sizes), 2))), "done": Out(1)})

    def elaborate(self, platform):
        m = Module()
        nbytes, sizes = self._nbytes, self._sizes
        byte = Signal(range(max(nbytes, 2)))
        count = Signal(range(max(sizes)))
        word = Signal(8 * nbytes)
        m.d.comb += self.o.payload.eq(word)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [self.core.eq(0), count.eq(0), byte.eq(0)]
                    m.next = "BYTE"
            with m.State("BYTE"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += word.word_select(byte, 8).eq(self.i.payload)
                    with m.If(byte == nbytes - 1):
                        m.d.sync += byte.eq(0)
                        m.next = "PUSH"
                    with m.Else():
                        m.d.sync += byte.eq(byte + 1)
            with m.State("PUSH"):
                m.d.comb += self.o.valid.eq(1)
                with m.If(self.o.ready):
                    m.next = "BYTE"
                    for n, size in enumerate(sizes):
                        with m.If(self.core == n):
                            with m.If(count == size - 1):
                                m.d.sync += [count.eq(0), self.core.eq(n + 1)]
                                if n == len(sizes) - 1:
                                    m.d.comb += self.done.eq(1)
                                    m.next = "IDLE"
                            with m.Else():
                                m.d.sync += count.eq(count + 1)
        return m


class BoardCore(wiring.Component):
    """The board's logic without I/O buffers: UART, framed link, command decoder, cores, self-test.

    Parameters
    ----------
    model : IntModel
        The integer model the cores and the self-test are made from.
    lanes : int
        Passed to the cores.
    clk_freq : float
        Clock frequency in Hz (sets the UART divisor together with ``baud``, and the inter-byte
        timeout together with ``byte_timeout``).
    baud : int
        UART bit rate.  Alternatively ``divisor`` (clock cycles per bit) overrides both, e.g. for a
        fast simulation.
    byte_timeout : float
        Seconds of silence inside a request after which the board drops it and answers
        ``TIMEOUT`` (and, after a malformed request, the silence it waits for before answering).
        Alternatively ``timeout_cycles`` gives it in clock cycles, e.g. for a fast simulation.
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
        bitstream), ``"ram"`` or ``"spram"`` (loaded by the host with ``W``, or from flash).
    flash_boot : bool
        RAM storage only: at power-up read the weight image from the SPI flash
        (:class:`hw.flash.SPIFlashReader`; the image is ``protocol.flash_image``, a ``W`` request
        frame, at ``flash_offset``) through the same receiver as a ``W`` from the UART, then run
        the self-test and light the LEDs, so the board works without a host loading it.  UART bytes
        during the boot are dropped and the boot's own ``W`` gets no reply.  A damaged, blank or
        short image leaves the board unloaded with ``led_fail`` lit; ``W`` over the UART still
        loads it then.
    flash_offset : int
        Byte address of the image in the flash (default ``protocol.FLASH_IMAGE_OFFSET``).
    wake_cycles : int, optional
        Cycles the flash gets to wake from power-down (default: ``hw.flash.WAKE_SECONDS`` at
        ``clk_freq``).

    Ports: ``rx`` (in) and ``tx`` (out) UART lines; ``led_pass``, ``led_fail`` (self-test result,
    both 0 while it runs; ``led_fail`` also after a failed flash boot); ``busy`` (a command, the
    flash boot or the self-test runs); with ``flash_boot``, ``flash`` (``hw.flash.SPIBus``).
    """

    def __init__(self, model: IntModel, lanes: int = 1, *, clk_freq: float = 12e6, baud: int = 1_000_000,
                 divisor: int | None = None, byte_timeout: float = protocol.BYTE_TIMEOUT,
                 timeout_cycles: int | None = None, cores=CORE_NAMES, selftest_frames: int = 2,
                 encoder_cls=None, decoder_cls=None, selftest=None, storage: str = "rom",
                 flash_boot: bool = False, flash_offset: int = protocol.FLASH_IMAGE_OFFSET,
                 wake_cycles: int | None = None):
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
        if not 1 <= self._lanes <= protocol.MAX_BOARD_LANES:
            raise ValueError(f"a board top has 1..{protocol.MAX_BOARD_LANES} lanes (its info reply carries P "
                             f"in one byte), not {self._lanes}")
        self._divisor = operator.index(divisor) if divisor is not None else baud_divisor(clk_freq, baud)
        self._timeout = (operator.index(timeout_cycles) if timeout_cycles is not None
                         else max(1, round(clk_freq * byte_timeout)))
        if self._timeout < 20 * self._divisor:
            raise ValueError(f"the inter-byte timeout ({self._timeout} cycles) must last at least two "
                             f"bytes on the line ({20 * self._divisor} cycles)")
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
        self._flash_boot = bool(flash_boot)
        if self._flash_boot and storage == "rom":
            raise ValueError("flash boot loads weights into RAM: it needs storage 'ram' or 'spram', "
                             "not 'rom' (the bitstream already holds the weights then)")
        self._flash_offset = operator.index(flash_offset)
        self._wake = (operator.index(wake_cycles) if wake_cycles is not None
                      else max(1, math.ceil(clk_freq * WAKE_SECONDS)))
        signature = {"rx": In(1, init=1), "tx": Out(1, init=1), "led_pass": Out(1), "led_fail": Out(1),
                     "busy": Out(1)}
        if self._flash_boot:
            signature["flash"] = Out(SPIBus)
        super().__init__(signature)

    @property
    def model(self) -> IntModel:
        return self._model

    @property
    def divisor(self) -> int:
        return self._divisor

    @property
    def timeout_cycles(self) -> int:
        """Clock cycles of silence inside a request after which it is dropped."""
        return self._timeout

    @property
    def storage(self) -> str:
        return self._storage

    @property
    def flash_boot(self) -> bool:
        return self._flash_boot

    @property
    def flash_offset(self) -> int:
        return self._flash_offset

    def flash_image(self) -> bytes:
        """What this board reads from its flash at power-up (``protocol.flash_image`` of its
        cores' load images); :attr:`flash_image_bytes` long."""
        from . import host
        return protocol.flash_image(host.load_payload(self._model, self._lanes, self.cores))

    @property
    def flash_image_bytes(self) -> int:
        return protocol.REQUEST_OVERHEAD + self.load_bytes

    @property
    def cores(self) -> tuple:
        return tuple(n for n in CORE_NAMES if getattr(self, n) is not None)

    @property
    def load_bytes(self) -> int:
        """Payload bytes of this board's ``W`` request: the load images of its cores (what a RAM
        board needs; a ROM board answers a ``W`` of this length ``NOT_WRITABLE``)."""
        from .schedule import Schedule
        return protocol.load_image_bytes([Schedule(self._model, self._lanes, side) for side in self.cores])

    def command_rules(self) -> dict:
        """:class:`hw.link.CommandRule` per command: the lengths and the handling the receiver
        checks every request against (``hw/protocol.py``'s lengths for this board's cores)."""
        cfg = self._model.config
        ram = self._storage != "rom"

        def mode(core):
            return "store" if core is not None else Status.NO_CORE
        k_len = {k: protocol.request_payloads(cfg, Command.DECODE)[k - 1] for k in range(1, cfg.network.stages + 1)}
        return {
            Command.ENCODE: CommandRule(protocol.request_payloads(cfg, Command.ENCODE), mode(self.encoder), ram),
            Command.DECODE: CommandRule(protocol.request_payloads(cfg, Command.DECODE), mode(self.decoder), ram,
                                        first_byte=k_len),
            Command.SELFTEST: CommandRule((0,), "store", ram),
            Command.INFO: CommandRule((0,), "store"),
            Command.LOAD: CommandRule((self.load_bytes,), "stream" if ram else Status.NOT_WRITABLE),
        }

    @property
    def rx_fifo_depth(self) -> int:
        """Bytes the receive buffer holds: the longest ``E`` or ``D`` request's record (command, tag
        and payload) plus 16, to a power of two.  While the board computes one request the next
        arrives here whole, so a host may keep two requests in flight (``InfoFlag.TWO_IN_FLIGHT``);
        ``W`` streams through as fast as it comes."""
        cfg = self._model.config
        longest = max(([2 + max(protocol.request_payloads(cfg, Command.ENCODE))] if self.encoder is not None else [])
                      + ([2 + max(protocol.request_payloads(cfg, Command.DECODE))] if self.decoder is not None else []))
        return 1 << (longest + 16 - 1).bit_length()

    def elaborate(self, platform):
        m = Module()
        cfg = self._model.config
        A, D, N = cfg.fixed.act_bits, cfg.coefficients, cfg.network.stages
        B = cfg.code_bits_total
        enc, dec = self.encoder, self.decoder

        # ---- UART, framed link: requests checked into the packet FIFO, replies framed -------------
        loadable = [c for c in (enc, dec) if c is not None and self._storage != "rom"]
        all_loaded = Signal(init=1)
        m.submodules.uart_rx = urx = UARTRx(self._divisor)
        m.submodules.uart_tx = utx = UARTTx(self._divisor)
        m.submodules.deframer = deframer = RequestDeframer(self.command_rules(), self._timeout)
        m.submodules.rx_fifo = fifo = PacketFIFO(8, self.rx_fifo_depth)
        m.submodules.framer = framer = ReplyFramer(max(protocol.reply_payload(cfg, c) for c in Command))
        booting = Signal(init=1) if self._flash_boot else Const(0)
        boot_failed = Signal()
        if self._flash_boot:
            # the weight image from flash goes to the receiver the UART uses otherwise
            m.submodules.flash_reader = reader = SPIFlashReader(self._flash_offset, self.flash_image_bytes, self._wake)
            wiring.connect(m, reader.bus, wiring.flipped(self.flash))
            with m.If(booting):
                m.d.comb += [*_feed(reader.o, deframer.i), urx.o.ready.eq(1)]
            with m.Else():
                m.d.comb += _feed(urx.o, deframer.i)
        else:
            wiring.connect(m, urx.o, deframer.i)
        wiring.connect(m, deframer.o, fifo.w)
        wiring.connect(m, framer.o, utx.i)
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx), fifo.commit.eq(deframer.commit),
                     fifo.rollback.eq(deframer.rollback), deframer.loaded.eq(all_loaded)]
        rx = fifo.r         # request records: command (or ERROR_RECORD), tag, payload
        tx = framer.i       # reply payload bytes (the framer adds header, length and CRC)

        # ---- the cores, their payload adapters and the self-test (hw/payload.py) -----------------
        if enc is not None:
            m.submodules.encoder = enc
            m.submodules.e_words = e_words = WordsFromBytes(A, D)     # E request -> input words
            m.submodules.e_bytes = e_bytes = BytesFromBits(B)         # code bits -> E reply
        if dec is not None:
            m.submodules.decoder = dec
            m.submodules.d_bits = d_bits = BitsFromBytes(B)           # D request -> code bits
            m.submodules.d_bytes = d_bytes = BytesFromWords(A, D)     # output words -> D reply
        m.submodules.selftest = test = SelfTest(self._model, self._selftest, encoder=enc is not None,
                                                decoder=dec is not None,
                                                block=getattr(platform, "family", None) == "iCE40")
        testing = Signal()      # the self-test has the cores' streams (state T_RUN)
        k = Signal(range(1, N + 1))      # K of the D request being answered
        k_pending = Signal()             # ... not yet taken by the decoder
        if enc is not None:
            with m.If(testing):
                m.d.comb += [*_feed(test.enc_i, enc.i), *_feed(enc.o, test.enc_o)]
            with m.Else():
                m.d.comb += [*_feed(e_words.o, enc.i), *_feed(enc.o, e_bytes.i)]
        if dec is not None:
            with m.If(testing):
                m.d.comb += [*_feed(test.dec_k, dec.k), *_feed(test.dec_i, dec.i), *_feed(dec.o, test.dec_o)]
            with m.Else():
                m.d.comb += [dec.k.payload.eq(k), dec.k.valid.eq(k_pending),
                             *_feed(d_bits.o, dec.i), *_feed(dec.o, d_bytes.i)]
                with m.If(dec.k.ready):
                    m.d.sync += k_pending.eq(0)

        # ---- registers of the command logic ---------------------------------------------------------
        reply = Signal()                # the running self-test was asked for by a T request
        idx = Signal(range(protocol.INFO_PAYLOAD))
        tag = Signal(8)                 # of the request being answered
        command = Signal(8)             # its command (an error record's: what the request said)
        status = Signal(Status)
        weights_ok = Signal()           # the last W's CRC matched
        if loadable:
            m.d.comb += all_loaded.eq(Cat(c.loaded for c in loadable).all() & weights_ok)
        flags_byte = Signal(8)
        m.d.comb += flags_byte.eq((InfoFlag.ENCODER if enc is not None else 0)
                                  | (InfoFlag.DECODER if dec is not None else 0)
                                  | (InfoFlag.NEEDS_LOAD if loadable else 0)
                                  | Mux(all_loaded, InfoFlag.LOADED, 0) | InfoFlag.TWO_IN_FLIGHT
                                  | (InfoFlag.FLASH_BOOT if self._flash_boot else 0))
        info = [*bytes.fromhex(cfg.config_hash), 0, self._lanes, protocol.VERSION]
        assert len(info) == protocol.INFO_PAYLOAD
        info_rom = Array(Const(b, 8) for b in info)
        prefix_rom = Array(Const(p, range(B + 1)) for p in cfg.network.code_offsets)

        m.d.comb += [self.led_pass.eq(test.tested & (test.flags == 0)),
                     self.led_fail.eq((test.tested & (test.flags != 0)) | (boot_failed & ~all_loaded))]

        def send_header(cmd, st, length, then):
            """Hand the reply's header (the request's tag) to the framer, then go to ``then``;
            during a flash boot nobody asked, so nothing is sent (``then`` must not send a
            payload then: only the boot's ``W`` and error records arrive while booting)."""
            with m.If(booting):
                m.next = then
            with m.Else():
                m.d.comb += [framer.hdr.valid.eq(1), framer.hdr.payload.tag.eq(tag),
                             framer.hdr.payload.command.eq(cmd), framer.hdr.payload.status.eq(st),
                             framer.hdr.payload.length.eq(length)]
                with m.If(framer.hdr.ready):
                    m.next = then

        @contextmanager
        def take(into):
            """Take the record's next byte into the register ``into``; the body runs in the cycle
            it arrives."""
            m.d.comb += rx.ready.eq(1)
            with m.If(rx.valid):
                m.d.sync += into.eq(rx.payload)
                yield

        if loadable:     # W: the request's payload into the load streams, core by core
            lbits = loadable[0].schedule.load_word_bits
            sizes = [c.schedule.weight_depth + c.schedule.param_depth for c in loadable]
            m.submodules.image = image = ImageStreamer((lbits + 7) // 8, sizes)
            for n, c in enumerate(loadable):
                m.d.comb += [c.load.payload.eq(image.o.payload),
                             c.load.valid.eq(image.o.valid & (image.core == n))]
                with m.If(image.core == n):
                    m.d.comb += image.o.ready.eq(c.load.ready)

        with m.FSM(init="BOOT") as fsm:
            m.d.comb += self.busy.eq(~fsm.ongoing("IDLE") | booting)

            with m.State("BOOT"):
                m.d.sync += reply.eq(0)
                m.next = "IDLE" if loadable else "T_START"   # RAM weights: nothing to test yet

            # a record of the packet FIFO: command (or ERROR_RECORD), tag, the rest
            with m.State("IDLE"):
                with take(command):
                    m.next = "TAG"
            with m.State("TAG"):
                with take(tag):
                    with m.Switch(command):
                        if enc is not None:
                            with m.Case(Command.ENCODE):
                                m.next = "E_HDR"
                        if dec is not None:
                            with m.Case(Command.DECODE):
                                m.next = "D_K"
                        with m.Case(Command.SELFTEST):
                            m.d.sync += reply.eq(1)
                            m.next = "T_START"
                        with m.Case(Command.INFO):
                            m.d.sync += idx.eq(0)
                            m.next = "I_HDR"
                        if loadable:
                            with m.Case(Command.LOAD):
                                m.next = "W_START"
                        with m.Default():        # ERROR_RECORD: the command and status follow
                            m.next = "ERR_CMD"
            with m.State("ERR_CMD"):
                with take(command):
                    m.next = "ERR_STATUS"
            with m.State("ERR_STATUS"):
                with take(status):
                    m.next = "ERR_REPLY"
            with m.State("ERR_REPLY"):
                send_header(command, status, 0, "IDLE")

            with m.State("I_HDR"):
                send_header(Command.INFO, Status.OK, protocol.INFO_PAYLOAD, "I_SEND")
            with m.State("I_SEND"):
                m.d.comb += [tx.payload.eq(Mux(idx == protocol.INFO_HASH_BYTES, flags_byte, info_rom[idx])),
                             tx.valid.eq(1)]
                with m.If(tx.ready):
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(idx == protocol.INFO_PAYLOAD - 1):
                        m.next = "IDLE"

            # ---- W: load the weight/parameter images of the RAM-stored cores -------------------------
            if loadable:
                with m.State("W_START"):
                    m.d.comb += image.start.eq(1)
                    m.d.sync += weights_ok.eq(0)
                    m.next = "W_STREAM"
                with m.State("W_STREAM"):
                    m.d.comb += _feed(rx, image.i)
                    with m.If(image.done):
                        m.next = "W_STATUS"
                with m.State("W_STATUS"):       # the receiver's verdict on the whole image
                    with take(status):
                        m.d.sync += weights_ok.eq(rx.payload == Status.OK)
                        m.next = "W_REPLY"
                with m.State("W_REPLY"):
                    with m.If(booting & (status == Status.OK)):   # from flash: test it, light the LEDs
                        m.d.sync += reply.eq(0)
                        m.next = "T_START"
                    with m.Else():
                        send_header(Command.LOAD, status, 0, "IDLE")

            # ---- E: one frame through the encoder; its code bits stream out as they come ------------
            if enc is not None:
                with m.State("E_HDR"):
                    m.d.comb += [e_words.start.eq(1), e_bytes.start.eq(1)]   # taken once, when idle
                    send_header(Command.ENCODE, Status.OK, protocol.reply_payload(cfg, Command.ENCODE), "E_RUN")
                with m.State("E_RUN"):
                    m.d.comb += [*_feed(rx, e_words.i), *_feed(e_bytes.o, tx)]
                    with m.If(e_bytes.done):
                        m.next = "IDLE"

            # ---- D: decode K stages (K checked by the receiver) ---------------------------------------
            if dec is not None:
                with m.State("D_K"):
                    with take(k):
                        m.next = "D_HDR"
                with m.State("D_HDR"):
                    m.d.comb += [d_bits.start.eq(1), d_bits.count.eq(prefix_rom[k]), d_bytes.start.eq(1)]
                    send_header(Command.DECODE, Status.OK, protocol.reply_payload(cfg, Command.DECODE), "D_RUN")
                    with m.If(framer.hdr.ready):
                        m.d.sync += k_pending.eq(1)
                with m.State("D_RUN"):
                    m.d.comb += [*_feed(rx, d_bits.i), *_feed(d_bytes.o, tx)]
                    with m.If(d_bytes.done):
                        m.next = "IDLE"

            # ---- T: self-test ----------------------------------------------------------------------------
            with m.State("T_START"):
                m.d.comb += test.start.eq(1)
                m.next = "T_RUN"
            with m.State("T_RUN"):
                m.d.comb += testing.eq(1)
                with m.If(~test.busy):
                    with m.If(reply):
                        m.next = "T_HDR"
                    with m.Else():
                        m.next = "IDLE"
            with m.State("T_HDR"):
                send_header(Command.SELFTEST, Status.OK, protocol.reply_payload(cfg, Command.SELFTEST), "T_FLAGS")
            with m.State("T_FLAGS"):
                m.d.comb += [tx.payload.eq(test.flags), tx.valid.eq(1)]
                with m.If(tx.ready):
                    m.next = "IDLE"
        if self._flash_boot:
            # the boot ends once the image has been read, the receiver has had its timeout to
            # finish (or refuse) it, and the command logic is idle again
            settle = Signal(range(self._timeout + 2))
            with m.If(reader.done & (settle != self._timeout + 1)):
                m.d.sync += settle.eq(settle + 1)
            with m.If(booting & (settle == self._timeout + 1) & fsm.ongoing("IDLE") & ~rx.valid):
                m.d.sync += [booting.eq(0), boot_failed.eq(~all_loaded)]
        return m


def _feed(src, dst) -> list:
    """Statements that hand stream ``src`` (an output's view) to stream ``dst`` (an input's):
    ``wiring.connect`` for a connection that holds only while some condition does."""
    return [dst.payload.eq(src.payload), dst.valid.eq(src.valid), src.ready.eq(dst.ready)]

class BoardTop(Elaboratable):
    """:class:`BoardCore` on a platform: ``uart`` 0, ``led`` 0 = self-test failed, ``led`` 1 =
    passed (iCEBreaker: red and green; ULX3S: LEDs 0 and 1), ``led`` 2 = busy where it exists.

    ``clk_freq`` is the system clock: the platform's default clock, or one its PLL makes
    (``hw.clocks.SystemClock``, checked at elaboration: ``hw.clocks.resolve_clock`` gives the
    frequencies there are)."""

    def __init__(self, model: IntModel, lanes: int = 1, *, clk_freq: float, baud: int = 1_000_000, **kwargs):
        self.clk_freq = clk_freq
        self.core = BoardCore(model, lanes, clk_freq=clk_freq, baud=baud, **kwargs)

    def elaborate(self, platform):
        m = Module()
        m.submodules.clock = SystemClock(self.clk_freq)
        m.submodules.core = core = self.core
        uart = platform.request("uart", 0, dir={"rx": "-", "tx": "-"})
        m.submodules.rx_buf = rx_buf = io.Buffer("i", uart.rx)
        m.submodules.tx_buf = tx_buf = io.Buffer("o", uart.tx)
        m.d.comb += [core.rx.eq(rx_buf.i), tx_buf.o.eq(core.tx)]
        if core.flash_boot:
            if getattr(platform, "family", None) != "iCE40":
                raise ValueError("flash boot is built for iCE40 boards (an ECP5 reaches its "
                                 "configuration flash's clock only through USRMCLK, not wired here)")
            pins = ("cs", "clk", "copi", "cipo", "wp", "hold")
            spi = platform.request("spi_flash_1x", 0, dir={n: "-" for n in pins})
            bufs = {n: io.Buffer("i" if n == "cipo" else "o", getattr(spi, n)) for n in pins}
            for n, buf in bufs.items():
                m.submodules[f"flash_{n}_buf"] = buf
            # cs, wp and hold are active low on the pins (the resource inverts them): select the
            # chip while cs_n is low, never write-protect or hold it
            m.d.comb += [bufs["cs"].o.eq(~core.flash.cs_n), bufs["clk"].o.eq(core.flash.sck),
                         bufs["copi"].o.eq(core.flash.copi), core.flash.cipo.eq(bufs["cipo"].i),
                         bufs["wp"].o.eq(0), bufs["hold"].o.eq(0)]
        for n, sig in enumerate((core.led_fail, core.led_pass, core.busy)):
            try:
                led = platform.request("led", n, dir="-")
            except ResourceError:  # fewer LEDs on this board
                break
            m.submodules[f"led{n}_buf"] = buf = io.Buffer("o", led)
            m.d.comb += buf.o.eq(sig)
        return m
