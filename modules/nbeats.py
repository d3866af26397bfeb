"""N-BEATS with quantile conditioning: the any-quantile backbone.

Generic N-BEATS (Oreshkin et al. 2020): a stack of fully connected blocks with doubly residual
links. Each block reads what is left of the history (the residual), explains part of it (the
backcast, subtracted before the next block) and adds its share to the forecast.

The level q enters in one of three ways (Smyl et al. 2024, "Any-Quantile Probabilistic
Forecasting of Short-Term Electricity Demand"):

- ``cat``:  q is concatenated to every block's input;
- ``film``: every block's first hidden layer is modulated by FiLM, h * (1 + gamma(q)) + beta(q);
- ``out``:  the blocks run once per window without q, then a level read-out adds a level-dependent
  correction: an MLP over the final residual (and context) whose last layer q modulates by FiLM,
  then a ReLU and the forecast head. Per level only the FiLM generator (F x 2D), the modulation
  and the D x H head run, so asking for many levels costs little more than asking for one.

Shapes: B windows, Q levels, T history, H horizon, E context features, D width.
Unlike the paper's CAT, q is a side input and not part of the residual that backcasts subtract from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from anyquantile.modules.options import Choice, choose, require


class Conditioning(Choice):
    """How the level q enters the backbone (see the module docstring)."""

    cat = "cat"
    film = "film"
    out = "out"


class LevelFeatures(Choice):
    """The features of q the network reads (:class:`QuantileEmbedding`)."""

    identity = "identity"
    cosine = "cosine"
    normal = "normal"


@dataclass
class NBeatsConfig:
    """The N-BEATS-AQ backbone's options (``model.*``); the q-free stack of the adaptive network reads
    the sizes and dropout, and its read-out the level features."""

    conditioning: Conditioning = Conditioning.film
    num_blocks: int = 6
    num_layers: int = 3
    width: int = 256
    dropout: float = 0.0
    # identity (q) | cosine (cos(pi k q), k = 1..dim) | normal (q and its normal quantile z(q))
    quantile_embedding: LevelFeatures = LevelFeatures.identity
    quantile_embedding_dim: int = 1  # 1 for identity, 2 for normal, any for cosine

    def __post_init__(self) -> None:
        self.conditioning = choose(Conditioning, self.conditioning, "conditioning")
        self.quantile_embedding = choose(LevelFeatures, self.quantile_embedding, "quantile embedding")
        require(self.num_blocks >= 1, f"need at least one block, got num_blocks={self.num_blocks}")
        require(
            self.num_layers >= 1 and self.width >= 1,
            f"a block needs num_layers >= 1 and width >= 1, got {self.num_layers}, {self.width}",
        )
        require(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")
        QuantileEmbedding.check(self.quantile_embedding, self.quantile_embedding_dim)


class QuantileEmbedding(nn.Module):
    """Features of the level q fed to the network, ``[..., Q] -> [..., Q, dim]``.

    ``identity`` passes q itself (dim 1, as in the paper); ``cosine`` uses cos(pi * k * q) for
    k = 1..dim (as in IQN, Dabney et al. 2018), which lets a network bend its answer in q easily;
    ``normal`` passes (q, z(q)) with z the standard normal quantile function (dim 2): a forecast
    whose spread is proportional to z is then linear in the features, and z grows without bound
    towards 0 and 1, where the tails need it (q is clamped to [1e-6, 1 - 1e-6], |z| <= 4.75).
    """

    DIMS = {LevelFeatures.identity: 1, LevelFeatures.normal: 2}  # fixed sizes; cosine takes any dim

    def __init__(self, kind: LevelFeatures | str = LevelFeatures.identity, dim: int = 1) -> None:
        super().__init__()
        self.kind = self.check(kind, dim)
        self.dim = dim
        self.register_buffer("frequencies", math.pi * torch.arange(1, dim + 1, dtype=torch.float32), persistent=False)

    @classmethod
    def check(cls, kind: LevelFeatures | str, dim: int) -> LevelFeatures:
        """``kind`` as a :class:`LevelFeatures`, if ``dim`` suits it (else a ValueError)."""
        kind = choose(LevelFeatures, kind, "quantile embedding")
        require(
            kind not in cls.DIMS or dim == cls.DIMS[kind],
            f"the {kind} quantile embedding has dim {cls.DIMS.get(kind)}, got dim={dim}",
        )
        require(dim >= 1, f"quantile embedding dim must be positive, got {dim}")
        return kind

    def forward(self, levels: torch.Tensor) -> torch.Tensor:
        if self.kind == LevelFeatures.identity:
            return levels[..., None]
        if self.kind == LevelFeatures.normal:
            z = math.sqrt(2) * torch.special.erfinv(2 * levels.float().clamp(1e-6, 1 - 1e-6) - 1)
            return torch.stack([levels, z.to(levels.dtype)], dim=-1)
        return torch.cos(levels[..., None] * self.frequencies)


class NBeatsBlock(nn.Module):
    """One fully connected block: input -> ``num_layers`` ReLU layers -> (backcast [.., T], forecast [.., H]).

    The input is the residual [.., T] joined with side features [.., S] (context, q) that are
    read but never backcast. With ``film=(gamma, beta)`` the first hidden layer is modulated.
    """

    def __init__(
        self,
        backcast_size: int,
        forecast_size: int,
        side_size: int,
        width: int,
        num_layers: int,
        dropout: float = 0.0,
        produces_backcast: bool = True,
    ):
        super().__init__()
        self.layers = hidden_layers(backcast_size + side_size, width, num_layers)
        self.dropout = nn.Dropout(dropout)
        # The last block of a stack has no one to pass a residual to: it needs no backcast head.
        self.backcast = nn.Linear(width, backcast_size) if produces_backcast else None
        self.forecast = nn.Linear(width, forecast_size)

    def forward(
        self,
        residual: torch.Tensor,
        side: torch.Tensor | None = None,
        film: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        hidden = torch.relu(self._first_layer(residual, side))
        if film is not None:
            gamma, beta = film
            hidden = hidden * (1 + gamma) + beta
        hidden = self.dropout(hidden)
        for layer in self.layers[1:]:
            hidden = self.dropout(torch.relu(layer(hidden)))
        return (self.backcast(hidden) if self.backcast is not None else None), fp32_linear(self.forecast, hidden)

    def _first_layer(self, residual: torch.Tensor, side: torch.Tensor | None) -> torch.Tensor:
        """The first linear layer of [residual, side], without repeating work shared by the levels.

        When one input is per window ([B, 1, .]) and the other per level ([B, Q, .]), each is
        multiplied by its own columns of the weight and the sum broadcasts: the per-window part is
        computed once, not Q times (W [x, s] = W_x x + W_s s)."""
        first = self.layers[0]
        if side is None:
            return first(residual)
        if residual.shape[:-1] == side.shape[:-1]:
            return first(torch.cat([residual, side], dim=-1))
        T = residual.shape[-1]
        return nn.functional.linear(residual, first.weight[:, :T], first.bias) + nn.functional.linear(
            side, first.weight[:, T:]
        )


class AnyQuantileNBeats(nn.Module):
    """N-BEATS that answers any set of levels: ``(history [B, T], levels [B, Q], context [B, E]) -> [B, H, Q]``.

    The forecast for a level depends only on (history, context, that level): levels never mix,
    so asking for [0.9] or for [0.1, 0.5, 0.9] gives the same 0.9 forecast.
    """

    def __init__(self, config: NBeatsConfig, history_length: int, horizon: int, context_size: int = 0) -> None:
        super().__init__()
        c = config
        self.conditioning = c.conditioning
        self.width = c.width
        self.embed_level = QuantileEmbedding(c.quantile_embedding, c.quantile_embedding_dim)
        side_size = context_size + (self.embed_level.dim if c.conditioning == Conditioning.cat else 0)

        def block(side: int, produces_backcast: bool = True) -> NBeatsBlock:
            return NBeatsBlock(history_length, horizon, side, c.width, c.num_layers, c.dropout, produces_backcast)

        # Under OUT the level read-out reads the last residual, so every block of the stack backcasts.
        last_in_stack = c.num_blocks - 1 if c.conditioning != Conditioning.out else None
        self.blocks = nn.ModuleList(block(side_size, produces_backcast=i != last_in_stack) for i in range(c.num_blocks))
        if c.conditioning == Conditioning.film:  # one FiLM generator per block: q features -> (gamma, beta)
            self.film = nn.ModuleList(nn.Linear(self.embed_level.dim, 2 * c.width) for _ in range(c.num_blocks))
        if c.conditioning == Conditioning.out:  # the level read-out after the plain stack
            self.level_readout = LevelReadout(
                history_length + context_size, horizon, c.width, c.num_layers, self.embed_level.dim, c.dropout
            )

    def forward(self, history: torch.Tensor, levels: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        B, Q = levels.shape
        # One grid for every window (evaluation passes it as a [Q] row expanded over the windows: stride
        # 0) has its level features, and the FiLM made from them, computed once and broadcast, not B times.
        # A check of the layout, not of the values: no data-dependent branch, and gradients with respect to
        # the levels still reach the one row they came from.
        shared_grid = B > 1 and levels.stride(0) == 0
        level_features = self.embed_level((levels[:1] if shared_grid else levels).to(history.dtype))  # [B or 1, Q, F]
        if self.conditioning == Conditioning.out:
            return self._forward_out(history, level_features, context)

        # The history enters once per window ([B, 1, T]); it broadcasts over the levels where they
        # first meet it (the FiLM of block 0, or block 0's first layer under CAT), so the work before
        # that point is not repeated per level.
        residual = history[:, None, :]  # [B, 1, T]
        side = [] if context is None else [context[:, None, :]]  # [B, 1, E]
        if self.conditioning == Conditioning.cat:
            side = [part.expand(B, Q, -1) for part in side] + [level_features.expand(B, Q, -1)]  # [B, Q, E], [B, Q, F]
        side_input = torch.cat(side, dim=-1) if side else None  # [B, 1 or Q, E (+ F)]
        films = (
            [film(level_features).chunk(2, dim=-1) for film in self.film]
            if self.conditioning == Conditioning.film
            else None
        )  # 2 x [B or 1, Q, D] each
        _, forecast = run_blocks(self.blocks, residual, side_input, films)  # [B, Q, H]
        return forecast.transpose(1, 2)  # [B, H, Q]: every block after the FiLM / level input is per level

    def _forward_out(
        self, history: torch.Tensor, level_features: torch.Tensor, context: torch.Tensor | None
    ) -> torch.Tensor:
        residual, forecast = run_blocks(self.blocks, history, context)  # [B, T], [B, H]: once per window, not per level
        readout_input = residual if context is None else torch.cat([residual, context], dim=-1)  # [B, T (+ E)]
        correction = self.level_readout(readout_input, level_features)  # [B, Q, H]
        return (forecast[:, None, :] + correction).transpose(1, 2)  # [B, H, Q]


class LevelReadout(nn.Module):
    """OUT's level-dependent part: ``(features [B, N], level features [B or 1, Q, F]) -> [B, Q, H]``.

    An MLP over the window's features (the final residual and context) runs once per window; the
    level modulates the pre-activation h of its last layer by FiLM, ``relu(h * scale(q) + shift(q))``,
    and the forecast head reads the result. Per level only the FiLM generator (F x 2D), the
    modulation and the D x H head run, a small share of the per-window work, so many levels cost
    little more than one. The ReLU after the modulation makes the forecast a nonlinear function of q
    even for q's identity embedding.
    """

    def __init__(
        self,
        input_size: int,
        forecast_size: int,
        width: int,
        num_layers: int,
        level_features: int,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.layers = hidden_layers(input_size, width, num_layers)
        self.film = nn.Linear(level_features, 2 * width)  # q features -> (scale, shift)
        with torch.no_grad():  # scale = 1 + gamma(q) with the 1 in the bias: one pass less over [B, Q, D] per call
            self.film.bias[:width] += 1
        self.dropout = nn.Dropout(dropout)
        self.forecast = nn.Linear(width, forecast_size)

    def forward(self, features: torch.Tensor, level_features: torch.Tensor) -> torch.Tensor:
        hidden = features
        for layer in self.layers[:-1]:
            hidden = self.dropout(torch.relu(layer(hidden)))  # [B, D]
        hidden = self.layers[-1](hidden)[:, None, :]  # [B, 1, D]: the pre-activation, once per window
        scale, shift = self.film(level_features).chunk(2, dim=-1)  # 2 x [B or 1, Q, D]
        # In place: addcmul's backward needs its inputs, not its output.
        conditioned = self.dropout(
            torch.addcmul(shift, hidden, scale).relu_()
        )  # [B, Q, D]: relu(shift + hidden * scale)
        return fp32_linear(self.forecast, conditioned)  # [B, Q, H]


def hidden_layers(input_size: int, width: int, num_layers: int) -> nn.ModuleList:
    """The linear layers of a block's MLP: ``input_size -> width -> ... -> width`` (``num_layers`` of them)."""
    if num_layers < 1 or width < 1:
        raise ValueError(f"a block needs num_layers >= 1 and width >= 1, got {num_layers}, {width}")
    sizes = [input_size] + [width] * num_layers
    return nn.ModuleList(nn.Linear(n_in, n_out) for n_in, n_out in zip(sizes[:-1], sizes[1:]))


