"""The adaptive-attention any-quantile network: a q-free N-BEATS forecast refined by HATA blocks.

    history [B, T] --scale--> N-BEATS stack (no level) ---------------- centre forecast c [B, H]
        |                                                                  |
        +-- tokens: patches of P hours of history, then of c [B, (T+H)/P, D]
                        --HATA blocks--> horizon states s [B, H/P, D]
                                            |  FiLM(q), MLP
                                            +--> level offset o_q [B, H, Q]  --> y_q = c + o_q
                                            |
                        cross-step refinement: attention over the H steps, weights from s
                        (shared by all levels), values from each level's own path y_q
                                                                              --> unscale -> y [B, H, Q]

Everything up to the horizon states and the cross-step weights is computed once per window: the
level enters only in the FiLM read-out and in the cross-step values, a few thousand
multiply-adds per level and step, so a grid of 100 levels costs little more than one.
Levels never mix: the forecast for q depends on (history, calendar, q) only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from anyquantile.modules.attention import AdaptiveTemporalAttention, AttentionConfig, AttentionOutput
from anyquantile.modules.forecast_network import (
    NO_COVARIATES,
    CovariateChannels,
    NetworkConfig,
    QuantileNetwork,
    ScaledForecast,
    backbone_context,
)
from anyquantile.modules.nbeats import NBeatsStack, QuantileEmbedding
from anyquantile.modules.options import require


@dataclass
class AdaptiveAttentionConfig(AttentionConfig):
    """The HATA refinement's options (``model.attention.*``): those of its attention layers
    (``AttentionConfig``) and the network's own; used when model.architecture = adaptive_attention."""

    patch_length: int = 8  # hours per token; the attention's cost falls with its square
    num_blocks: int = 2  # HATA blocks; 0: the read-out reads the token embeddings
    calendar_gates: bool = True  # the gate alpha also reads each position's calendar
    bias_schedule_steps: int = 2000  # training steps over which a scheduled beta moves
    conv_kernels: list[int] = field(default_factory=lambda: [3, 7])  # in tokens; [] switches the convolution off
    ffn_multiplier: int = 2
    fft_features: int = 0  # 0 = off; else the number of lowest frequencies embedded
    cross_step: bool = True  # attention over the H steps refining each level's path
    # history tokens also carry the backbone's residual: the part of each patch its blocks did not
    # backcast, so the attention reads what the backbone left unexplained, not the raw history alone
    backbone_residual: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.patch_length >= 1, f"patch_length must be >= 1, got {self.patch_length}")
        require(self.num_blocks >= 0, f"num_blocks must be >= 0, got {self.num_blocks}")
        require(self.ffn_multiplier >= 1, f"ffn_multiplier must be >= 1, got {self.ffn_multiplier}")
        require(self.fft_features >= 0, f"fft_features must be >= 0, got {self.fft_features}")
        require(self.bias_schedule_steps >= 1, f"bias_schedule_steps must be >= 1, got {self.bias_schedule_steps}")


