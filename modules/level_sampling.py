"""Drawing the quantile levels each training sample is scored at."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class LevelDraw:
    """Levels for a batch, ``[B, Q]`` in (0, 1), and optional per-level loss weights ``[B, Q]``."""

    levels: torch.Tensor
    weights: torch.Tensor | None = None


class UniformLevelSampler(nn.Module):
    """Q levels per sample, independent and uniform on (0, 1): the uniform-q pinball is CRPS / 2."""

    def __init__(self, levels_per_sample: int = 1) -> None:
        super().__init__()
        if levels_per_sample < 1:
            raise ValueError(f"levels_per_sample must be >= 1, got {levels_per_sample}")
        self.levels_per_sample = levels_per_sample

    def forward(self, batch_size: int, device: torch.device) -> LevelDraw:
        return LevelDraw(torch.rand(batch_size, self.levels_per_sample, device=device))


class BetaLevelSampler(nn.Module):
    """Q levels per sample from Beta(alpha, beta); alpha = beta < 1 puts more levels in the tails."""

    def __init__(self, levels_per_sample: int = 1, alpha: float = 0.5, beta: float = 0.5) -> None:
        super().__init__()
        if levels_per_sample < 1:
            raise ValueError(f"levels_per_sample must be >= 1, got {levels_per_sample}")
        if alpha <= 0 or beta <= 0:
            raise ValueError(f"Beta parameters must be positive, got alpha={alpha}, beta={beta}")
        self.levels_per_sample = levels_per_sample
        self.register_buffer("concentration", torch.tensor([alpha, beta]), persistent=False)

    def forward(self, batch_size: int, device: torch.device) -> LevelDraw:
        alpha, beta = self.concentration.to(device)
        draw = torch.distributions.Beta(alpha, beta).sample((batch_size, self.levels_per_sample))
        # Beta samples can round to exactly 0 or 1 in float32; the levels must stay inside (0, 1).
        eps = torch.finfo(draw.dtype).eps
        return LevelDraw(draw.clamp(eps, 1 - eps))


def build_level_sampler(kind: str, levels_per_sample: int, alpha: float = 0.5, beta: float = 0.5) -> nn.Module:
    """``uniform`` or ``beta``."""
    if kind == "uniform":
        return UniformLevelSampler(levels_per_sample)
    if kind == "beta":
        return BetaLevelSampler(levels_per_sample, alpha, beta)
    raise ValueError(f"unknown level sampler '{kind}'; choose 'uniform' or 'beta'")
