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

import torch
from torch import nn

from modules.attention import AdaptiveTemporalAttention, AttentionOutput
from modules.forecast_network import ScaledForecast, backbone_context
from modules.nbeats import NBeatsStack, QuantileEmbedding


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
        self.convolutions = nn.ModuleList(nn.Conv1d(d_model, d_model, size, padding=size // 2, groups=d_model) for size in kernel_sizes)
        self.project = nn.Linear(d_model * len(kernel_sizes), d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.transpose(1, 2)  # [B, D, L]
        features = torch.cat([torch.relu(conv(channels)) for conv in self.convolutions], dim=1)  # [B, K*D, L]
        return self.dropout(self.project(features.transpose(1, 2)))  # [B, L, D]


class HataBlock(nn.Module):
    """Pre-norm block: adaptive attention, multi-scale convolution, position-wise FFN, each with a residual."""

    def __init__(self, d_model: int, attention: AdaptiveTemporalAttention, kernel_sizes: tuple[int, ...], ffn_multiplier: int, dropout: float):
        super().__init__()
        self.attention = attention
        self.attention_norm = nn.LayerNorm(d_model)
        self.convolution = MultiScaleConvolution(d_model, kernel_sizes, dropout) if kernel_sizes else None
        self.convolution_norm = nn.LayerNorm(d_model) if kernel_sizes else None
        self.ffn = nn.Sequential(
            nn.LayerNorm(d_model), nn.Linear(d_model, ffn_multiplier * d_model), nn.GELU(),
            nn.Linear(ffn_multiplier * d_model, d_model), nn.Dropout(dropout),
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

    def __init__(self, d_model: int, horizon: int, patch_length: int, attention_dim: int = 16, value_dim: int = 4) -> None:
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


class AdaptiveAttentionNetwork(nn.Module):
    """``(history, history_mask, calendar, levels) -> ScaledForecast``, like ``AnyQuantileNetwork``."""

    def __init__(
        self,
        backbone: NBeatsStack,
        scaler: nn.Module,
        blocks: list[HataBlock],
        history_length: int,
        horizon: int,
        calendar_features: int,
        d_model: int,
        fft_features: int = 0,
        cross_step: CrossStepRefinement | None = None,
        calendar_gates: bool = True,
        level_embedding: QuantileEmbedding | None = None,
        schedule_steps: int = 2000,
        patch_length: int = 1,
    ) -> None:
        super().__init__()
        if patch_length < 1 or history_length % patch_length or horizon % patch_length:
            raise ValueError(f"patch_length ({patch_length}) must divide history_length ({history_length}) and horizon ({horizon})")
        self.backbone, self.scaler = backbone, scaler
        self.blocks = nn.ModuleList(blocks)
        self.horizon, self.fft_features, self.calendar_gates = horizon, fft_features, calendar_gates
        self.patch = patch_length
        # A token is a patch of P hours: its P values (history, or the centre forecast over the
        # horizon), P observed flags and the calendar of its first hour.
        self.embed_token = nn.Linear(2 * patch_length + calendar_features, d_model)
        self.position = nn.Parameter(torch.zeros((history_length + horizon) // patch_length, d_model))
        self.horizon_marker = nn.Parameter(torch.zeros(d_model))
        self.embed_spectrum = nn.Linear(2 * fft_features, d_model) if fft_features else None
        self.readout_norm = nn.LayerNorm(d_model)
        self.embed_level = QuantileEmbedding("identity") if level_embedding is None else level_embedding
        self.level_film = nn.Linear(self.embed_level.dim, 2 * d_model)
        # The read-out's first layer runs once per window; the level modulates its output by FiLM
        # (as in the FiLM N-BEATS), so per level and patch only the modulation, a GELU and a
        # D x P layer remain.
        self.readout_hidden = nn.Linear(d_model, d_model)
        self.readout_out = nn.Linear(d_model, patch_length)
        self.cross_step = cross_step
        self.schedule_steps = schedule_steps

    def encode(self, history_scaled, history_mask, calendar, centre, return_weights: bool = False):
        """Horizon patch states [B, H/P, D] (once per window) and each block's attention output."""
        B, T = history_scaled.shape
        P = self.patch
        observed = history_mask.to(history_scaled.dtype)
        values = torch.cat([history_scaled * observed, centre.to(history_scaled.dtype)], dim=1).reshape(B, -1, P)  # [B, L, P], L = (T+H)/P
        flags = torch.cat([observed, torch.zeros_like(centre, dtype=observed.dtype)], dim=1).reshape(B, -1, P)  # [B, L, P]
        patch_calendar = calendar[:, ::P]  # [B, L, C]: the calendar of each patch's first hour
        tokens = self.embed_token(torch.cat([values, flags, patch_calendar], dim=-1))  # [B, L, D]
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
        centre = self.backbone(scaled, backbone_context(history_mask, calendar))  # [B, H], no level
        states, attended = self.encode(scaled, history_mask, calendar, centre, return_attention)  # [B, H/P, D]
        hidden = self.readout_hidden(states)  # [B, H/P, D], once per window
        gamma, beta = self.level_film(self.embed_level(levels.to(hidden.dtype))).chunk(2, dim=-1)  # 2 x [B, Q, D]
        conditioned = torch.nn.functional.gelu(hidden[:, None] * (1 + gamma[:, :, None]) + beta[:, :, None])  # [B, Q, H/P, D]
        B, Q = levels.shape
        offset = self.readout_out(conditioned).reshape(B, Q, self.horizon).transpose(1, 2)  # [B, Q, H/P, P] -> [B, H, Q]
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
    return torch.cat([coefficients.abs() / history.shape[-1], coefficients.angle() / torch.pi], dim=-1).to(history.dtype)