class MultiScaleConvolution(nn.Module):
    """Parallel 1-D convolutions with several kernel sizes ('same' padding), concatenated and projected.

    The convolutions are depthwise (one filter per channel; channels are mixed by the projection):
    with hourly tokens a full D x D x k kernel cost more than the attention itself, and at patch
    tokens it measured no faster than depthwise.
    """

    def __init__(self, d_model: int, kernel_sizes: tuple[int, ...], dropout: float = 0.0) -> None:
        super().__init__()
        for size in kernel_sizes:
            if size < 1 or size % 2 == 0:
                raise ValueError(f"convolution kernel sizes must be odd and positive, got {size}")
        self.convolutions = nn.ModuleList(
            nn.Conv1d(d_model, d_model, size, padding=size // 2, groups=d_model) for size in kernel_sizes
        )
        self.project = nn.Linear(d_model * len(kernel_sizes), d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.transpose(1, 2)  # [B, D, L]
        features = torch.cat([torch.relu(conv(channels)) for conv in self.convolutions], dim=1)  # [B, K*D, L]
        return self.dropout(self.project(features.transpose(1, 2)))  # [B, L, D]


class HataBlock(nn.Module):
    """Pre-norm block: adaptive attention, multi-scale convolution, position-wise FFN, each with a residual."""

    def __init__(self, config: AdaptiveAttentionConfig, max_length: int, gate_context_size: int) -> None:
        super().__init__()
        D, kernels = config.d_model, tuple(config.conv_kernels)
        self.attention = AdaptiveTemporalAttention(config, max_length=max_length, gate_context_size=gate_context_size)
        self.attention_norm = nn.LayerNorm(D)
        self.convolution = MultiScaleConvolution(D, kernels, config.dropout) if kernels else None
        self.convolution_norm = nn.LayerNorm(D) if kernels else None
        self.ffn = nn.Sequential(
            nn.LayerNorm(D),
            nn.Linear(D, config.ffn_multiplier * D),
            nn.GELU(),
            nn.Linear(config.ffn_multiplier * D, D),
            nn.Dropout(config.dropout),
        )

    def forward(self, x, key_mask, gate_context, return_weights: bool = False) -> tuple[torch.Tensor, AttentionOutput]:
        attended = self.attention(self.attention_norm(x), key_mask, gate_context, return_weights=return_weights)
        x = x + attended.output
        if self.convolution is not None:
            x = x + self.convolution(self.convolution_norm(x))
        return x + self.ffn(x), attended


class CrossStepRefinement(nn.Module):
    """Attention over the H forecast steps that adds a residual correction to each level's path.

    Queries and keys come from the window's horizon states (hour by hour: the state of the patch
    an hour falls in plus a learnt per-hour position), so the [H, H] weights are computed once per
    window; the values are each level's own path. The correction for q thus reads only the path
    for q, and many levels cost little more than one (H * H * value_dim multiply-adds per level).
    Its output layer starts at zero: at initialisation it passes the forecast through unchanged.
    """

    def __init__(
        self, d_model: int, horizon: int, patch_length: int, attention_dim: int = 16, value_dim: int = 4
    ) -> None:
        super().__init__()
        self.patch = patch_length
        self.query = nn.Linear(d_model, attention_dim)
        self.key = nn.Linear(d_model, attention_dim)
        self.step = nn.Parameter(torch.zeros(horizon, attention_dim))
        self.value = nn.Linear(1, value_dim)
        self.out = nn.Linear(value_dim, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, forecast: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        """forecast [B, H, Q] (scaled), states [B, H/P, D] -> refined forecast [B, H, Q]."""
        hourly = states.repeat_interleave(self.patch, dim=1)  # [B, H, D]
        queries, keys = self.query(hourly) + self.step, self.key(hourly) + self.step  # [B, H, A]
        weights = torch.softmax(queries @ keys.transpose(1, 2) / queries.shape[-1] ** 0.5, dim=-1)  # [B, H, H]
        values = torch.nn.functional.gelu(self.value(forecast[..., None]))  # [B, H, Q, V]
        mixed = torch.einsum("bhj,bjqv->bhqv", weights.to(values.dtype), values)  # [B, H, Q, V]
        return forecast + self.out(mixed).squeeze(-1)  # [B, H, Q]


class AdaptiveAttentionNetwork(QuantileNetwork):
    """``(history, history_mask, calendar, levels) -> ScaledForecast``, like ``AnyQuantileNetwork``.

    Args:
        config: the HATA refinement's options.
        network: scaling and loss normalisation (the backbone always reads the calendar and the mask).
        backbone: the q-free N-BEATS stack that makes the centre forecast.
        history_length, horizon: T and H hours; the patch length must divide both.
        calendar_features: C, the calendar's width.
        covariates: the calendar's last channels that are the window's covariates (the backbone reads them
            as ``CovariateChannels.context``; the tokens and gates read each patch's first hour, as the calendar).
        level_embedding: the features of q that the read-out reads.
    """

    def __init__(
        self,
        config: AdaptiveAttentionConfig,
        network: NetworkConfig,
        backbone: NBeatsStack,
        history_length: int,
        horizon: int,
        calendar_features: int,
        level_embedding: QuantileEmbedding,
        covariates: CovariateChannels = NO_COVARIATES,
    ) -> None:
        super().__init__(network.scaler, network.loss_normalisation)
        P, D = config.patch_length, config.d_model
        require(
            history_length % P == 0 and horizon % P == 0,
            f"patch_length ({P}) must divide history_length ({history_length}) and horizon ({horizon})",
        )
        self.backbone = backbone
        self.covariates = covariates
        gate_context = calendar_features if config.calendar_gates else 0
        tokens = (history_length + horizon) // P
        self.blocks = nn.ModuleList(HataBlock(config, tokens, gate_context) for _ in range(config.num_blocks))
        self.cross_step = CrossStepRefinement(D, horizon, P) if config.cross_step else None
        self.horizon, self.fft_features, self.calendar_gates = horizon, config.fft_features, config.calendar_gates
        self.patch = P
        # A token is a patch of P hours: its P values (history, or the centre forecast over the
        # horizon), P observed flags, (with backbone_residual) the backbone's P residuals, and the
        # calendar of its first hour.
        self.backbone_residual = config.backbone_residual
        self.embed_token = nn.Linear((3 if config.backbone_residual else 2) * P + calendar_features, D)
        self.position = nn.Parameter(torch.zeros(tokens, D))
        self.horizon_marker = nn.Parameter(torch.zeros(D))
        self.embed_spectrum = nn.Linear(2 * config.fft_features, D) if config.fft_features else None
        self.readout_norm = nn.LayerNorm(D)
        self.embed_level = level_embedding
        self.level_film = nn.Linear(self.embed_level.dim, 2 * D)
        # The read-out's first layer runs once per window; the level modulates its output by FiLM
        # (as in the FiLM N-BEATS), so per level and patch only the modulation, a GELU and a
        # D x P layer remain.
        self.readout_hidden = nn.Linear(D, D)
        self.readout_out = nn.Linear(D, P)
        self.schedule_steps = config.bias_schedule_steps

    def encode(self, history_scaled, history_mask, calendar, centre, residual=None, return_weights: bool = False):
        """Horizon patch states [B, H/P, D] (once per window) and each block's attention output;
        ``residual`` [B, T]: the backbone's unexplained history (backbone_residual), else None."""
        B, T = history_scaled.shape
        P = self.patch
        observed = history_mask.to(history_scaled.dtype)
        values = torch.cat([history_scaled * observed, centre.to(history_scaled.dtype)], dim=1).reshape(
            B, -1, P
        )  # [B, L, P], L = (T+H)/P
        flags = torch.cat([observed, torch.zeros_like(centre, dtype=observed.dtype)], dim=1).reshape(
            B, -1, P
        )  # [B, L, P]
        patch_calendar = calendar[:, ::P]  # [B, L, C]: the calendar of each patch's first hour
        parts = [values, flags]
        if residual is not None:  # zero over the horizon, where the backbone backcasts nothing
            residuals = torch.cat(
                [residual.to(observed.dtype) * observed, torch.zeros_like(flags[:, T // P :].flatten(1))], dim=1
            )
            parts.append(residuals.reshape(B, -1, P))  # [B, L, P]
        tokens = self.embed_token(torch.cat([*parts, patch_calendar], dim=-1))  # [B, L, D]
        L, history_tokens = tokens.shape[1], T // P
        is_horizon = (torch.arange(L, device=tokens.device) >= history_tokens)[:, None]  # [L, 1]
        tokens = tokens + self.position + is_horizon * self.horizon_marker
        if self.embed_spectrum is not None:
            tokens = tokens + self.embed_spectrum(_spectrum(history_scaled * observed, self.fft_features))[:, None]
        # A history patch is a key when any of its hours was observed; horizon patches always are.
        history_keys = history_mask.reshape(B, history_tokens, P).any(dim=-1)  # [B, T/P]
        future_keys = torch.ones(B, L - history_tokens, dtype=torch.bool, device=history_mask.device)
        key_mask = torch.cat([history_keys, future_keys], dim=1)  # [B, L]
        gate_context = patch_calendar if self.calendar_gates else None
        attended = []
        for block in self.blocks:
            tokens, output = block(tokens, key_mask, gate_context, return_weights)
            attended.append(output)
        return self.readout_norm(tokens[:, history_tokens:]), attended  # [B, H/P, D]

    def forward(self, history, history_mask, calendar, levels, return_attention: bool = False) -> ScaledForecast:
        scale = self.scaler(history, history_mask)
        scaled = scale.apply(history)
        context = backbone_context(history_mask, calendar, covariates=self.covariates)
        if self.backbone_residual:
            residual, centre = self.backbone.residual_and_forecast(scaled, context)  # [B, T], [B, H], no level
        else:
            residual, centre = None, self.backbone(scaled, context)
        states, attended = self.encode(
            scaled, history_mask, calendar, centre, residual, return_attention
        )  # [B, H/P, D]
        hidden = self.readout_hidden(states)  # [B, H/P, D], once per window
        gamma, beta = self.level_film(self.embed_level(levels.to(hidden.dtype))).chunk(2, dim=-1)  # 2 x [B, Q, D]
        conditioned = torch.nn.functional.gelu(
            hidden[:, None] * (1 + gamma[:, :, None]) + beta[:, :, None]
        )  # [B, Q, H/P, D]
        B, Q = levels.shape
        offset = (
            self.readout_out(conditioned).reshape(B, Q, self.horizon).transpose(1, 2)
        )  # [B, Q, H/P, P] -> [B, H, Q]
        forecast = centre[:, :, None] + offset  # [B, H, Q]
        if self.cross_step is not None:
            forecast = self.cross_step(forecast, states)
        analysis = None
        if return_attention:
            analysis = {"attention": [a.weights for a in attended], "gates": [a.gate for a in attended]}
        return ScaledForecast(prediction=scale.undo(forecast.float()), scale=scale, analysis=analysis)

    def set_training_step(self, step: int) -> None:
        """Move scheduled locality biases to where ``step`` of ``schedule_steps`` puts them."""
        for block in self.blocks:
            block.attention.set_schedule_progress(step / self.schedule_steps)


def _spectrum(history: torch.Tensor, num_frequencies: int) -> torch.Tensor:
    """Amplitudes and phases of the lowest non-zero frequencies of the history: [B, 2 * F]."""
    coefficients = torch.fft.rfft(history.float(), dim=-1)[:, 1 : num_frequencies + 1]  # [B, F]
    return torch.cat([coefficients.abs() / history.shape[-1], coefficients.angle() / torch.pi], dim=-1).to(
        history.dtype
    )
