"""The shared datapath of the encoder and decoder cores: sequencer, memories, MAC engine, post unit.

Block diagram (names as in :meth:`CascadeCore.elaborate`)::

    i ──> FrameBanks (2 banks) ───────────────┐ MAC port            ┌─> res port (frames, stage 0 encoder)
                                              ├──> a ─> MacEngine ──┤ shadow[P]
    acts (R|S, H0, H1) ── MAC port ───────────┘    ^ w              v
      ^   └── res port ───────────────────────> PostUnit <── params (mult, bias)
      |                                            |
      └──────────── write port <──────── value ────┴── bit/value ──> out_fifo ──> o
    weights (P bits/row) ── w ──> MacEngine           Sequencer: layer, g, j, stalls
    load ──> ImageLoader ──> weights, params          CodeSearch (encoder): beside the sequencer

The parts (:class:`FrameBanks`, :class:`ImageLoader`, :class:`Sequencer`, ``MacEngine``,
:class:`PostPipeline` with its ``PostUnit``, :class:`CodeSearch`) are components of their own;
:class:`CascadeCore` composes them in ``elaborate`` and owns only the memories they share (the
activations, the stores) and the output FIFO with its credit.  The Sequencer and the post
pipeline each decode the schedule's op table (``Schedule.ops``) for the layer they work on.

See ``hw/schedule.py`` for the memory layouts and the cycle model, ``docs/architecture.md`` for
the whole picture.
"""

from __future__ import annotations

import operator

from amaranth import Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import enum, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out
from amaranth.lib.memory import Memory

from model.golden import IntModel

from .mac import MacEngine
from .post import PostUnit
from .schedule import POST_LATENCY, POST_UNIT_LATENCY, PostMode, Schedule, search_drain
from .store import STORAGES, ParamStore, spram_misfit

__all__ = ["CascadeCore", "FrameBanks", "ImageLoader", "Sequencer", "PostPipeline", "CodeSearch", "Phase"]


class Phase(enum.Enum, shape=2):
    """What the encoder's current decoder run is for (the code search, ``CodeSearch``)."""
    FORWARD = 0     #: encoder layers, and a searched stage's baseline decoder run
    TRIAL = 1       #: a run with one code bit flipped: its error goes to the search
    FINAL = 2       #: the run with the kept code: it writes the residual


class FrameBanks(wiring.Component):
    """The core's input: frames (encoder) or code bits (decoder) from the ``i`` stream into two
    banks of one memory, so the next frame loads while one computes.

    ``full[b]`` is high while bank ``b`` holds a whole frame that the datapath has not released;
    a pulse on ``release[b]`` frees it.  The loader fills bank 0, then 1, then 0 ...; ``i`` is
    ready while the bank it fills is free.  Encoder: ``D`` signed A-bit words per frame.  Decoder:
    first ``k`` (the frame's stage count K, kept per bank as ``k_of[b]``), then ``sum(code_bits[:K])``
    bits (1 = +1), read by the datapath as +-1.

    Read ports (combinational address, data in the next cycle, as the memory's): ``mac_index``
    / ``mac_data`` (the MAC engine's operand) and, encoder only, ``res_index`` / ``res_data`` (the
    post unit's residual input), each at index ``*_index`` of bank ``bank``."""

    def __init__(self, side: str, act_bits: int, coefficients: int, code_offsets):
        self._enc = side == "encoder"
        self._A, self._D = int(act_bits), int(coefficients)
        self._offsets = tuple(int(o) for o in code_offsets)
        N = len(self._offsets) - 1
        A = self._A
        self._bank = self._D if self._enc else self._offsets[-1]
        sig = {"full": Out(2), "release": In(2), "bank": In(1),
               "mac_index": In(range(2 * self._bank)), "mac_data": Out(signed(A))}
        if self._enc:
            sig.update(i=In(stream.Signature(signed(A))), res_index=In(range(2 * self._bank)),
                       res_data=Out(signed(A)))
        else:
            sig.update(k=In(stream.Signature(range(1, N + 1))), i=In(stream.Signature(1)),
                       k_of_bank=Out(range(N + 1)))
        super().__init__(sig)

    @property
    def bank_depth(self) -> int:
        """Words (encoder) or bits (decoder) per bank."""
        return self._bank

    def elaborate(self, platform):
        m = Module()
        in_bank, D, A = self._bank, self._D, self._A
        if self._enc:
            m.submodules.frames = xmem = Memory(shape=signed(A), depth=2 * in_bank, init=[])
            x_wr, x_mac, x_res = xmem.write_port(), xmem.read_port(), xmem.read_port()
        else:
            m.submodules.codes = xmem = Memory(shape=unsigned(1), depth=2 * in_bank, init=[])
            x_wr, x_mac = xmem.write_port(), xmem.read_port()
        full, set_full = self.full, Signal(2)
        ld_bank = Signal()
        ld_cnt = Signal(range(max(in_bank, 2)))
        m.d.sync += full.eq((full | set_full) & ~self.release)
        m.d.comb += x_wr.addr.eq(Mux(ld_bank, in_bank, 0) + ld_cnt)
        m.d.comb += [x_wr.data.eq(self.i.payload), x_wr.en.eq(self.i.valid & self.i.ready)]
        last = Signal.like(ld_cnt)             # index of the frame's last input word or bit
        base = Mux(self.bank, in_bank, 0)       # where the running frame's bank starts
        m.d.comb += x_mac.addr.eq(base + self.mac_index)
        with m.If(self.i.valid & self.i.ready):
            with m.If(ld_cnt == last):          # the frame is in: the other bank is next
                m.d.sync += [ld_cnt.eq(0), ld_bank.eq(~ld_bank)]
                m.d.comb += set_full.eq(Mux(ld_bank, 0b10, 0b01))
            with m.Else():
                m.d.sync += ld_cnt.eq(ld_cnt + 1)
        if self._enc:
            m.d.comb += [last.eq(D - 1), self.i.ready.eq(~full.bit_select(ld_bank, 1)),
                         x_res.addr.eq(base + self.res_index),
                         self.mac_data.eq(x_mac.data), self.res_data.eq(x_res.data)]
        else:
            N = len(self._offsets) - 1
            kbank = [Signal(range(N + 1), name=f"k_bank{b}") for b in range(2)]
            ld_state = Signal()                 # 0: wait for k, 1: code bits
            nbits = Signal.like(ld_cnt)         # code bits of a frame with K = k.payload, minus 1
            with m.Switch(self.k.payload):
                for k in range(1, N + 1):
                    with m.Case(k):
                        m.d.comb += nbits.eq(self._offsets[k] - 1)
            m.d.comb += [self.k.ready.eq(~ld_state & ~full.bit_select(ld_bank, 1)),
                         self.i.ready.eq(ld_state)]
            with m.If(self.k.valid & self.k.ready):
                m.d.sync += [ld_state.eq(1), last.eq(nbits), ld_cnt.eq(0)]
                with m.If(ld_bank):
                    m.d.sync += kbank[1].eq(self.k.payload)
                with m.Else():
                    m.d.sync += kbank[0].eq(self.k.payload)
            with m.If(self.i.valid & self.i.ready & (ld_cnt == last)):
                m.d.sync += ld_state.eq(0)
            m.d.comb += [self.mac_data.eq(Mux(x_mac.data, 1, -1)),
                         self.k_of_bank.eq(Mux(self.bank, kbank[1], kbank[0]))]
        return m


