"""Fourier mixing (FNet, Lee-Thorp et al., 2021) in place of attention.

FNet replaces self-attention by the real part of a 2-D discrete Fourier
transform over the sequence and hidden dimensions (:func:`fnet_mixing`): no
parameters, O(L log L), every output mixing every input. That suits non-causal
(encoder) stacks only: the DFT over the sequence makes position ``t`` depend on
every position, the future included. :class:`FourierMixing` built with
``causal=False`` is that, with one change: the sequence is zero-padded to the
context length (and padding keys are zeroed) before the DFT, so that what a
position receives does not depend on how much padding its batch happened to need.

The decoder (:class:`FourierMixing`, the ``fourier`` kind) keeps FNet's
two ingredients but makes the sequence mixing causal::

    y = Re(DFT_hidden(h ⋆ x)),    (h ⋆ x)_t = Σ_{s ≤ t} h_(t-s) ⊙ x_s

a long convolution with a learned filter ``h`` (one tap per lag up to the
context, per channel), computed by FFT with zero padding to ``2L`` so that the
circular convolution equals the linear one. Why this choice:

- causality is structural, not a mask: ``h`` has taps at lags ``>= 0`` only, so
  ``y_t`` is a sum over ``s <= t`` whatever the weights. Masking the sequence
  DFT instead would no longer be a Fourier transform, and its weights
  ``exp(-2πi·ts/L)`` depend on ``L``, which changes at every decoded token;
- it keeps FNet's O(L log L) cost and its parameter-free hidden-dimension DFT;
- a causal mixing has no canonical parameter-free form, so the filter is
  learned: a position can weigh its recent past differently from the distant.

In floating point the FFT spreads round-off, so a future token can move earlier
outputs by about 1e-7 (float32) or 1e-16 (float64) relative: tested. The
transforms are orthonormal so that mixing keeps the residual stream's scale.
Decoding caches the layer's inputs; each step convolves the history again
(O(t log t) per step, small beside the feed-forward layers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from reprise.errors import RepriseError
from reprise.models.attention.full import require_causal
from reprise.models.cache import TensorCache

if TYPE_CHECKING:
    from reprise.models.config import ModelConfig


def _fft_ready(x: torch.Tensor) -> torch.Tensor:
    """``x`` in a precision the FFT supports: at least float32 (half precisions are not)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def fnet_mixing(x: torch.Tensor, length: int | None = None) -> torch.Tensor:
    """FNet's non-causal mixing of ``(..., T, D)``: the real part of the 2-D DFT over time and hidden.

    With ``length`` the sequence is zero-padded to that many positions first (the first ``T`` are returned).
    """
    t, d = x.shape[-2:]
    mixed = torch.fft.fft2(_fft_ready(x), s=(max(t, length or t), d), dim=(-2, -1), norm="ortho")
    return mixed.real[..., :t, :].to(x.dtype)


def causal_convolution(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """``y_t = Σ_{s <= t} taps[t - s] ⊙ x_s`` for ``x`` ``(..., T, D)`` and ``taps`` ``(>= T, D)``, by FFT."""
    t = x.shape[-2]
    spectrum = torch.fft.rfft(_fft_ready(x), n=2 * t, dim=-2) * torch.fft.rfft(_fft_ready(taps[:t]), n=2 * t, dim=0)
    return torch.fft.irfft(spectrum, n=2 * t, dim=-2)[..., :t, :].to(x.dtype)


class FourierMixing(nn.Module):
    """FNet for decoders: causal FFT convolution over time, then the real DFT over hidden;
    for encoders (``causal=False``): FNet's 2-D DFT, zero-padded to the context."""

    def __init__(self, config: ModelConfig, causal: bool = True):
        super().__init__()
        self.causal, self.context = causal, config.context
        if causal:
            self.taps = nn.Parameter(torch.randn(config.context, config.d_model) * 0.02)

    def forward(
        self, x: torch.Tensor, cache: TensorCache | None = None, key_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        if not self.causal:
            return fnet_mixing(x if key_mask is None else x.masked_fill(~key_mask[..., None], 0.0), self.context)
        history = x if cache is None else cache.append(x)
        mixed = causal_convolution(history, self.taps)[..., -x.shape[-2] :, :]
        return torch.fft.fft(_fft_ready(mixed), dim=-1, norm="ortho").real.to(x.dtype)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        raise RepriseError("fourier mixing has no attention weights to show: it mixes tokens by a convolution")

    def new_cache(self, batch: int, capacity: int, device, dtype) -> TensorCache:
        require_causal(self)
        return TensorCache((batch, capacity, self.taps.shape[1]), device, dtype)
