"""Monotone rearrangement of quantile forecasts (Chernozhukov, Fernández-Val and Galichon 2010).

Sorting the forecasts of a set of levels along the level axis removes every crossing and never
increases the summed pinball loss over those levels, for any observation y: with
rho_q(y - f) = q (y - f) + (f - y)_+, the sum over levels of (f_k - y)_+ does not depend on which
forecast goes to which level, and sum_k q_k f_k is largest when the f_k are sorted like the q_k
(the rearrangement inequality). The rearranged forecast of a level depends on the other levels of
the set, so it is applied to a fixed level set (the evaluation grid), never inside the network.
"""

from __future__ import annotations

import torch


def rearrange_quantiles(prediction: torch.Tensor, levels: torch.Tensor | None = None) -> torch.Tensor:
    """Forecasts ``[..., Q]`` sorted along the level axis; ``levels`` ``[Q]``, if given, must be ascending."""
    if levels is not None and bool((levels[1:] <= levels[:-1]).any()):
        raise ValueError("rearrangement needs the levels in ascending order")
    return prediction.sort(dim=-1).values