class ImageLoader(wiring.Component):
    """Writes a RAM-stored core's load image into its weight and parameter stores.

    ``load`` carries ``weight_rows`` words (their low ``weight_bits`` go to the weight store at
    addresses 0, 1, ...), then ``param_rows`` words (their low ``param_bits`` to the parameter
    store), one word per cycle while ``idle`` is high.  ``loaded`` rises after the last word and
    falls with the first word of a reload (the pointer wraps to 0 after the last)."""

    def __init__(self, weight_rows: int, weight_bits: int, param_rows: int, param_bits: int, word_bits: int):
        self._nw, self._np = int(weight_rows), int(param_rows)
        super().__init__({
            "load": In(stream.Signature(word_bits)), "idle": In(1), "loaded": Out(1),
            "w_addr": Out(range(max(self._nw, 2))), "w_data": Out(weight_bits), "w_en": Out(1),
            "p_addr": Out(range(max(self._np, 2))), "p_data": Out(param_bits), "p_en": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        n_w, n_p = self._nw, self._np
        ptr = Signal(range(n_w + n_p))
        in_params = Signal()                     # the pointer is in the parameter part
        m.d.comb += [
            self.load.ready.eq(self.idle),
            in_params.eq(ptr >= n_w),
            self.w_addr.eq(ptr), self.w_data.eq(self.load.payload),
            self.p_addr.eq(ptr - n_w), self.p_data.eq(self.load.payload),
        ]
        with m.If(self.load.valid & self.load.ready):
            m.d.comb += [self.w_en.eq(~in_params), self.p_en.eq(in_params)]
            with m.If(ptr == n_w + n_p - 1):
                m.d.sync += [ptr.eq(0), self.loaded.eq(1)]
            with m.Else():
                m.d.sync += [ptr.eq(ptr + 1), self.loaded.eq(0)]
        return m


class CodeSearch(wiring.Component):
    """The encoder's closed-loop code search (``cfg.search``; ``model.golden.search_code``) beside
    the sequencer.

    A searched stage's code layer records its bits and margins ``|sat_A(z)|`` (``rec_*``); the
    stage decoder then runs once (baseline, phase FORWARD) and once per trial with one bit flipped
    (TRIAL); a trial's out layer feeds ``sat_A(r - y)`` to the squared-error accumulator
    (``err_*``).  The sequencer pulses ``start`` when it has issued a run whose error the search
    judges and issues nothing while ``run`` is low.  States: RUN (the sequencer runs layers),
    DRAIN (``search_drain(P)`` cycles for the error), JUDGE (keep the flip if the error fell, else
    undo it), SELECT (scan the margins for the next bit in (margin, index) order), FLIP (flip it in
    the code and in the code region of the activations, ``code_*`` write, then ``restart``
    TRIAL), EMIT (send the kept code bits, ``emit`` / ``emit_bit``, then ``restart`` FINAL).
    ``restart`` asks the sequencer to run the stage's decoder again from its first layer in
    ``restart_phase``.  Cycle counts: ``Schedule.cycles_per_frame``.

    ``bits_m1`` and ``cands_m1`` are the current stage's code bits and candidates, minus one."""

    def __init__(self, lanes: int, act_bits: int, coefficients: int, max_code_bits: int, passes: int,
                 code_region: int, act_depth: int):
        self._P, self._A, self._D = int(lanes), int(act_bits), int(coefficients)
        self._Bm, self._passes = int(max_code_bits), int(passes)
        self._region = int(code_region)
        A, Bm = self._A, self._Bm
        super().__init__({
            "rec_valid": In(1), "rec_index": In(range(Bm)), "rec_bit": In(1), "rec_margin": In(unsigned(A)),
            "err_valid": In(1), "err_value": In(signed(A)),
            "start": In(1), "phase": In(Phase), "bits_m1": In(range(Bm)), "cands_m1": In(range(Bm)),
            "run": Out(1), "restart": Out(1), "restart_phase": Out(Phase),
            "code_we": Out(1), "code_addr": Out(range(act_depth)), "code_data": Out(signed(A)),
            "emit": Out(1), "emit_bit": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        A, Bm, D, passes = self._A, self._Bm, self._D, self._passes
        drain = search_drain(self._P)
        m.submodules.margins = mmem = Memory(shape=unsigned(A), depth=Bm, init=[])
        mg_wr, mg_rd = mmem.write_port(), mmem.read_port()
        cbits = Signal(Bm)                    # the stage's code (1 = +1)
        flip_idx = Signal(range(Bm))          # the bit of the current trial
        cnt = Signal(range(max(drain, Bm + 1)))
        cand = Signal(range(Bm))
        pass_n = Signal(range(passes))
        err_bits = 2 * A + (D - 1).bit_length()
        err, best_err = Signal(err_bits), Signal(err_bits)
        sq, sq_valid = Signal(2 * A), Signal()
        sel_first, sel_have = Signal(), Signal()
        prev_m, sel_m = Signal(unsigned(A)), Signal(unsigned(A))
        prev_i, sel_i = Signal(range(Bm)), Signal(range(Bm))

        # record the code layer's bits and margins
        m.d.comb += [mg_wr.addr.eq(self.rec_index), mg_wr.data.eq(self.rec_margin), mg_wr.en.eq(self.rec_valid)]
        with m.If(self.rec_valid):
            m.d.sync += cbits.bit_select(self.rec_index, 1).eq(self.rec_bit)
        # squared-error accumulator (a trial's out layer: value = sat_A(r - y))
        m.d.sync += [sq_valid.eq(self.err_valid), sq.eq(self.err_value * self.err_value)]
        with m.If(sq_valid):
            m.d.sync += err.eq(err + sq)

        def restart(ph):
            m.d.comb += [self.restart.eq(1), self.restart_phase.eq(ph)]
            m.next = "RUN"

        def flip(idx):           # cbits[idx] and C[idx] (as +-1, the decoder's input format)
            bit = cbits.bit_select(idx, 1)
            m.d.sync += bit.eq(~bit)
            m.d.comb += [self.code_we.eq(1), self.code_addr.eq(self._region + idx),
                         self.code_data.eq(Mux(bit, -1, 1))]

        sel_idx = Signal(range(Bm + 1))       # index whose margin mg_rd.data holds
        sel_ok = Signal()                     # it comes after the previous pick in the order
        m.d.comb += [
            mg_rd.addr.eq(cnt), sel_idx.eq(cnt - 1),
            sel_ok.eq(sel_first | (mg_rd.data > prev_m) | ((mg_rd.data == prev_m) & (sel_idx > prev_i))),
            self.emit_bit.eq(cbits.bit_select(cnt, 1)),
        ]
        with m.FSM(init="RUN") as fsm:
            m.d.comb += self.run.eq(fsm.ongoing("RUN"))
            with m.State("RUN"):
                with m.If(self.start):
                    m.next = "DRAIN"
            with m.State("DRAIN"):
                m.d.sync += cnt.eq(cnt + 1)
                with m.If(cnt == drain - 1):
                    m.d.sync += cnt.eq(0)
                    m.next = "JUDGE"
            with m.State("JUDGE"):
                m.d.sync += [err.eq(0), sel_have.eq(0), cnt.eq(0)]
                m.next = "SELECT"
                with m.If(self.phase == Phase.FORWARD):       # the baseline run
                    m.d.sync += [best_err.eq(err), cand.eq(0), pass_n.eq(0), sel_first.eq(1)]
                with m.Else():
                    with m.If(err < best_err):
                        m.d.sync += best_err.eq(err)
                    with m.Else():                # undo the flip
                        flip(flip_idx)
                    with m.If(self.cands_m1 == cand):
                        m.d.sync += [cand.eq(0), sel_first.eq(1), pass_n.eq(pass_n + 1)]
                        with m.If(pass_n == passes - 1):
                            m.next = "EMIT"
                    with m.Else():
                        m.d.sync += cand.eq(cand + 1)
            with m.State("SELECT"):
                m.d.sync += cnt.eq(cnt + 1)
                with m.If((cnt != 0) & sel_ok & (~sel_have | (mg_rd.data < sel_m))):
                    m.d.sync += [sel_have.eq(1), sel_m.eq(mg_rd.data), sel_i.eq(sel_idx)]
                with m.If(cnt == self.bits_m1 + 1):
                    m.d.sync += cnt.eq(0)
                    m.next = "FLIP"
            with m.State("FLIP"):
                m.d.sync += [flip_idx.eq(sel_i), prev_m.eq(sel_m), prev_i.eq(sel_i), sel_first.eq(0)]
                flip(sel_i)
                restart(Phase.TRIAL)
            with m.State("EMIT"):
                m.d.comb += self.emit.eq(1)
                m.d.sync += cnt.eq(cnt + 1)
                with m.If(cnt == self.bits_m1):
                    m.d.sync += cnt.eq(0)
                    restart(Phase.FINAL)
        return m


class Sequencer(wiring.Component):
    """The issue stage: walks the running frame's ops (``Schedule.ops``: layer, group ``g``,
    fan-in index ``j``), one MAC issue per cycle, and switches the input banks between frames.

    Per op it decodes the schedule's table (fan-in, groups, source, dependency, stage; for a
    searched stage where its decoder starts).  An issue reads weight row ``w_addr`` and operand
    ``src_index`` (of the activations, or of the running input bank with ``src_x``) in the same
    cycle; it stalls while the op reads outputs of the layer before that the post pipeline has not
    written yet (``wr_layer``/``wr_idx``, :class:`PostPipeline`), and, with ``short_groups``,
    until ``P`` cycles have passed since the previous group's shadow load.

    A frame starts when its input bank is ``full``, the output FIFO has room for its whole output
    (``credit_ok``) and the stores hold an image (``loaded``); ``start_frame`` pulses then, and
    ``release`` frees the bank after its last issue.  The code search (encoder) holds the issue
    while ``search_run`` is low, learns from ``search_start`` that a trial run is out, and on
    ``restart`` sends the sequencer back to the stage decoder's first layer in ``restart_phase``.

    Latency: the ``mac_*``, ``src_x`` and ``tag_*`` outputs are registered, one cycle after the
    issue, aligned with the memories' read data (``tag_*``: the issue's layer, first output
    index ``g * P``, whether its stage is the frame's last, whether it is a search trial)."""

    def __init__(self, schedule: Schedule, side: str, in_bank: int):
        self._sc, self._enc = schedule, side == "encoder"
        sc = schedule
        P, N, nL = sc.lanes, sc.N, len(sc.ops)
        G = max(op.groups for op in sc.ops)
        Bm = max(sc.cfg.network.code_bits)
        sig = {
            "full": In(2), "credit_ok": In(1), "loaded": In(1),
            "search_run": In(1, init=1), "restart": In(1), "restart_phase": In(Phase),
            "wr_layer": In(range(nL + 1)), "wr_idx": In(range(G * P)),
            "running": Out(1), "can_start": Out(1), "start_frame": Out(1),
            "bank": Out(1), "release": Out(2),
            "w_addr": Out(range(max(sc.weight_depth, 2))),
            "src_index": Out(unsigned(max(Shape.cast(range(max(sc.act_depth, in_bank) + 1)).width,
                                          Shape.cast(range(sc.max_fan_in)).width) + 1)),
            "mac_valid": Out(1), "mac_first": Out(1), "mac_last": Out(1), "src_x": Out(1),
            "tag_layer": Out(range(nL)), "tag_gP": Out(range(G * P)), "tag_final": Out(1),
            "tag_trial": Out(1),
            "phase": Out(Phase), "search_start": Out(1),
            "bits_m1": Out(range(Bm)), "cands_m1": Out(range(Bm)),
        }
        if not self._enc:
            sig["k_of_bank"] = In(range(N + 1))
        self._in_bank = int(in_bank)
        super().__init__(sig)

    def elaborate(self, platform):
        m = Module()
        sc, enc = self._sc, self._enc
        cfg = sc.cfg
        P, N, ops = sc.lanes, sc.N, sc.ops
        nL = len(ops)
        G = max(op.groups for op in ops)
        layer, g, j = Signal(range(nL)), Signal(range(G)), Signal(range(sc.max_fan_in))
        gP, w_addr = Signal(range(G * P)), self.w_addr
        running, bank = self.running, self.bank

        # ---- the op table ------------------------------------------------------------------
        c_fan_in_m1, c_groups_m1 = Signal.like(j), Signal.like(g)
        c_src_x, c_dep, c_last_of_stage = Signal(), Signal(), Signal()
        c_src_base = Signal(range(max(sc.act_depth, self._in_bank) + 1))
        c_stage = Signal(range(N))
        c_searched, c_dec, c_out = Signal(), Signal(), Signal()
        c_dec_first, c_dec_wbase = Signal.like(layer), Signal.like(w_addr)
        with m.Switch(layer):
            for op in ops:
                with m.Case(op.index):
                    m.d.comb += [
                        c_fan_in_m1.eq(op.fan_in - 1), c_groups_m1.eq(op.groups - 1),
                        c_src_x.eq(op.src_x), c_src_base.eq(op.src_base), c_dep.eq(op.dep),
                        c_last_of_stage.eq(op.last_of_stage), c_stage.eq(op.stage),
                    ]
                    if op.searched:
                        first = ops[sc.stage_decoder_op[op.stage]]
                        m.d.comb += [
                            c_searched.eq(1), c_dec.eq(op.side == "decoder"), c_out.eq(op.kind == "out"),
                            self.bits_m1.eq(cfg.network.code_bits[op.stage] - 1),
                            self.cands_m1.eq(sc.search_candidates[op.stage] - 1),
                            c_dec_first.eq(first.index), c_dec_wbase.eq(first.w_base),
                        ]
        final_stage, frame_last = Signal(), Signal()
        m.d.comb += [
            final_stage.eq(c_stage == (N if enc else self.k_of_bank) - 1),
            frame_last.eq(c_last_of_stage & final_stage),
        ]

        phase = self.phase                        # FORWARD: encoder layers and the baseline run
        no_wait = Signal()                        # a run restarted after a drain: nothing to wait for
        c_trial = Signal()                        # this op's outputs go to the search, not to R
        m.d.comb += c_trial.eq(c_searched & c_dec & (phase != Phase.FINAL))

        # ---- issue -------------------------------------------------------------------------
        stall, issue, group_end = Signal(), Signal(), Signal()
        m.d.comb += group_end.eq(j == c_fan_in_m1)   # this issue is the group's last: its shadow load
        hold = 0
        if sc.short_groups:
            # a group shorter than P: the post unit still reads the previous group's shadow
            # registers; the last issue waits until P cycles have passed since the previous one
            since_load = Signal(range(P + 1), init=P)
            with m.If(issue & group_end):
                m.d.sync += since_load.eq(1)
            with m.Elif(since_load != P):
                m.d.sync += since_load.eq(since_load + 1)
            hold = group_end & (since_load != P)
        written = (self.wr_layer == layer - 1) & (self.wr_idx >= j)
        m.d.comb += [
            stall.eq((c_dep & (g == 0) & ~no_wait & ~written) | hold),
            issue.eq(running & self.search_run & ~stall),
            self.src_index.eq(c_src_base + j),
        ]
        next_ok = Signal()
        m.d.comb += [
            next_ok.eq(self.full.bit_select(~bank, 1) & self.credit_ok & self.loaded),
            self.can_start.eq(~running & self.full.bit_select(bank, 1) & self.credit_ok & self.loaded),
        ]
        with m.If(issue):
            m.d.sync += w_addr.eq(w_addr + 1)
            with m.If(group_end):
                m.d.sync += j.eq(0)
                with m.If(g == c_groups_m1):
                    m.d.sync += [g.eq(0), gP.eq(0), no_wait.eq(0)]
                    with m.If(frame_last):
                        # frame done: release its input bank, go on with the next one if ready
                        m.d.comb += self.release.eq(Mux(bank, 0b10, 0b01))
                        m.d.sync += [layer.eq(0), w_addr.eq(0), bank.eq(~bank), running.eq(next_ok)]
                        m.d.comb += self.start_frame.eq(next_ok)
                    with m.Elif(c_trial & c_out):
                        # a search run is issued: wait for its error (layer stays on the out op)
                        m.d.comb += self.search_start.eq(1)
                    with m.Else():
                        m.d.sync += layer.eq(layer + 1)
                        with m.If(c_out):
                            m.d.sync += phase.eq(Phase.FORWARD)
                with m.Else():
                    m.d.sync += [g.eq(g + 1), gP.eq(gP + P)]
            with m.Else():
                m.d.sync += j.eq(j + 1)
        with m.Elif(self.can_start):
            m.d.sync += running.eq(1)
            m.d.comb += self.start_frame.eq(1)
        with m.If(self.restart):      # run the stage's decoder again from its first layer
            m.d.sync += [phase.eq(self.restart_phase), layer.eq(c_dec_first), w_addr.eq(c_dec_wbase),
                         no_wait.eq(1)]

        # ---- output register: aligned with the memories' read data ------------------------
        m.d.sync += [
            self.mac_valid.eq(issue), self.mac_first.eq(j == 0), self.mac_last.eq(group_end),
            self.src_x.eq(c_src_x), self.tag_final.eq(final_stage), self.tag_layer.eq(layer),
            self.tag_gP.eq(gP), self.tag_trial.eq(c_trial),
        ]
        return m


class PostPipeline(wiring.Component):
    """The post pipeline p0..p5: turns each finished group of P sums into output values, one
    neuron per cycle, and says where each value goes.

    ``group_done`` (a group's last MAC issue, with its ``tag_*`` from the :class:`Sequencer`)
    starts it: for the next P cycles ``active`` shifts the MAC engine's shadow bank, so lane 0
    (``acc``) presents neuron ``gP + k`` in cycle k.  The stages::

        p0   decode the op table of the group's layer; read the neuron's parameters
             (``param_addr``) and residual (``res_addr``, or ``res_index`` of the input bank)
        p1   read data -> PostUnit (its own 4 stages: multiply, round/shift, bias, finish)
        p5   ``o_valid``: ``value`` / ``bit`` / ``margin`` with its index ``o_index``, activation
             address ``o_addr`` and where it goes: ``o_write`` (activations), ``o_fifo``
             (the output stream), ``o_err`` (a search trial's error), ``o_record`` (a searched
             code layer's bit and margin)

    Latency: :data:`~hw.schedule.POST_LATENCY` cycles from the shadow load to ``o_valid``.
    ``wr_layer``/``wr_idx`` hold the layer and index of the last output (the Sequencer's
    dependency check).  Number formats: as :class:`~hw.post.PostUnit`'s."""

    def __init__(self, schedule: Schedule, side: str):
        self._sc, self._enc = schedule, side == "encoder"
        sc = schedule
        fx = sc.cfg.fixed
        P, nL = sc.lanes, len(sc.ops)
        G = max(op.groups for op in sc.ops)
        A, sb, bb = fx.act_bits, sc.scale_bits, sc.bias_bits
        self._post = PostUnit(A, fx.act_frac, sb, sc.acc_bits, bb, sc.max_shift, margin=sc.searches)
        assert PostUnit.LATENCY == POST_UNIT_LATENCY == POST_LATENCY - 2   # p0, p1 + PostUnit
        sig = {
            "group_done": In(1), "tag_layer": In(range(nL)), "tag_gP": In(range(G * P)),
            "tag_final": In(1), "tag_trial": In(1),
            "acc": In(signed(sc.acc_bits)), "params": In(sb + bb), "res_act": In(signed(A)),
            "active": Out(1),
            "param_addr": Out(range(sc.param_depth + G * P + 1)),
            "res_addr": Out(range(sc.act_depth + G * P + 1)),
            "o_valid": Out(1), "value": Out(signed(A)), "bit": Out(1), "margin": Out(unsigned(A)),
            "o_index": Out(range(G * P)), "o_addr": Out(range(sc.act_depth)),
            "o_write": Out(1), "o_fifo": Out(1), "o_err": Out(1), "o_record": Out(1),
            "wr_layer": Out(range(nL + 1), init=nL), "wr_idx": Out(range(G * P)),
        }
        if self._enc:
            sig.update(res_index=Out(range(G * P)), res_frame=In(signed(A)))
        super().__init__(sig)

    def elaborate(self, platform):
        m = Module()
        sc, enc = self._sc, self._enc
        P, ops = sc.lanes, sc.ops
        A, sb = sc.cfg.fixed.act_bits, sc.scale_bits
        m.submodules.unit = post = self._post

        # ---- p0: lane post_k of the shadow bank (shifted down to lane 0), params, residual
        post_active = self.active
        post_k = Signal(range(P))
        q_layer, q_gP = Signal.like(self.tag_layer), Signal.like(self.tag_gP)
        q_final, q_trial = Signal(), Signal()
        with m.If(post_active):
            m.d.sync += post_k.eq(post_k + 1)
            with m.If(post_k == P - 1):
                m.d.sync += [post_active.eq(0), post_k.eq(0)]
        with m.If(self.group_done):
            m.d.sync += [post_active.eq(1), post_k.eq(0), q_layer.eq(self.tag_layer),
                         q_gP.eq(self.tag_gP), q_final.eq(self.tag_final), q_trial.eq(self.tag_trial)]

        q_p_base = Signal(range(sc.param_depth + 1))
        q_res_x = Signal()
        q_res_base = Signal(range(sc.act_depth + 1))
        q_fan_out = Signal(range(max(op.fan_out for op in ops) + 1))
        q_mode = Signal(PostMode)
        q_shift = Signal(range(sc.max_shift + 1))
        q_write = Signal()
        q_dst = Signal(range(sc.act_depth + 1))
        q_fifo = Signal()
        q_out, q_record = Signal(), Signal()      # out layer; searched code layer (bits, margins)
        with m.Switch(q_layer):
            for op in ops:
                with m.Case(op.index):
                    to_fifo = op.to_fifo if enc else (op.kind == "out")
                    m.d.comb += [
                        q_p_base.eq(op.p_base), q_res_x.eq(op.res_x), q_res_base.eq(op.res_base),
                        q_fan_out.eq(op.fan_out), q_mode.eq(op.mode), q_shift.eq(op.shift),
                        q_write.eq(op.write_act), q_dst.eq(op.dst_base), q_fifo.eq(to_fifo),
                        q_out.eq(op.kind == "out"), q_record.eq(op.searched and op.kind == "code"),
                    ]
        q_i = Signal.like(q_gP)
        m.d.comb += [
            q_i.eq(q_gP + post_k),
            self.param_addr.eq(q_p_base + q_i),
            self.res_addr.eq(q_res_base + q_i),
        ]
        if enc:
            m.d.comb += self.res_index.eq(q_i)

        # p0 -> p1 registers
        p1_valid, p1_res_x = Signal(), Signal()
        p1_acc = Signal.like(self.acc)
        p1_mode, p1_shift = Signal.like(q_mode), Signal.like(q_shift)
        p1_i = Signal.like(q_i)
        p1_write, p1_fifo = Signal(), Signal()
        p1_err, p1_record = Signal(), Signal()
        p1_dst = Signal.like(q_dst)
        p1_layer = Signal.like(q_layer)
        in_range, q_err = Signal(), Signal()
        m.d.comb += [in_range.eq(q_i < q_fan_out), q_err.eq(q_trial & q_out)]
        m.d.sync += [
            p1_valid.eq(post_active), p1_res_x.eq(q_res_x), p1_acc.eq(self.acc),
            p1_mode.eq(q_mode), p1_shift.eq(q_shift), p1_i.eq(q_i), p1_dst.eq(q_dst),
            p1_write.eq(q_write & ~q_err & in_range),
            p1_fifo.eq(q_fifo & in_range & (q_final if not enc else 1)),
            p1_err.eq(q_err & in_range), p1_record.eq(q_record & in_range),
            p1_layer.eq(q_layer),
        ]

        # ---- p1: read data -> PostUnit (input register, multiply, round/shift, finish)
        res_val = Signal(signed(A))
        m.d.comb += res_val.eq(Mux(p1_res_x, self.res_frame, self.res_act) if enc else self.res_act)
        m.d.comb += [
            post.valid.eq(p1_valid), post.acc.eq(p1_acc),
            post.mult.eq(self.params[:sb].as_signed()), post.bias.eq(self.params[sb:].as_signed()),
            post.res.eq(res_val), post.shift.eq(p1_shift), post.mode.eq(p1_mode),
        ]
        # the write side (index, write address, enables, layer) waits PostUnit.LATENCY cycles
        p1_waddr = Signal(range(sc.act_depth))
        m.d.comb += p1_waddr.eq(p1_dst + p1_i)
        wside = [p1_i, p1_waddr, p1_write, p1_fifo, p1_layer, p1_err, p1_record]
        for st in range(2, 2 + PostUnit.LATENCY):
            nxt = [Signal.like(v, name=f"p{st}_{v.name[3:]}") for v in wside]
            m.d.sync += [d.eq(v) for d, v in zip(nxt, wside)]
            wside = nxt
        pw_i, pw_waddr, pw_write, pw_fifo, pw_layer, pw_err, pw_record = wside

        # ---- p5: the registered value and where it goes (p2..p4 are inside PostUnit) ------
        m.d.comb += [
            self.o_valid.eq(post.o_valid), self.value.eq(post.value), self.bit.eq(post.bit),
            self.o_index.eq(pw_i), self.o_addr.eq(pw_waddr),
            self.o_write.eq(pw_write), self.o_fifo.eq(pw_fifo), self.o_err.eq(pw_err),
            self.o_record.eq(pw_record),
        ]
        if sc.searches:
            m.d.comb += self.margin.eq(post.margin)
        with m.If(post.o_valid):
            m.d.sync += [self.wr_layer.eq(pw_layer), self.wr_idx.eq(pw_i)]
        return m


class CascadeCore(wiring.Component):
    """Base of :class:`~hw.encoder.EncoderCore` and :class:`~hw.decoder.DecoderCore`.

    Subclasses name their ``SIDE`` and give their stream ports (:meth:`ports`); this class builds
    the datapath for that side.

    Parameters
    ----------
    model : IntModel
    lanes : int
        P, 1 <= P <= smallest fan-in of the schedule.
    storage : str
        ``"rom"`` (weights in the bitstream), ``"ram"`` or ``"spram"`` (loaded at run time
        through the ``load`` stream, below).

    ``storage`` says where the weights and the post-unit parameters live (``hw/store.py``):
    ``"rom"`` (initialized by the bitstream), ``"ram"`` or ``"spram"`` (loaded at run time).  A
    loadable core has two more ports:

    ``load``: In(stream.Signature(``schedule.load_word_bits``))
        The load image ``schedule.load_words()``: every weight row, then every parameter row, in
        address order.  Accepted one word per cycle while the datapath is idle; a word that
        arrives while a frame runs waits.  After the last word the pointer wraps to 0, so sending
        the image again reloads the core.
    ``loaded``: Out(1)
        High once a whole image is in; frames start only while it is high.  It drops with the
        first word of a reload.
    """

    def __init__(self, model: IntModel, lanes: int, storage: str = "rom"):
        if not isinstance(model, IntModel):
            raise TypeError(f"model must be an IntModel, not {type(model).__name__}")
        side, signature = self.SIDE, self.ports(model.config)
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {STORAGES}, not {storage!r}")
        self._sched = Schedule(model, operator.index(lanes), side)
        self._model, self._side, self._storage = model, side, storage
        if storage == "spram":
            sc = self._sched
            misfit = spram_misfit(sc.lanes, sc.scale_bits, sc.bias_bits)
            if misfit:
                raise ValueError(misfit)
        if storage != "rom":
            signature = dict(signature, load=In(stream.Signature(self._sched.load_word_bits)),
                             loaded=Out(1))
        super().__init__(signature)

    SIDE = None

    @classmethod
    def ports(cls, cfg) -> dict:
        """The core's stream ports for codec config ``cfg`` (name -> ``In``/``Out`` member)."""
        raise NotImplementedError

    @property
    def storage(self) -> str:
        return self._storage

    @property
    def schedule(self) -> Schedule:
        return self._sched

    @property
    def lanes(self) -> int:
        return self._sched.lanes

    @property
    def cycles_per_frame(self) -> int:
        """Designed cycles per frame in steady state (all stages; I/O overlapped)."""
        return self._sched.cycles_per_frame()

    @property
    def ideal_cycles_per_frame(self) -> float:
        """``cfg.binary_macs_per_frame(side) / P``."""
        return self._sched.ideal_cycles_per_frame()

    # ------------------------------------------------------------------------------------------
    def elaborate(self, platform):
        """Composes the parts: input banks, stores (and their loader), activation memory, the
        :class:`Sequencer`, MAC engine, :class:`PostPipeline`, code search (encoder), output FIFO
        with credit."""
        m = Module()
        sc, cfg = self._sched, self._model.config
        enc = self._side == "encoder"
        P, A, D, T = sc.lanes, cfg.fixed.act_bits, sc.D, sc.code_total
        sb, bb = sc.scale_bits, sc.bias_bits

        # ---- parts --------------------------------------------------------------------------
        rom = self._storage == "rom"
        m.submodules.weights = wmem = ParamStore(P, sc.weight_depth, self._storage,
                                                 sc.weight_rows() if rom else None)
        m.submodules.params = pmem = ParamStore(sb + bb, sc.param_depth, self._storage,
                                                sc.param_rows() if rom else None)
        m.submodules.acts = amem = Memory(shape=signed(A), depth=sc.act_depth, init=[])
        a_mac, a_res, a_wr = amem.read_port(), amem.read_port(), amem.write_port()
        m.submodules.banks = banks = FrameBanks(self._side, A, D, cfg.network.code_offsets)
        wiring.connect(m, wiring.flipped(self.i), banks.i)
        if not enc:
            wiring.connect(m, wiring.flipped(self.k), banks.k)
        per_frame_out = T if enc else D
        fifo_depth = 2 * per_frame_out
        m.submodules.out_fifo = fifo = SyncFIFOBuffered(width=1 if enc else A, depth=fifo_depth)
        m.submodules.seq = seq = Sequencer(sc, self._side, banks.bank_depth)
        m.submodules.mac = mac = MacEngine(P, A, sc.acc_bits)
        m.submodules.post = post = PostPipeline(sc, self._side)

        # ---- output fifo with credit: a frame starts only if its whole output fits --------
        used = Signal(range(fifo_depth + 1))
        m.d.comb += [
            seq.credit_ok.eq(used <= fifo_depth - per_frame_out),
            self.o.valid.eq(fifo.r_rdy),
            self.o.payload.eq(fifo.r_data),
            fifo.r_en.eq(self.o.ready),
        ]
        m.d.sync += used.eq(used + Mux(seq.start_frame, per_frame_out, 0) - (self.o.valid & self.o.ready))

        # ---- sequencer -> memories -> MAC engine --------------------------------------------
        m.d.comb += [
            seq.full.eq(banks.full), banks.release.eq(seq.release), banks.bank.eq(seq.bank),
            wmem.read_addr.eq(seq.w_addr), a_mac.addr.eq(seq.src_index), banks.mac_index.eq(seq.src_index),
            seq.wr_layer.eq(post.wr_layer), seq.wr_idx.eq(post.wr_idx),
            mac.valid.eq(seq.mac_valid), mac.first.eq(seq.mac_first), mac.last.eq(seq.mac_last),
            mac.a.eq(Mux(seq.src_x, banks.mac_data, a_mac.data)), mac.w.eq(wmem.read_data),
        ]
        if not enc:
            m.d.comb += seq.k_of_bank.eq(banks.k_of_bank)

        # ---- MAC engine -> post pipeline -> activations, output FIFO ------------------------
        m.d.comb += [
            post.group_done.eq(seq.mac_valid & seq.mac_last), post.tag_layer.eq(seq.tag_layer),
            post.tag_gP.eq(seq.tag_gP), post.tag_final.eq(seq.tag_final), post.tag_trial.eq(seq.tag_trial),
            mac.shift.eq(post.active), post.acc.eq(mac.shadow[0]),
            pmem.read_addr.eq(post.param_addr), post.params.eq(pmem.read_data),
            a_res.addr.eq(post.res_addr), post.res_act.eq(a_res.data),
        ]
        if enc:
            m.d.comb += [banks.res_index.eq(post.res_index), post.res_frame.eq(banks.res_data)]
        srch_we = Signal()                       # the search writes a flipped code value
        srch_waddr = Signal.like(a_wr.addr)
        srch_wdata = Signal.like(a_wr.data)
        srch_emit = Signal()                     # the search sends a code bit
        srch_bit = Signal()
        m.d.comb += [
            a_wr.addr.eq(Mux(srch_we, srch_waddr, post.o_addr)),
            a_wr.data.eq(Mux(srch_we, srch_wdata, post.value)),
            a_wr.en.eq(srch_we | (post.o_valid & post.o_write)),
            fifo.w_data.eq(Mux(srch_emit, srch_bit, post.bit) if enc else post.value),
            fifo.w_en.eq(srch_emit | (post.o_valid & post.o_fifo)),
        ]

        # ---- code search (encoder): CodeSearch beside the sequencer -----------------------
        if sc.searches:
            m.submodules.search = srch = CodeSearch(P, A, D, max(cfg.network.code_bits), sc.search_passes,
                                                    sc.code_region, sc.act_depth)
            m.d.comb += [
                srch.rec_valid.eq(post.o_valid & post.o_record), srch.rec_index.eq(post.o_index),
                srch.rec_bit.eq(post.bit), srch.rec_margin.eq(post.margin),
                srch.err_valid.eq(post.o_valid & post.o_err), srch.err_value.eq(post.value),
                srch.start.eq(seq.search_start), srch.phase.eq(seq.phase),
                srch.bits_m1.eq(seq.bits_m1), srch.cands_m1.eq(seq.cands_m1),
                seq.search_run.eq(srch.run),
                seq.restart.eq(srch.restart), seq.restart_phase.eq(srch.restart_phase),
                srch_we.eq(srch.code_we), srch_waddr.eq(srch.code_addr), srch_wdata.eq(srch.code_data),
                srch_emit.eq(srch.emit), srch_bit.eq(srch.emit_bit),
            ]
        else:
            m.d.comb += seq.search_run.eq(1)

        # ---- loader of a RAM-stored core: weight rows, then parameter rows ----------------
        if rom:
            m.d.comb += seq.loaded.eq(1)
        else:
            m.submodules.loader = loader = ImageLoader(sc.weight_depth, P, sc.param_depth, sb + bb,
                                                       sc.load_word_bits)
            wiring.connect(m, wiring.flipped(self.load), loader.load)
            m.d.comb += [
                # idle datapath: no frame issues reads, the post unit reads no parameters
                loader.idle.eq(~seq.running & ~post.active & ~seq.can_start),
                self.loaded.eq(loader.loaded), seq.loaded.eq(loader.loaded),
                wmem.write_addr.eq(loader.w_addr), wmem.write_data.eq(loader.w_data), wmem.write_en.eq(loader.w_en),
                pmem.write_addr.eq(loader.p_addr), pmem.write_data.eq(loader.p_data), pmem.write_en.eq(loader.p_en),
            ]
        return m
