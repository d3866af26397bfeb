"""Per-window input scaling: the one place where a window is scaled, and where it is unscaled.

The network sees ``(x - loc) / scale`` of its history and predicts in that space; its forecast
is mapped back with ``y * scale + loc``. Statistics use observed history hours only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from anyquantile.modules.options import Choice, choose

_TINY = 1e-8


class Scaler(Choice):
    max_abs = "max_abs"  # divide by the largest absolute observed value of the history (the paper's choice)
    robust = "robust"  # centre on the median, divide by the inter-quartile range


@dataclass(frozen=True)
class WindowScale:
    """Location and scale of each window of a batch, ``[B, 1]`` each."""

    loc: torch.Tensor
    scale: torch.Tensor

    def apply(self, values: torch.Tensor) -> torch.Tensor:
        """Scale ``[B, ...]`` values (any trailing shape) into the network's space."""
        return (values - self._view(self.loc, values)) / self._view(self.scale, values)

    def undo(self, values: torch.Tensor) -> torch.Tensor:
        """Map ``[B, ...]`` network outputs back to the data's units."""
        return values * self._view(self.scale, values) + self._view(self.loc, values)

    @staticmethod
    def _view(stat: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return stat.reshape(stat.shape[0], *([1] * (like.dim() - 1)))


class MaxAbsScaler(nn.Module):
    """Divide by the largest absolute observed value of the history (the paper's choice); loc = 0."""

    def forward(self, history: torch.Tensor, mask: torch.Tensor) -> WindowScale:
        # history, mask: [B, T]
        peak = torch.where(mask, history.abs(), torch.zeros_like(history)).amax(dim=1, keepdim=True)  # [B, 1]
        scale = torch.where(peak > _TINY, peak, torch.ones_like(peak))  # an all-zero window stays as it is
        return WindowScale(loc=torch.zeros_like(scale), scale=scale)


class RobustScaler(nn.Module):
    """Centre on the median, divide by the inter-quantile range (25-75 % by default).

    Unlike max-abs, a single spike in the history does not shrink the whole window.
    """

    def __init__(self, lower: float = 0.25, upper: float = 0.75) -> None:
        super().__init__()
        if not 0.0 <= lower < upper <= 1.0:
            raise ValueError(f"need 0 <= lower < upper <= 1, got lower={lower}, upper={upper}")
        self.register_buffer("levels", torch.tensor([lower, 0.5, upper]), persistent=False)

    def forward(self, history: torch.Tensor, mask: torch.Tensor) -> WindowScale:
        # history, mask: [B, T]
        masked = torch.where(mask, history, torch.full_like(history, float("nan")))
        low, median, high = torch.nanquantile(masked.float(), self.levels, dim=1, keepdim=True)  # 3 x [B, 1]
        spread = (high - low).to(history.dtype)
        fallback = median.abs().clamp_min(1.0).to(history.dtype)  # flat window: scale by its level
        scale = torch.where(spread > _TINY, spread, fallback)
        loc = torch.nan_to_num(median.to(history.dtype), nan=0.0)
        return WindowScale(loc=loc, scale=torch.nan_to_num(scale, nan=1.0))


def build_scaler(kind: Scaler | str) -> nn.Module:
    """The scaler of ``kind``: :class:`MaxAbsScaler` or :class:`RobustScaler`."""
    scalers = {Scaler.max_abs: MaxAbsScaler, Scaler.robust: RobustScaler}
    return scalers[choose(Scaler, kind, "scaler")]()
