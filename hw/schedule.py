"""Layer schedule, memory images and cycle model of the cascade cores (pure Python).

:class:`Schedule` turns an :class:`~model.golden.IntModel` and a lane count P into everything the
Amaranth generators in ``hw/`` need as constants: the list of layer operations in the order the
sequencer runs them (``cfg.layer_shapes(stage)``, stage by stage), the weight and parameter
memory images, the activation memory regions, and the designed cycle count per frame.

Memory layouts (P = lanes, G = ceil(fan_out / P) groups of a layer, F = fan_in):

* **weights** (``P`` bits wide): layers in schedule order, each ``G * F`` rows; row
  ``w_base + g*F + j`` holds bit ``l`` = weight of output ``g*P + l`` for input ``j``
  (1 = +1; 0 for padding lanes past ``fan_out``).  The row address is simply the number of MAC
  cycles issued so far in the frame.
* **params** (``scale_bits + bias_bits`` wide): row ``p_base + g*P + l`` holds ``mult`` in the low
  ``scale_bits`` bits and ``bias`` above (two's complement; zeros for padding lanes).
* **acts** (signed ``act_bits``): encoder ``R`` = ``[0, D)`` (the residual r_n),
  ``H0 = [D, D+Hm)``, ``H1 = [D+Hm, D+2Hm)`` with ``Hm = max(hidden, max code_bits)``; decoder
  ``S`` = ``[0, D)`` (the running sum) then ``H0``, ``H1`` likewise.  Hidden layers ping-pong
  between H0 and H1; a code layer also writes its bits as +-1 for the decoder that follows.  An
  encoder with code search keeps a searched stage's code in ``C = [D+2Hm, D+2Hm+Bm)``
  (``Bm = max code_bits``), where the decoder runs of the search cannot overwrite it.
* **frames** (encoder, signed ``act_bits``, ``2*D``): double-buffered input frame, bank b at ``b*D``.
* **codes** (decoder, 1 bit, ``2*T`` with ``T = sum(code_bits)``): double-buffered code bits,
  bank b at ``b*T``, stage n at offset ``sum(code_bits[:n])``.

Code search (encoder, ``cfg.search.passes`` > 0; ``model.golden.search_code``): stages 1..N-1
(those whose decoder the encoder runs anyway) run, after the encoder layers, the stage decoder
once on the network's code (the baseline), then ``passes * C_n`` trials, each with one bit
flipped (``C_n = cfg.search_bits(n)``), then once more on the kept code to write the residual.  A
trial's out layer writes nothing; the post unit's ``sat_A(r - y)`` goes to a squared-error
accumulator.  Between runs the sequencer waits for the post unit to drain
(:func:`search_drain` cycles), judges the trial (1), picks the next bit by a scan of the stage's
margins (``B_n + 1``) and flips it (1); after the last trial it sends the stage's code to the
output (``B_n``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from amaranth.lib import enum

from model.config import ConfigError
from model.golden import IntModel

__all__ = ["Schedule", "LayerOp", "PostMode", "MODE_IN", "MODE_RES", "MODE_CODE", "MODE_OUT",
           "MODE_OUT_ADD", "MODE_OUT_SUB", "POST_LATENCY", "POST_UNIT_LATENCY", "search_drain"]

class PostMode(enum.IntEnum, shape=3):
    """What the post unit does after z = round_shift(acc * mult) + bias (``hw/post.py``); the
    layer table of a core stores one per layer op."""
    IN = 0          #: hardtanh (first layer)
    RES = 1         #: residual block: sat_A(res + hardtanh(z))
    CODE = 2        #: sign code layer: bit and +-1
    OUT = 3         #: output layer: sat_A(z)
    OUT_ADD = 4     #: decoder running sum: sat_A(res + sat_A(z))
    OUT_SUB = 5     #: encoder residual: sat_A(res - sat_A(z))


MODE_IN, MODE_RES, MODE_CODE, MODE_OUT, MODE_OUT_ADD, MODE_OUT_SUB = PostMode

#: Pipeline depth of :class:`~hw.post.PostUnit` (input register, multiply, round/shift, finish).
POST_UNIT_LATENCY = 4

#: Cycles from the shadow-register load of a group (end of cycle T) to the memory write of its
#: lane k (end of cycle T + POST_LATENCY + k): p0 select lane, address params and residual; p1
#: read data into the PostUnit input register; p2 multiply; p3 round/shift; p4 bias, clamp,
#: residual; p5 memory write of the registered value.
POST_LATENCY = 2 + POST_UNIT_LATENCY


def search_drain(lanes: int) -> int:
    """Cycles the sequencer waits after the last MAC issue of a search run before it judges it:
    the last lane's post write (``POST_LATENCY + P`` cycles later), then one cycle to square
    ``sat_A(r - y)`` and one to add it to the error (``hw/core.py``)."""
    return POST_LATENCY + lanes + 1


@dataclass(frozen=True)
class LayerOp:
    """One layer as the sequencer runs it (all fields are generator-time constants)."""
    index: int          # position in the frame schedule (also the weight/param order)
    stage: int
    side: str           # golden side the layer comes from: "encoder" or "decoder"
    layer: int          # index within that side of the stage
    kind: str
    fan_in: int
    fan_out: int
    groups: int
    w_base: int
    p_base: int
    src_x: bool         # MAC input from the frames/codes memory (else the acts memory)
    src_base: int
    dep: bool           # reads what the previous layer writes (sequencer waits per word)
    mode: int
    shift: int
    write_act: bool
    dst_base: int
    res_x: bool         # residual operand from the frames memory (else acts)
    res_base: int
    to_fifo: bool       # static: encoder code layer; decoder out layers decide at run time
    last_of_stage: bool
    searched: bool = False  # encoder with code search: this stage's decoder runs trials


class Schedule:
    """Layer schedule and memory images of one core.

    Parameters
    ----------
    model : IntModel
        The integer model (``model.golden``).
    lanes : int
        P, output neurons computed at once (``P >= 1``).  The post unit handles one lane per
        cycle, so the shadow loads of two groups are at least P cycles apart: a group of a layer
        whose fan-in is below P waits (:attr:`short_groups`), and a layer whose fan-out is not a
        multiple of P leaves lanes idle in its last group.
    side : str
        ``"encoder"`` (all encoders and decoders 1..N-1) or ``"decoder"`` (all decoders).
    """

    def __init__(self, model: IntModel, lanes: int, side: str):
        if not isinstance(model, IntModel):
            raise TypeError(f"model must be an IntModel, not {type(model).__name__}")
        if side not in ("encoder", "decoder"):
            raise ValueError(f"side must be 'encoder' or 'decoder', not {side!r}")
        model.check()
        if model.config.network.subbands > 1:
            # a ConfigError is a ValueError that the CLI reports as one line
            raise ConfigError("sub-band weight sharing (network.subbands > 1) has no hardware form yet")
        self.model, self.cfg, self.side = model, model.config, side
        self.lanes = P = int(lanes)
        if P < 1:
            raise ValueError(f"lanes must be at least 1, not {P}")
        cfg, net = self.cfg, self.cfg.network
        self.D = D = cfg.coefficients
        self.N = N = net.stages
        self.code_total = net.code_offsets[-1]
        self.code_offsets = list(net.code_offsets[:N])
        self.Hm = Hm = max(net.hidden, max(net.code_bits))
        H = [D, D + Hm]
        self.search_passes = cfg.search.passes if side == "encoder" else 0
        #: per stage: bits the search visits per pass (0: the stage is not searched)
        self.search_candidates = [cfg.search_bits(s) if self.search_passes else 0 for s in range(N)]
        #: the core searches (some stage has bits to visit)
        self.searches = any(self.search_candidates)
        self.code_region = D + 2 * Hm           # C: a searched stage's code (see module docstring)
        self.act_depth = D + 2 * Hm + (max(net.code_bits) if self.searches else 0)

        ops: list[LayerOp] = []
        w_base = p_base = 0
        self.stage_first_op = []
        core_layers = cfg.core_layers(side)          # the one definition of what this core runs
        for s in range(N):
            st = model.stages[s]
            layers = [(net, i, getattr(st, net)[i]) for st_, net, i in core_layers if st_ == s]
            self.stage_first_op.append(len(ops))
            searched = bool(self.search_candidates[s])
            cur = None  # region holding the current layer's input: None = stage input
            for n, (lside, li, L) in enumerate(layers):
                if cur is None:
                    if side == "encoder":
                        src_x, src_base, dep = s == 0, 0, s > 0
                    else:
                        src_x, src_base, dep = True, self.code_offsets[s], False
                else:
                    src_x, src_base, dep = False, cur, True
                res_x, res_base = src_x, src_base
                if L.kind == "out":
                    dst = 0
                    if side == "encoder":
                        mode, res_x, res_base = MODE_OUT_SUB, s == 0, 0
                    else:
                        mode, res_x, res_base = (MODE_OUT if s == 0 else MODE_OUT_ADD), False, 0
                    write_act = True
                else:
                    dst = H[1] if cur == H[0] else H[0]
                    if L.kind == "code" and searched:
                        dst = self.code_region
                    mode = {"in": MODE_IN, "res": MODE_RES, "code": MODE_CODE}[L.kind]
                    write_act = not (L.kind == "code" and s == N - 1)
                G = -(-L.fan_out // P)
                ops.append(LayerOp(
                    index=len(ops), stage=s, side=lside, layer=li, kind=L.kind, fan_in=L.fan_in,
                    fan_out=L.fan_out, groups=G, w_base=w_base, p_base=p_base, src_x=src_x,
                    src_base=src_base, dep=dep, mode=mode, shift=int(L.shift), write_act=write_act,
                    dst_base=dst, res_x=res_x, res_base=res_base,
                    to_fifo=(side == "encoder" and L.kind == "code" and not searched),
                    last_of_stage=(n == len(layers) - 1), searched=searched))
                w_base += G * L.fan_in
                p_base += G * P
                cur = dst
        self.ops = ops
        #: per stage: index of the first decoder op (where a search run starts), or None
        self.stage_decoder_op = [
            next((op.index for op in ops if op.stage == st and op.side == "decoder"), None)
            for st in range(N)]
        #: some layer's fan-in is below P: the sequencer spaces its groups' shadow loads P apart
        self.short_groups = P > min(op.fan_in for op in ops)
        self.weight_depth, self.param_depth = w_base, p_base
        fx = cfg.fixed
        self.max_fan_in = max(op.fan_in for op in ops)
        self.acc_bits = fx.acc_bits(self.max_fan_in)
        self.bias_bits = fx.bias_bits
        self.scale_bits = fx.scale_bits
        self.max_shift = max(op.shift for op in ops)

    # ---- memory images ----------------------------------------------------------------------
    def _layer(self, op: LayerOp):
        return getattr(self.model.stages[op.stage], op.side)[op.layer]

    def weight_rows(self) -> list[int]:
        """Weight memory image (see module docstring for the layout)."""
        P, rows = self.lanes, []
        for op in self.ops:
            w = np.zeros((op.groups * P, op.fan_in), dtype=object)
            w[:op.fan_out] = self._layer(op).weights.astype(object)
            w = w.reshape(op.groups, P, op.fan_in)
            place = np.array([1 << l for l in range(P)], dtype=object)
            rows.extend(int(v) for v in np.einsum("gpj,p->gj", w, place).reshape(-1))
        return rows

    def param_rows(self) -> list[int]:
        """Parameter memory image: ``mult | bias << scale_bits`` per (padded) output."""
        P, sb, bb, rows = self.lanes, self.scale_bits, self.bias_bits, []
        for op in self.ops:
            L = self._layer(op)
            for i in range(op.groups * P):
                if i < op.fan_out:
                    m, b = int(L.mult[i]), int(L.bias[i])
                    rows.append((m & ((1 << sb) - 1)) | ((b & ((1 << bb) - 1)) << sb))
                else:
                    rows.append(0)
        return rows

    @property
    def load_word_bits(self) -> int:
        """Width of a load word of a RAM-stored core: a weight row or a parameter row."""
        return max(self.lanes, self.scale_bits + self.bias_bits)

    def load_words(self) -> list[int]:
        """The load image of a RAM-stored core (``hw/core.py``): weight rows, then parameter rows."""
        return self.weight_rows() + self.param_rows()

    # ---- cycle model ------------------------------------------------------------------------
    def frame_ops(self, stages: int | None = None) -> list[LayerOp]:
        """The layers one frame runs (decoder: the first ``stages`` stages)."""
        if self.side == "encoder" or stages is None or stages == self.N:
            return self.ops
        if not 1 <= stages <= self.N:
            raise ValueError(f"stages must be 1..{self.N}")
        return self.ops[:self.stage_first_op[stages]]

    def cycles_per_frame(self, stages: int | None = None) -> int:
        """Designed cycles between frame starts with input ready and output drained.

        One MAC cycle per (group, input word), a group's last issue no earlier than P cycles after
        the previous group's (the post unit takes one lane per cycle), plus the stall cycles of the
        first group of a layer that reads what the previous layer is still writing: word j is issued no earlier than the
        cycle after the post unit wrote it (write of lane k of group g at ``Ts(g) + POST_LATENCY +
        k``, ``Ts(g)`` being the cycle after the group's last MAC issue).  With code search, a
        searched stage's decoder runs ``1 + passes * C_n + 1`` times with the waits of the module
        docstring between runs; a run after a wait starts without stalls.  Stream I/O is
        double-buffered and overlapped, so it does not appear here.
        """
        P, t, prev_w = self.lanes, 0, None
        # cycle after the last MAC issue of the latest group (its shadow load); in steady state
        # the previous frame's last group ends the cycle before this frame's first issue
        last = [0]

        def run(ops, t, prev_w, wait=True):
            for op in ops:
                ts = []
                for g in range(op.groups):
                    for j in range(op.fan_in):
                        if op.dep and g == 0 and wait:
                            t = max(t, prev_w[j] + 1)
                        t += 1
                    t = max(t, last[0] + P)      # the post unit is still on the previous group
                    last[0] = t
                    ts.append(t)
                wait = True
                prev_w = [ts[i // P] + POST_LATENCY + i % P for i in range(op.groups * P)]
            return t, prev_w

        ops = self.frame_ops(stages)
        for st in range(self.N):
            mine = [op for op in ops if op.stage == st]
            if not mine:
                break
            t, prev_w = run(mine, t, prev_w)
            if self.search_candidates[st]:
                dec = [op for op in mine if op.side == "decoder"]
                to_trial, to_final = self.search_gaps(st)
                for _ in range(self.search_passes * self.search_candidates[st]):
                    t, prev_w = run(dec, t + to_trial, prev_w, wait=False)
                t, prev_w = run(dec, t + to_final, prev_w, wait=False)
        return t

    def search_gaps(self, stage: int) -> tuple[int, int]:
        """Cycles without MAC issue between two runs of a searched stage's decoder: before a
        trial (drain, judge, margin scan of ``B_n + 1``, flip) and before the final run (drain,
        judge, ``B_n`` cycles sending the code)."""
        B, drain = self.cfg.network.code_bits[stage], search_drain(self.lanes)
        return drain + 1 + (B + 1) + 1, drain + 1 + B

    def search_gap_cycles(self) -> int:
        """All the :meth:`search_gaps` of one frame."""
        total = 0
        for st, C in enumerate(self.search_candidates):
            if C:
                to_trial, to_final = self.search_gaps(st)
                total += self.search_passes * C * to_trial + to_final
        return total

    def stage_decoder_runs(self, stage: int) -> int:
        """Runs of stage ``stage``'s decoder per frame: 1 in the decoder core; in the encoder
        core 0 for the last stage, else 1, or with search the baseline, ``passes * C_n`` trials
        and the final run."""
        if not any(op.stage == stage and op.side == "decoder" for op in self.ops):
            return 0                                  # (the encoder core: not decoder N)
        C = self.search_candidates[stage]
        return 2 + self.search_passes * C if C else 1

    def decoder_runs(self) -> int:
        """Stage decoder runs per frame (the encoder: N - 1 without search)."""
        return sum(self.stage_decoder_runs(s) for s in range(self.N))

    def binary_macs_per_frame(self) -> int:
        """MACs per frame, search runs included (``cfg.binary_macs_per_frame`` without search)."""
        return sum(op.fan_in * op.fan_out * (self.stage_decoder_runs(op.stage) if op.side == "decoder" else 1)
                   for op in self.ops)

    def ideal_cycles_per_frame(self) -> float:
        """MACs per frame / P (search runs included)."""
        return self.binary_macs_per_frame() / self.lanes
