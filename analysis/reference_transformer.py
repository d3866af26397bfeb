"""The attention study's reference model: a plain transformer-encoder forecaster whose attention
weights can be read per layer and head.

d_model 64, 4 heads, 2 post-norm encoder layers with a 256-wide ReLU FFN, dropout 0.1; 100 past
points in, 20 out, trained on MSE. Each window is standardised by its own mean and standard
deviation (so trending and level-shifting series share one model) and the forecast is mapped back.
Tokens are single time points: value embedding plus a learned position embedding; the forecast is
a linear read-out of all token states.
"""

from __future__ import annotations

import torch
from torch import nn


class EncoderLayer(nn.Module):
    """Self-attention and FFN, each with a residual and layer norm after it; can return the weights."""

    def __init__(self, d_model: int, num_heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(d_model, num_heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(d_model, ffn), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn, d_model))
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, return_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        attended, weights = self.attention(
            x, x, x, need_weights=return_weights, average_attn_weights=False
        )  # weights [B, N, T, T]
        x = self.norm1(x + self.dropout(attended))
        return self.norm2(x + self.dropout(self.ffn(x))), weights


class ReferenceTransformer(nn.Module):
    """``history [B, T] -> forecast [B, H]``; ``forward(..., return_attention=True)`` also returns the
    attention weights of every layer, each [B, heads, T (attending), T (attended)]."""

    def __init__(
        self,
        input_length: int = 100,
        horizon: int = 20,
        d_model: int = 64,
        num_heads: int = 4,
        num_layers: int = 2,
        ffn: int = 256,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.input_length, self.horizon = input_length, horizon
        self.embed = nn.Linear(1, d_model)
        self.position = nn.Parameter(0.02 * torch.randn(input_length, d_model))
        self.layers = nn.ModuleList(EncoderLayer(d_model, num_heads, ffn, dropout) for _ in range(num_layers))
        self.readout = nn.Linear(input_length * d_model, horizon)

    def forward(self, history: torch.Tensor, return_attention: bool = False):
        if history.shape[-1] != self.input_length:
            raise ValueError(f"expected {self.input_length} past points, got {history.shape[-1]}")
        mean = history.mean(dim=-1, keepdim=True)  # [B, 1]
        std = history.std(dim=-1, keepdim=True).clamp_min(1e-6)
        x = self.embed(((history - mean) / std)[..., None]) + self.position  # [B, T, D]
        weights = []
        for layer in self.layers:
            x, layer_weights = layer(x, return_attention)
            weights.append(layer_weights)
        forecast = self.readout(x.flatten(1)) * std + mean  # [B, H]
        return (forecast, weights) if return_attention else forecast