def fp32_linear(layer: nn.Linear, hidden: torch.Tensor) -> torch.Tensor:
    """``layer(hidden)`` in at least fp32, even under bf16 autocast or with bf16 weights: for the forecast heads.

    Forecasts for nearby levels differ by less than bf16's resolution (2^-8 relative), and rounding
    them would make the quantiles cross. The head is a small matmul (D x H), so this costs little.
    fp64 weights (``64-true``) keep fp64."""
    dtype = torch.promote_types(layer.weight.dtype, torch.float32)
    with torch.autocast(device_type=hidden.device.type, enabled=False):
        bias = None if layer.bias is None else layer.bias.to(dtype)
        return nn.functional.linear(hidden.to(dtype), layer.weight.to(dtype), bias)


class NBeatsStack(nn.Module):
    """N-BEATS without any level: ``(history [B, T], context [B, E]) -> forecast [B, H]``.

    The q-free backbone of the adaptive-attention network, which brings in the level itself.
    """

    def __init__(self, config: NBeatsConfig, history_length: int, horizon: int, context_size: int = 0) -> None:
        super().__init__()
        c = config
        self.blocks = nn.ModuleList(
            NBeatsBlock(
                history_length,
                horizon,
                context_size,
                c.width,
                c.num_layers,
                c.dropout,
                produces_backcast=i < c.num_blocks - 1,
            )
            for i in range(c.num_blocks)
        )

    def forward(self, history: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        return run_blocks(self.blocks, history, context)[1]  # [B, H]

    def residual_and_forecast(
        self, history: torch.Tensor, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(the history its blocks did not backcast [B, T], forecast [B, H]) in one pass."""
        return run_blocks(self.blocks, history, context)


def run_blocks(
    blocks: nn.ModuleList,
    residual: torch.Tensor,
    side: torch.Tensor | None,
    films: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The doubly residual pass: each block backcasts part of the residual and adds its forecast.

    residual [..., T], side [..., S], films[i] the FiLM (gamma, beta) of block i
    -> (residual [..., T], forecast [..., H]).
    """
    forecast = 0.0
    for i, block in enumerate(blocks):
        backcast, block_forecast = block(residual, side, None if films is None else films[i])
        if backcast is not None:
            residual = residual - backcast
        forecast = forecast + block_forecast
    return residual, forecast
