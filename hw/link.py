"""The framed board link in gateware (``hw/protocol.py``, ``docs/board.md``): a receiver that checks
each request frame before the board reads it, the buffer it checks into, and the reply framer.

::

    UARTRx ──> RequestDeframer ──> PacketFIFO ──> board command FSM ──> ReplyFramer ──> UARTTx

:class:`RequestDeframer` writes one *record* per request into a :class:`PacketFIFO` and commits it
only when the request's length, K and CRC are right, so the command FSM never sees a byte of a
malformed, truncated or corrupted request (a rollback forgets it).  Records:

* ``cmd, tag, payload`` -- a stored request (``E``, ``D``, ``I``, ``T``), committed after its CRC;
* ``cmd, tag, payload, status`` -- a streamed request (``W``: its load image is larger than the
  buffer), committed byte by byte; a request cut short is padded with zeros to its length, and the
  final status byte says whether the CRC matched (only then may the FSM use what it loaded);
* ``0, tag, cmd, status`` -- an error: the FSM answers it with an error reply.
"""


import operator

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .protocol import REPLY_SOF, REQUEST_SOF, Command, Status, crc16_step

__all__ = ["PacketFIFO", "RequestDeframer", "ReplyFramer", "CommandRule", "ERROR_RECORD", "REPLY_HEADER_LAYOUT"]

#: First byte of an error record in the :class:`PacketFIFO` (no command is 0).
ERROR_RECORD = 0

REPLY_HEADER_LAYOUT = data.StructLayout({"tag": 8, "command": Command, "status": Status, "length": 16})


class PacketFIFO(wiring.Component):
    """A FIFO whose writes become readable only when committed.

    ``w``: writes (``ready`` low when full); ``commit`` (with or after a write): the writes so far,
    that one included, become readable; ``rollback``: forget every uncommitted write (it wins over
    a write or commit in the same cycle).  ``r``: committed entries, first word fall-through (a
    write committed in cycle t is readable in cycle t + 1).  ``depth`` is a power of two.
    """

    def __init__(self, width: int, depth: int):
        self._width, self._depth = operator.index(width), operator.index(depth)
        if self._depth < 2 or self._depth & (self._depth - 1):
            raise ValueError(f"depth must be a power of two >= 2, not {depth}")
        super().__init__({"w": In(stream.Signature(self._width)), "commit": In(1), "rollback": In(1),
                          "r": Out(stream.Signature(self._width))})

    @property
    def depth(self) -> int:
        return self._depth

    def elaborate(self, platform):
        m = Module()
        abits = self._depth.bit_length() - 1
        m.submodules.mem = mem = Memory(shape=self._width, depth=self._depth, init=[])
        wp = mem.write_port()
        rp = mem.read_port(transparent_for=(wp,))
        wptr, cptr, rptr = (Signal(abits + 1, name=n) for n in ("wptr", "cptr", "rptr"))
        wnext, rnext = Signal.like(wptr), Signal.like(rptr)
        m.d.comb += [
            # full: wptr - rptr == depth, i.e. same slot, other lap (no subtractor)
            self.w.ready.eq((wptr[:abits] != rptr[:abits]) | (wptr[abits] == rptr[abits])),
            wp.addr.eq(wptr[:abits]), wp.data.eq(self.w.payload), wp.en.eq(self.w.valid & self.w.ready),
            wnext.eq(wptr + (self.w.valid & self.w.ready)),
            self.r.valid.eq(cptr != rptr), self.r.payload.eq(rp.data),
            rnext.eq(rptr + (self.r.valid & self.r.ready)),
            rp.addr.eq(rnext[:abits]),
        ]
        m.d.sync += rptr.eq(rnext)
        with m.If(self.rollback):
            m.d.sync += wptr.eq(cptr)
        with m.Else():
            m.d.sync += wptr.eq(wnext)
            with m.If(self.commit):
                m.d.sync += cptr.eq(wnext)
        return m


class CommandRule:
    """What :class:`RequestDeframer` accepts for one command.

    ``lengths``: the payload lengths allowed; ``mode``: ``"store"`` (checked, then committed whole),
    ``"stream"`` (committed byte by byte, status byte last) or a :class:`Status` to answer instead
    (after the whole request has arrived with a good CRC); ``needs_loaded``: answer
    ``NOT_LOADED`` while the ``loaded`` input is low; ``first_byte``: ``{value: length}``, the
    payload's first byte must be one of these values and the length the one it names (``D``: K).
    """

    def __init__(self, lengths, mode="store", needs_loaded=False, first_byte=None):
        self.lengths = tuple(sorted({operator.index(n) for n in lengths}))
        if mode not in ("store", "stream") and not isinstance(mode, Status):
            raise ValueError(f"mode must be 'store', 'stream' or a Status, not {mode!r}")
        self.mode, self.needs_loaded = mode, bool(needs_loaded)
        self.first_byte = dict(first_byte or {})


