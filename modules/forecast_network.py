"""The any-quantile network around a backbone: scale the window, build its context, run the backbone,
unscale; and the training objective beside it (:meth:`QuantileNetwork.loss`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from anyquantile.modules.level_sampling import LevelSampler
from anyquantile.modules.losses import LossNormalisation, loss_denominator, pinball_loss
from anyquantile.modules.options import choose
from anyquantile.modules.scaling import Scaler, WindowScale, build_scaler


@dataclass
class NetworkConfig:
    """What the network does around its backbone (``model.*``)."""

    scaler: Scaler = Scaler.max_abs  # per-window input scaling (modules/scaling.py)
    use_calendar: bool = True  # the backbone reads the first forecast hour's calendar features
    use_history_mask: bool = True  # ... and which history hours were observed
    loss_normalisation: LossNormalisation = LossNormalisation.window  # what the training loss divides errors by

    def __post_init__(self) -> None:
        self.scaler = choose(Scaler, self.scaler, "scaler")
        self.loss_normalisation = choose(LossNormalisation, self.loss_normalisation, "loss normalisation")


@dataclass(frozen=True)
class ScaledForecast:
    """A forecast in the data's units, ``prediction`` [B, H, Q], the window scale it was made with,
    and, when asked for, what a network exposes for analysis (attention weights, gate values)."""

    prediction: torch.Tensor
    scale: WindowScale
    analysis: dict[str, Any] | None = None


class TrainingWindows(Protocol):
    """What the objective reads of a batch of windows (``dataset.windows.WindowBatch`` is one)."""

    history: torch.Tensor  # [B, T]
    history_mask: torch.Tensor  # [B, T], True where observed
    calendar: torch.Tensor  # [B, T + H, C]
    target: torch.Tensor  # [B, H]
    target_mask: torch.Tensor  # [B, H], True where observed


class QuantileNetwork(nn.Module):
    """``(history, history_mask, calendar, levels) -> ScaledForecast``, and its training objective.

    Subclasses implement ``forward``; :meth:`loss` is the objective for all of them (as gluonts'
    networks own their ``loss``), so that it runs the same under Lightning and in a plain torch loop.
    """

    def __init__(self, scaler: Scaler, loss_normalisation: LossNormalisation) -> None:
        super().__init__()
        self.scaler = build_scaler(scaler)
        self.loss_normalisation = loss_normalisation

    def loss(self, batch: TrainingWindows, sampler: LevelSampler) -> torch.Tensor:
        """The training loss of a batch: the mean pinball loss at levels drawn by ``sampler``.

        Each error is divided by the normalisation's denominator (the window's scale by default, so
        that series of 10 MW and of 60,000 MW count alike) and weighted by the draw's importance
        weights (self-normalised: the loss stays an estimate of the uniform-q integral, CRPS / 2).
        The sampler sees the same forecasts afterwards (``observe``), which an adaptive sampler
        learns from and the others ignore.
        """
        B = batch.history.shape[0]
        draw = sampler(B, batch.history.device)  # levels [B, Q], weights [B, Q] or None
        forecast = self(batch.history, batch.history_mask, batch.calendar, draw.levels)
        denominator = loss_denominator(self.loss_normalisation, forecast.scale, batch.target)
        loss = pinball_loss(
            forecast.prediction,
            batch.target,
            draw.levels,
            mask=batch.target_mask,
            weights=None if draw.weights is None else draw.weights[:, None, :],  # [B, 1, Q]
            denominator=denominator,
        )
        sampler.observe(forecast.prediction.detach(), batch.target, draw.levels, batch.target_mask, denominator)
        return loss


@dataclass(frozen=True)
class CovariateChannels:
    """How many of the calendar's last channels are a window's covariates, of each kind, in this order:
    future-known (read over the window), historical (zero over the horizon) and static (one value)."""

    futr: int = 0
    hist: int = 0
    stat: int = 0

    @property
    def width(self) -> int:
        return self.futr + self.hist + self.stat

    def context_size(self, history_length: int, horizon: int) -> int:
        return (history_length + horizon) * self.futr + history_length * self.hist + self.stat

    def context(self, calendar: torch.Tensor, history_length: int) -> torch.Tensor:
        """[B, (T + H) F + T Hx + S]: the future-known covariates at every hour of the window, the historical
        ones at every hour of the history, the static ones once (as NBEATSx reads them)."""
        T, F, temporal = history_length, self.futr, self.futr + self.hist
        covariates = calendar[..., calendar.shape[-1] - self.width :]  # [B, T + H, K]
        return torch.cat(
            [
                covariates[:, :, :F].flatten(1),  # [B, (T + H) F]
                covariates[:, :T, F:temporal].flatten(1),  # [B, T Hx]
                covariates[:, T, temporal:],  # [B, S]
            ],
            dim=-1,
        )


NO_COVARIATES = CovariateChannels()


def context_size(
    history_length: int,
    horizon: int,
    calendar_features: int,
    *,
    use_calendar: bool,
    use_history_mask: bool,
    covariates: CovariateChannels = NO_COVARIATES,
) -> int:
    """Width of the side input that ``backbone_context`` builds for the backbone."""
    return (
        (calendar_features if use_calendar else 0)
        + (history_length if use_history_mask else 0)
        + covariates.context_size(history_length, horizon)
    )


def backbone_context(
    history_mask: torch.Tensor,
    calendar: torch.Tensor,
    use_calendar: bool = True,
    use_history_mask: bool = True,
    covariates: CovariateChannels = NO_COVARIATES,
) -> torch.Tensor | None:
    """The backbone's side input [B, E]: calendar features of the first forecast hour (they fix the
    calendar of the whole horizon), the history's observation mask and the window's ``covariates``
    (the calendar's last channels, :meth:`CovariateChannels.context`), as ``context_size`` counts them."""
    T = history_mask.shape[1]
    parts = []
    if use_calendar:
        parts.append(calendar[:, T, :])  # [B, C]
    if use_history_mask:
        parts.append(history_mask.to(calendar.dtype))  # [B, T]
    if covariates.width:
        parts.append(covariates.context(calendar, T))  # [B, (T + H) F + T Hx + S]
    return torch.cat(parts, dim=-1) if parts else None


class AnyQuantileNetwork(QuantileNetwork):
    """N-BEATS-AQ as a network: scaling lives here and nowhere else.

    The backbone gets the scaled history, and as side input (``context``) the calendar features
    of the first forecast hour (they fix the calendar of the whole horizon) and the history's
    observation mask, so it can tell a filled-in hour from an observed one.
    """

    def __init__(
        self, config: NetworkConfig, backbone: nn.Module, covariates: CovariateChannels = NO_COVARIATES
    ) -> None:
        super().__init__(config.scaler, config.loss_normalisation)
        self.backbone = backbone
        self.covariates = covariates  # the calendar's last channels that are the window's covariates
        self.use_calendar = config.use_calendar
        self.use_history_mask = config.use_history_mask

    def forward(
        self, history: torch.Tensor, history_mask: torch.Tensor, calendar: torch.Tensor, levels: torch.Tensor
    ) -> ScaledForecast:
        # history, history_mask: [B, T]; calendar: [B, T + H, C]; levels: [B, Q]
        scale = self.scaler(history, history_mask)
        context = backbone_context(history_mask, calendar, self.use_calendar, self.use_history_mask, self.covariates)
        output = self.backbone(scale.apply(history), levels, context)  # [B, H, Q], scaled
        # Unscale in fp32: under bf16 autocast a load of 60,000 MW would round to the nearest 256.
        return ScaledForecast(prediction=scale.undo(output.float()), scale=scale)
