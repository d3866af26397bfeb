"""The full any-quantile network: scale the window, build its context, run the backbone, unscale."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from modules.scaling import WindowScale


@dataclass(frozen=True)
class ScaledForecast:
    """A forecast in the data's units, ``prediction`` [B, H, Q], the window scale it was made with,
    and, when asked for, what a network exposes for analysis (attention weights, gate values)."""

    prediction: torch.Tensor
    scale: WindowScale
    analysis: dict[str, Any] | None = None


def context_size(history_length: int, calendar_features: int, use_calendar: bool, use_history_mask: bool) -> int:
    """Width of the side input that ``AnyQuantileNetwork`` builds for its backbone."""
    return (calendar_features if use_calendar else 0) + (history_length if use_history_mask else 0)


def backbone_context(
    history_mask: torch.Tensor, calendar: torch.Tensor, use_calendar: bool = True, use_history_mask: bool = True
) -> torch.Tensor | None:
    """The backbone's side input [B, E]: calendar features of the first forecast hour (they fix the
    calendar of the whole horizon) and the history's observation mask, as ``context_size`` counts them."""
    T = history_mask.shape[1]
    parts = []
    if use_calendar:
        parts.append(calendar[:, T, :])  # [B, C]
    if use_history_mask:
        parts.append(history_mask.to(calendar.dtype))  # [B, T]
    return torch.cat(parts, dim=-1) if parts else None


class AnyQuantileNetwork(nn.Module):
    """``(history, history_mask, calendar, levels) -> ScaledForecast``; scaling lives here and nowhere else.

    The backbone gets the scaled history, and as side input (``context``) the calendar features
    of the first forecast hour (they fix the calendar of the whole horizon) and the history's
    observation mask, so it can tell a filled-in hour from an observed one.
    """

    def __init__(self, backbone: nn.Module, scaler: nn.Module, use_calendar: bool = True, use_history_mask: bool = True):
        super().__init__()
        self.backbone = backbone
        self.scaler = scaler
        self.use_calendar = use_calendar
        self.use_history_mask = use_history_mask

    def forward(
        self, history: torch.Tensor, history_mask: torch.Tensor, calendar: torch.Tensor, levels: torch.Tensor
    ) -> ScaledForecast:
        # history, history_mask: [B, T]; calendar: [B, T + H, C]; levels: [B, Q]
        scale = self.scaler(history, history_mask)
        context = backbone_context(history_mask, calendar, self.use_calendar, self.use_history_mask)
        output = self.backbone(scale.apply(history), levels, context)  # [B, H, Q], scaled
        # Unscale in fp32: under bf16 autocast a load of 60,000 MW would round to the nearest 256.
        return ScaledForecast(prediction=scale.undo(output.float()), scale=scale)