class RequestDeframer(wiring.Component):
    """Request frames (``hw/protocol.py``) from the UART into :class:`PacketFIFO` records.

    Bytes outside a frame other than the start byte are ignored.  An unknown command, a length the
    command does not allow, a bad K or a full buffer make the deframer drop every byte until the
    line has been quiet for ``timeout`` cycles, then write an error record (so the rest of the bad
    request is never read as requests); a bad CRC or ``timeout`` quiet cycles inside a request
    write it at once.

    Ports: ``i`` bytes from the UART; ``o``, ``commit``, ``rollback`` to the FIFO; ``loaded``
    (in): the weights are loaded (for :attr:`CommandRule.needs_loaded`).
    """

    def __init__(self, rules: dict, timeout: int):
        self._rules = {Command(c): r for c, r in rules.items()}
        self._timeout = operator.index(timeout)
        if self._timeout < 1:
            raise ValueError(f"timeout must be at least one cycle, not {timeout}")
        super().__init__({"i": In(stream.Signature(8)), "o": Out(stream.Signature(8)), "commit": Out(1),
                          "rollback": Out(1), "loaded": In(1)})

    def elaborate(self, platform):
        m = Module()
        rules = self._rules
        longest = max(max(r.lengths) for r in rules.values())
        tag, cmd = Signal(8), Signal(8)
        # the length field: its bits up to the longest length allowed, and whether any bit above
        # them is set (such a request is refused whatever those bits are)
        lbits = longest.bit_length()
        len_lo, len_hi = Signal(lbits), Signal()
        length = Cat(len_lo, len_hi)
        cnt = Signal(range(longest + 1))
        crc, crc_lo = Signal(16), Signal(8)
        status = Signal(Status)
        refuse = Signal(Status)          # OK: run the request; else answer this after its CRC
        store, streamed = Signal(), Signal()
        first = Signal()                 # the next payload byte is the first
        record = Signal()                # DISCARD ends with an error record
        after_end = Signal()             # W_END goes on to DISCARD (no record)
        timer = Signal(range(self._timeout + 1))
        erri = Signal(2)

        byte = self.i.payload
        take = Signal()
        m.d.comb += take.eq(self.i.valid & self.i.ready)
        expired = Signal()
        m.d.comb += expired.eq(timer == self._timeout)
        line = Signal()                  # states in which the line's quiet time counts
        with m.If(take | ~line):
            m.d.sync += timer.eq(0)
        with m.Elif(~expired):
            m.d.sync += timer.eq(timer + 1)

        def crc_in():
            m.d.sync += crc.eq(crc16_step(crc, byte))

        def to_discard(code, with_record=True):
            m.d.sync += [status.eq(code), record.eq(with_record)]
            m.next = "DISCARD"

        def fail(code):
            """Drop the request being received with ``code``: a stored one is rolled back, a
            streamed one is padded and ends with ``code``; either way an error reply follows."""
            m.d.sync += status.eq(code)
            with m.If(streamed):
                m.d.sync += after_end.eq(code != Status.TIMEOUT)
                m.next = "PAD"
            with m.Else():
                m.d.comb += self.rollback.eq(store)
                m.next = "ERR"

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(take & (byte == REQUEST_SOF)):
                    m.d.sync += [crc.eq(0xFFFF), tag.eq(0), cmd.eq(0), store.eq(0), streamed.eq(0),
                                 refuse.eq(Status.OK), after_end.eq(0)]
                    m.next = "TAG"

            def length_byte(n):
                """Length byte ``n`` into ``len_lo`` (the bits it has of it) and ``len_hi``."""
                lo = max(0, min(8, lbits - 8 * n))
                sets = [len_lo[8 * n:8 * n + lo].eq(byte[:lo])] if lo else []
                if lo < 8:
                    hi = byte[lo:].any()
                    sets.append(len_hi.eq(hi if n == 0 else len_hi | hi))
                elif n == 0:
                    sets.append(len_hi.eq(0))
                return sets

            header = (("TAG", "CMD", [tag.eq(byte)]), ("CMD", "LEN0", [cmd.eq(byte)]),
                      ("LEN0", "LEN1", length_byte(0)), ("LEN1", "LEN2", length_byte(1)),
                      ("LEN2", "CHECK", length_byte(2)))
            for state, nxt, sets in header:
                with m.State(state):
                    m.d.comb += [self.i.ready.eq(1), line.eq(1)]
                    with m.If(take):
                        m.d.sync += sets
                        crc_in()
                        m.next = nxt
                    with m.Elif(expired):
                        m.d.sync += status.eq(Status.TIMEOUT)
                        m.next = "ERR"

            with m.State("CHECK"):
                m.d.sync += [cnt.eq(length), first.eq(1)]

                def refused(code):
                    m.d.sync += [refuse.eq(code), store.eq(0), streamed.eq(0)]
                    with m.If(length == 0):
                        m.next = "CRC0"
                    with m.Else():
                        m.next = "PAYLOAD"

                with m.Switch(cmd):
                    for c, r in rules.items():
                        with m.Case(c):
                            if r.first_byte:    # the length is checked against K's below
                                ok_len = (length != 0) & (length[max(r.lengths).bit_length():] == 0)
                            else:
                                ok_len = Const(0)
                                for n in r.lengths:
                                    ok_len = ok_len | (length == n)
                            with m.If(~ok_len):
                                to_discard(Status.BAD_LENGTH)
                            if r.needs_loaded:
                                with m.Elif(~self.loaded):
                                    refused(Status.NOT_LOADED)
                            with m.Else():
                                if isinstance(r.mode, Status):
                                    refused(r.mode)
                                else:
                                    m.d.sync += [store.eq(1), streamed.eq(r.mode == "stream")]
                                    m.next = "REC_CMD"
                    with m.Default():
                        to_discard(Status.BAD_COMMAND)

            # the record's head: command and tag (the UART byte that may arrive meanwhile waits)
            with m.State("REC_CMD"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(cmd)]
                with m.If(self.o.ready):
                    m.next = "REC_TAG"
                with m.Else():
                    m.d.comb += self.rollback.eq(1)
                    m.d.sync += store.eq(0)
                    to_discard(Status.OVERFLOW)
            with m.State("REC_TAG"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(tag), self.commit.eq(streamed)]
                with m.If(self.o.ready):
                    m.next = "PAYLOAD"
                    with m.If(length == 0):
                        m.next = "CRC0"
                with m.Else():
                    m.d.comb += self.rollback.eq(1)
                    m.d.sync += [store.eq(0), streamed.eq(0)]
                    to_discard(Status.OVERFLOW)

            with m.State("PAYLOAD"):
                m.d.comb += [self.i.ready.eq(1), line.eq(1), self.o.payload.eq(byte),
                             self.o.valid.eq(self.i.valid & store), self.commit.eq(streamed)]
                k_bad = Signal()
                for c, r in rules.items():
                    if r.first_byte and r.mode == "store":
                        want = Signal(len(length), name=f"want_{c.name.lower()}")
                        known = Signal(name=f"known_{c.name.lower()}")
                        with m.Switch(byte):
                            for v, n in r.first_byte.items():
                                with m.Case(v):
                                    m.d.comb += [want.eq(n), known.eq(1)]
                        with m.If(first & (cmd == c) & store & ~(known & (length == want))):
                            m.d.comb += k_bad.eq(1)
                with m.If(take):
                    crc_in()
                    m.d.sync += [cnt.eq(cnt - 1), first.eq(0)]
                    with m.If(store & ~self.o.ready):
                        with m.If(streamed):
                            m.d.sync += cnt.eq(cnt)   # pads from this byte on
                            fail(Status.OVERFLOW)
                        with m.Else():
                            m.d.comb += self.rollback.eq(1)
                            m.d.sync += store.eq(0)
                            to_discard(Status.OVERFLOW)
                    with m.Elif(k_bad):
                        m.d.comb += [self.rollback.eq(1), self.o.valid.eq(0)]
                        m.d.sync += store.eq(0)
                        to_discard(Status.BAD_K)
                    with m.Elif(cnt == 1):
                        m.next = "CRC0"
                with m.Elif(expired):
                    fail(Status.TIMEOUT)

            with m.State("CRC0"):
                m.d.comb += [self.i.ready.eq(1), line.eq(1)]
                with m.If(take):
                    m.d.sync += crc_lo.eq(byte)
                    m.next = "CRC1"
                with m.Elif(expired):
                    fail(Status.TIMEOUT)
            with m.State("CRC1"):
                m.d.comb += [self.i.ready.eq(1), line.eq(1)]
                good = Cat(crc_lo, byte) == crc
                with m.If(take):
                    with m.If(streamed):
                        m.d.sync += status.eq(Mux(good, Status.OK, Status.BAD_CRC))
                        m.next = "W_END"
                    with m.Elif(~good):
                        m.d.comb += self.rollback.eq(store)
                        m.d.sync += status.eq(Status.BAD_CRC)
                        m.next = "ERR"
                    with m.Elif(refuse != Status.OK):
                        m.d.sync += status.eq(refuse)
                        m.next = "ERR"
                    with m.Else():
                        m.d.comb += self.commit.eq(1)
                        m.next = "IDLE"
                with m.Elif(expired):
                    fail(Status.TIMEOUT)

            # a streamed request cut short: zeros up to its length, then its status
            with m.State("PAD"):
                m.d.comb += [self.o.valid.eq(cnt != 0), self.o.payload.eq(0), self.commit.eq(1)]
                with m.If(cnt == 0):
                    m.next = "W_END"
                with m.Elif(self.o.ready):
                    m.d.sync += cnt.eq(cnt - 1)
            with m.State("W_END"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(status), self.commit.eq(1)]
                with m.If(self.o.ready):
                    m.d.sync += [streamed.eq(0), store.eq(0)]
                    with m.If(after_end):
                        to_discard(status, with_record=False)
                    with m.Else():
                        m.next = "IDLE"

            with m.State("DISCARD"):
                m.d.comb += [self.i.ready.eq(1), line.eq(1)]
                with m.If(~take & expired):
                    m.next = "ERR"
                    with m.If(~record):
                        m.next = "IDLE"

            with m.State("ERR"):
                head = Array([Const(ERROR_RECORD, 8), tag, cmd, status])
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(head[erri])]
                with m.If(self.o.ready):
                    m.d.sync += erri.eq(erri + 1)
                    with m.If(erri == 3):
                        m.d.comb += self.commit.eq(1)
                        m.next = "IDLE"
        return m


