"""Spectral damage: how the hidden states' spectrum along positions is spread (leakage) and distorted (harmonics).

Two measurements.
- ``position_leakage``: the un-rotated query/key pairs ``x_j(n)`` of real text should be position-free (all energy at
  the zero frequency) for attention to be the clean DFT of ``fope.analysis.spectrum``; earlier layers carry position
  into them. Per pair, with ``mean_n`` over a sequence and ``E`` over sequences:
  ``away_from_zero = 1 - E |mean_n x_j|^2 / E mean_n |x_j|^2`` (Parseval: the share of energy off the zero-frequency
  bin; content varies too, so this is an upper bound on the positional part), and
  ``position_locked``: the part that varies with position the same way in every sequence. With ``B`` sequences,
  ``mu_j(n)`` their mean and ``raw = mean_n |mu_j(n) - mean_n mu_j|^2 / E mean_n |x_j|^2``, sequence-specific
  content leaves ``1 / B`` of its share in ``raw``; ``position_locked = (B * raw - away_from_zero) / (B - 1)`` removes
  it (unbiased for content independent between sequences; clipped at 0; NaN for ``B = 1``).
- ``tone_probe``: a controlled input. Channel ``c_t`` of a constant operating point gets a cosine on DFT bin ``b_t``
  (one tone per channel, ``length`` positions), the per-token map runs, and the output's one-sided DFT energy
  ``E[bin, channel]`` is split: ``fundamental`` (share of the non-zero-bin energy at the input bins), ``distortion``
  (``1 - fundamental``: energy moved to frequencies that were not in the input: harmonics, intermodulation),
  ``harmonics[h]`` (share at bins ``h * b_t`` that are not input bins) and ``leakage`` (of the energy at input
  bins, the share each output channel holds outside its strongest input frequency, energy-weighted over channels: 0
  when every output channel carries one frequency, as under any channel-wise map; a linear layer that mixes
  channels raises it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ToneProbe", "block_stages", "position_leakage", "position_power_spectrum", "probe_bins", "tone_probe"]


def position_leakage(pairs: Tensor) -> tuple[Tensor, Tensor]:
    """``(away_from_zero, position_locked)`` per head and pair ``(H, P)`` of complex pairs ``(B, H, T, P)``."""
    sequences = pairs.shape[0]
    energy = (pairs.abs() ** 2).mean(dim=(0, 2))
    zero_bin = (pairs.mean(dim=2).abs() ** 2).mean(dim=0)
    profile = pairs.mean(dim=0)  # (H, T, P)
    raw = ((profile - profile.mean(dim=1, keepdim=True)).abs() ** 2).mean(dim=1)
    safe = energy.clamp_min(1e-300)
    away = torch.where(energy > 0, 1 - zero_bin / safe, 0.0)
    if sequences == 1:
        return away, torch.full_like(away, float("nan"))
    locked = ((sequences * raw / safe - away) / (sequences - 1)).clamp_min(0.0)
    return away, torch.where(energy > 0, locked, 0.0)


def position_power_spectrum(pairs: Tensor) -> tuple[Tensor, Tensor]:
    """``(frequencies, power)``: ``|DFT_n x_j|^2 / T`` of complex pairs ``(B, H, T, P)`` averaged over B and H.

    Frequencies in rad/token, ``(T,)`` from ``-pi`` up (fft-shifted; a pair rotating forward is positive); power
    ``(P, T)``.
    """
    length = pairs.shape[2]
    power = (torch.fft.fft(pairs, dim=2).abs() ** 2 / length).mean(dim=(0, 1))  # (T, P)
    frequencies = torch.fft.fftshift(torch.fft.fftfreq(length, dtype=torch.float64)) * 2 * math.pi
    return frequencies, torch.fft.fftshift(power, dim=0).T


@dataclass(frozen=True)
class ToneProbe:
    """The shares defined in the module docstring, plus the output energy per one-sided bin (all channels)."""

    bins: tuple[int, ...]
    length: int
    fundamental: float
    distortion: float
    leakage: float
    harmonics: dict[int, float]
    spectrum: Tensor

    def to_dict(self) -> dict[str, object]:
        """The scalar results as a JSON-able dict."""
        return {
            "bins": list(self.bins),
            "length": self.length,
            "fundamental": self.fundamental,
            "distortion": self.distortion,
            "leakage": self.leakage,
            "harmonics": {str(h): share for h, share in self.harmonics.items()},
        }


def probe_bins(num_tones: int, length: int) -> list[int]:
    """Bins ``1, 5, 9, ...`` (``4t + 1``): harmonics 2 to 4 and second-order products ``b_s +- b_t`` never land on them.

    Third-order products ``b_r + b_s - b_t`` do (they are ``1 mod 4`` too) and count as fundamental; they shrink as
    the cube of the amplitude. ``length >= 32 * num_tones`` also keeps the fourth harmonic below the Nyquist bin.
    """
    if isinstance(num_tones, bool) or not isinstance(num_tones, int) or num_tones < 1:
        raise ValueError(f"num_tones must be a positive int; got {num_tones!r}")
    if 8 * num_tones > length:
        raise ValueError(f"{num_tones} tones on bins 4t + 1 need length >= {8 * num_tones}; got length={length}")
    return [4 * t + 1 for t in range(num_tones)]


def _folded(frequency_bin: int, length: int) -> int:
    """The one-sided bin a (possibly aliased) bin lands on."""
    frequency_bin %= length
    return min(frequency_bin, length - frequency_bin)


@torch.no_grad()
def tone_probe(
    fn: Callable[[Tensor], Tensor],
    *,
    input_dim: int,
    bins: Sequence[int],
    channels: Sequence[int] | None = None,
    length: int = 1024,
    amplitude: float = 1.0,
    offset: Tensor | None = None,
    max_harmonic: int = 4,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> ToneProbe:
    """Drive ``fn`` (``(T, input_dim) -> (T, out_dim)``, applied per position) with one cosine per input channel.

    Channel ``channels[t]`` (default ``t``) gets ``amplitude * cos(2*pi*bins[t]*n/length + phase_t)`` on top of
    ``offset`` (default zeros); phases are drawn from ``seed`` (they keep many tones from peaking together). The
    input is built in float64 and handed to ``fn`` in ``dtype`` on ``device``; the DFT runs in float64.
    """
    bins = [int(b) for b in bins]
    channels = list(range(len(bins))) if channels is None else [int(c) for c in channels]
    if len(channels) != len(bins):
        raise ValueError(f"channels and bins must have the same length; got {len(channels)} and {len(bins)}")
    if len(set(bins)) != len(bins) or not all(0 < b < length / 2 for b in bins):
        raise ValueError(f"bins must be distinct ints in (0, length/2) = (0, {length / 2}); got {bins}")
    if len(set(channels)) != len(channels) or not all(0 <= c < input_dim for c in channels):
        raise ValueError(f"channels must be distinct ints in [0, input_dim={input_dim}); got {channels}")
    generator = torch.Generator().manual_seed(seed)
    phases = torch.rand(len(bins), generator=generator, dtype=torch.float64) * 2 * math.pi
    time = torch.arange(length, dtype=torch.float64).unsqueeze(-1)
    tones = amplitude * torch.cos(2 * math.pi * time * torch.tensor(bins, dtype=torch.float64) / length + phases)
    x = torch.zeros(length, input_dim, dtype=torch.float64)
    if offset is not None:
        x += offset.detach().double().cpu().reshape(1, input_dim)
    x[:, channels] += tones
    y = fn(x.to(device=device, dtype=dtype)).double().cpu()
    amplitudes = torch.fft.rfft(y, dim=0) / length
    energy = amplitudes.abs() ** 2
    energy[1 : (length + 1) // 2] *= 2  # one-sided: fold the negative frequencies in (not DC, not Nyquist)
    oscillating = energy[1:].sum()
    spectrum = energy.sum(dim=1)
    at_inputs = energy[bins]  # (tones, out channels)
    input_total = at_inputs.sum()
    harmonics = {}
    for order in range(2, max_harmonic + 1):
        landing = {_folded(order * b, length) for b in bins} - {0} - set(bins)
        harmonics[order] = float(spectrum[sorted(landing)].sum() / oscillating) if oscillating > 0 else 0.0
    fundamental = float(input_total / oscillating) if oscillating > 0 else 0.0
    leakage = float(1 - at_inputs.max(dim=0).values.sum() / input_total) if input_total > 0 else 0.0
    distortion = 1 - fundamental if oscillating > 0 else 0.0
    return ToneProbe(tuple(bins), length, fundamental, distortion, leakage, harmonics, spectrum)


def block_stages(block: nn.Module) -> dict[str, Callable[[Tensor], Tensor]]:
    """Per-position maps of a ``fope.model.Block`` from its residual input, to probe with ``tone_probe``.

    ``"qk"``: attention norm, then ``Attention.qkv``'s queries and keys (un-rotated, QK-normed), heads concatenated;
    ``"mlp_activation"``: MLP norm, ``up_gate_proj``, ``silu(gate) * up``; ``"mlp"``: the whole MLP branch.
    """
    mlp = block.mlp

    def qk(x: Tensor) -> Tensor:
        q, k, _ = block.attention.qkv(block.attention_norm(x))
        return torch.cat((q.transpose(-3, -2).flatten(-2), k.transpose(-3, -2).flatten(-2)), dim=-1)

    def mlp_activation(x: Tensor) -> Tensor:
        up, gate = mlp.up_gate_proj(block.mlp_norm(x)).chunk(2, dim=-1)
        return F.silu(gate) * up

    def mlp_branch(x: Tensor) -> Tensor:
        return mlp(block.mlp_norm(x))

    return {"qk": qk, "mlp_activation": mlp_activation, "mlp": mlp_branch}
