"""The pinball (quantile) loss over ``[B, H, Q]`` forecasts, with masks and weights.

For a level q, forecast f and observation y the pinball loss is

    rho_q(y, f) = q * (y - f)        if y >= f
                  (1 - q) * (f - y)  otherwise,

whose expectation over y is minimised by the q-quantile of y. Integrated over q in (0, 1) it is
half the CRPS (Gneiting and Raftery 2007), which is why CRPS = 2 * mean pinball over a level grid.
"""

from __future__ import annotations

import torch

from anyquantile.modules.options import Choice
from anyquantile.modules.scaling import WindowScale


class LossNormalisation(Choice):
    """What each pinball error of the training loss is divided by (:func:`loss_denominator`)."""

    window = "window"  # the window's input scale, so that every series counts alike
    target = "target"  # max(|y|, 1) per element, the any-quantile paper's variant
    none = "none"  # nothing: errors in the data's units


def pinball(prediction: torch.Tensor, target: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Elementwise pinball loss, ``[B, H, Q]``.

    Args:
        prediction: ``[B, H, Q]`` forecasts, quantile axis last.
        target: ``[B, H]`` observations.
        levels: ``[B, Q]`` (a level set per sample) or ``[Q]`` (shared).
    """
    if levels.dim() == 1:
        levels = levels[None]  # [1, Q]
    error = target[..., None] - prediction  # [B, H, Q]; > 0 where the forecast is too low
    q = levels[:, None, :]  # [B or 1, 1, Q]
    return torch.maximum(q * error, (q - 1) * error)


def pinball_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    levels: torch.Tensor,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    denominator: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean pinball loss over observed elements, a scalar.

    Args:
        prediction, target, levels: as in :func:`pinball`.
        mask: ``[B, H]``, True where the target was observed; other elements count for nothing.
        weights: per-element weights broadcastable to ``[B, H, Q]`` (e.g. ``[B, 1, Q]`` importance
            weights of sampled levels). The mean is weighted: sum(w * rho) / sum(w).
        denominator: broadcastable to ``[B, H, Q]``; each error is divided by it, e.g. the window
            scale, or ``max(|y|, 1)`` for the paper's scaled variant (:func:`target_denominator`).
    """
    loss = pinball(prediction, target, levels)  # [B, H, Q]
    if denominator is not None:
        loss = loss / denominator
    weight = torch.ones_like(loss)
    if weights is not None:
        weight = weight * weights
    if mask is not None:
        weight = weight * mask[..., None].to(loss.dtype)
    # Zero the loss where weight is 0 first, so that a NaN or inf in an unobserved target cannot leak in.
    loss = torch.where(weight != 0, loss, torch.zeros_like(loss))
    return (loss * weight).sum() / weight.sum().clamp_min(torch.finfo(loss.dtype).tiny)


def target_denominator(target: torch.Tensor) -> torch.Tensor:
    """The any-quantile paper's scaling: ``max(|y|, 1)`` per element, ``[B, H, 1]``."""
    return target.abs().clamp_min(1.0)[..., None]


def loss_denominator(normalisation: LossNormalisation, scale: WindowScale, target: torch.Tensor) -> torch.Tensor | None:
    """What the pinball errors of a batch are divided by under ``normalisation``: ``[B, 1, 1]`` (window),
    ``[B, H, 1]`` (target) or None."""
    if normalisation == LossNormalisation.window:
        return scale.scale[:, :, None]  # [B, 1, 1]
    if normalisation == LossNormalisation.target:
        return target_denominator(target)  # [B, H, 1]
    return None