class ReplyFramer(wiring.Component):
    """Reply frames (``hw/protocol.py``) around the command FSM's answers.

    ``hdr``: tag, command, status and payload length of the next reply (taken while no reply is
    being sent); ``i``: its payload bytes (exactly ``length`` of them, at most ``max_length``);
    ``o``: the frame's bytes to the UART.  The CRC is computed on the way through; the length
    bytes of the header are read from the payload counter (it counts down only after them).
    """

    def __init__(self, max_length: int = 0xFFFF):
        self._max = operator.index(max_length)
        super().__init__({"hdr": In(stream.Signature(REPLY_HEADER_LAYOUT)), "i": In(stream.Signature(8)),
                          "o": Out(stream.Signature(8))})

    def elaborate(self, platform):
        m = Module()
        h = Signal(REPLY_HEADER_LAYOUT)  # its length field stays unused: ``cnt`` holds it
        idx = Signal(range(6))
        cnt = Signal(range(self._max + 1))
        crc = Signal(16)
        length = Signal(16)
        m.d.comb += length.eq(cnt)
        head = Array([Const(REPLY_SOF, 8), h.tag, h.command, h.status, length[:8], length[8:]])
        counted = Signal()               # the byte on ``o`` goes into the CRC
        with m.If(self.o.valid & self.o.ready & counted):
            m.d.sync += crc.eq(crc16_step(crc, self.o.payload))
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.hdr.ready.eq(1)
                with m.If(self.hdr.valid):
                    m.d.sync += [h.eq(self.hdr.payload), idx.eq(0), crc.eq(0xFFFF),
                                 cnt.eq(self.hdr.payload.length)]
                    m.next = "HEAD"
            with m.State("HEAD"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(head[idx]), counted.eq(idx != 0)]
                with m.If(self.o.ready):
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(idx == 5):
                        m.next = "PAYLOAD"
                        with m.If(cnt == 0):
                            m.next = "CRC_LO"
            with m.State("PAYLOAD"):
                m.d.comb += [self.o.valid.eq(self.i.valid), self.o.payload.eq(self.i.payload),
                             self.i.ready.eq(self.o.ready), counted.eq(1)]
                with m.If(self.i.valid & self.o.ready):
                    m.d.sync += cnt.eq(cnt - 1)
                    with m.If(cnt == 1):
                        m.next = "CRC_LO"
            with m.State("CRC_LO"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(crc[:8])]
                with m.If(self.o.ready):
                    m.next = "CRC_HI"
            with m.State("CRC_HI"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(crc[8:])]
                with m.If(self.o.ready):
                    m.next = "IDLE"
        return m
