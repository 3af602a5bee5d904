"""PyTorch reference of the cascaded residual autoencoders (patent FIG. 2-4, Eq. 1-3).

The float forward pass computes what ``model/golden.py`` computes in integers, layer for layer:

* ``BinaryLinear``: y = alpha * (sign(W) x) + b with one positive scale per output; sign() has a
  straight-through gradient (Courbariaux et al. 2016, BinaryConnect).  alpha_i = |a_i|, a trained
  parameter of its own (``TrainOptions.scale="learned"``, the default; as in XNOR-Net++, Bulat &
  Tzimiropoulos 2019), or tied to the latent weights, alpha_i = mean_j |W_ij| (XNOR-Net,
  Rastegari et al. 2016; ``scale="mean"``, the rule of models made before).  Either way the
  trained model stores alpha, and inference and export read it there.  ``binary=False`` keeps W
  as is.
* ``Stage``: encoder ``in`` (hardtanh), ``res`` layers h <- h + hardtanh(W h + b) (Eq. 1/2),
  code layer c = sign(W h + b) in {-1, +1} (Eq. 3, straight-through gradient); decoder mirrors it
  and ends in a linear ``out`` layer.
* ``Cascade``: stage n+1 codes the residual x - (y_1 + ... + y_n).
* Sub-band weight sharing (``NetworkConfig.subbands`` S > 1): a stage's networks run on the S
  sub-bands of each frame as S rows of width D/S (``NetworkConfig.to_bands``); codes and outputs
  are joined back to (B, bits) and (B, D), so nothing outside ``Stage`` sees the bands.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import CodecConfig

__all__ = ["BinaryLinear", "Stage", "Cascade", "sign_ste"]


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (x.abs() <= 1).to(g.dtype)


def sign_ste(x: torch.Tensor) -> torch.Tensor:
    """sign with sign(0) = +1 (as the golden model's ``p >= 0``) and a clipped identity gradient."""
    return _SignSTE.apply(x)


class BinaryLinear(nn.Module):
    """y = alpha * (sign(W) x) + b; ``alpha`` (fan_out,) holds the per-output scale.

    ``tied`` (set by training with ``scale="mean"``): alpha is computed as mean_j |W_ij| (so the
    gradient reaches W through it) instead of read from ``alpha``; :meth:`untie` copies it into
    ``alpha`` when training ends.  A state dict without ``alpha`` (model files made before it
    existed, all with the mean rule) loads with alpha = mean |W|: the same layer as before."""

    def __init__(self, fan_in: int, fan_out: int, binary: bool = True):
        super().__init__()
        self.binary = binary
        self.tied = False
        self.weight = nn.Parameter(torch.randn(fan_out, fan_in) / fan_in ** 0.5)
        self.bias = nn.Parameter(torch.zeros(fan_out))
        self.alpha = nn.Parameter(self.weight.detach().abs().mean(dim=1).clone())

    def scale(self) -> torch.Tensor:
        """Per-output scale alpha (fan_out,), positive."""
        return self.weight.abs().mean(dim=1) if self.tied else self.alpha.abs()

    def untie(self) -> None:
        """End the mean rule: store alpha = mean |W| and read it from ``alpha`` from now on."""
        if self.tied:
            with torch.no_grad():
                self.alpha.copy_(self.weight.abs().mean(dim=1))
            self.tied = False

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        if prefix + "weight" in state_dict and prefix + "alpha" not in state_dict:
            state_dict[prefix + "alpha"] = state_dict[prefix + "weight"].abs().mean(dim=1)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def effective_weight(self) -> torch.Tensor:
        if not self.binary:
            return self.weight
        w = self.weight
        # straight-through sign of the weights, scaled per output
        signs = w + (torch.where(w >= 0, 1.0, -1.0) - w).detach()
        return signs * self.scale()[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.effective_weight(), self.bias)


class Stage(nn.Module):
    """One autoencoder of the cascade."""

    def __init__(self, cfg: CodecConfig, index: int):
        super().__init__()
        shapes = cfg.layer_shapes(index)
        binary = cfg.network.binary
        self.enc = nn.ModuleList(BinaryLinear(i, o, binary) for _, i, o in shapes["encoder"])
        self.dec = nn.ModuleList(BinaryLinear(i, o, binary) for _, i, o in shapes["decoder"])
        with torch.no_grad():  # a new stage starts close to "add nothing" (error 0 dB, not worse)
            self.dec[-1].weight.mul_(0.1)
            self.dec[-1].alpha.mul_(0.1)
        self.kinds_enc = [k for k, _, _ in shapes["encoder"]]
        self.kinds_dec = [k for k, _, _ in shapes["decoder"]]
        self.bands = cfg.network

    @staticmethod
    def _run(layers, kinds, h):
        for layer, kind in zip(layers, kinds):
            z = layer(h)
            if kind == "in":
                h = F.hardtanh(z)
            elif kind == "res":
                h = h + F.hardtanh(z)
            elif kind == "code":
                h = sign_ste(z)
            else:
                h = z
        return h

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Frames (B, D) -> codes (B, bits) in {-1, +1}."""
        return self.bands.from_bands(self._run(self.enc, self.kinds_enc, self.bands.to_bands(x)))

    def code_preactivation(self, x: torch.Tensor) -> torch.Tensor:
        """Frames (B, D) -> the code layer's pre-sign value z (B, bits): ``encode`` is sign(z);
        ``|z|`` says how far each bit is from flipping."""
        h = self._run(self.enc[:-1], self.kinds_enc[:-1], self.bands.to_bands(x))
        return self.bands.from_bands(self.enc[-1](h))

    def decode(self, c: torch.Tensor) -> torch.Tensor:
        """Codes (B, bits) in {-1, +1} -> the stage's output frames (B, D)."""
        return self.bands.from_bands(self._run(self.dec, self.kinds_dec, self.bands.to_bands(c)))

    def forward(self, x):
        c = self.encode(x)
        return c, self.decode(c)


class Cascade(nn.Module):
    def __init__(self, cfg: CodecConfig):
        super().__init__()
        self.cfg = cfg
        self.stages = nn.ModuleList(Stage(cfg, n) for n in range(cfg.network.stages))

    def forward(self, x: torch.Tensor, stages: int | None = None):
        """Returns (codes, outputs): per-stage codes and decoder outputs y_n; the reconstruction
        with K stages is sum(outputs[:K])."""
        k = len(self.stages) if stages is None else stages
        r = x
        codes, outs = [], []
        for n in range(k):
            c, y = self.stages[n](r)
            codes.append(c)
            outs.append(y)
            r = r - y
        return codes, outs

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        codes, _ = self.forward(x)
        return codes

    @torch.no_grad()
    def decode(self, codes: list[torch.Tensor]) -> torch.Tensor:
        return sum(self.stages[n].decode(c) for n, c in enumerate(codes))
