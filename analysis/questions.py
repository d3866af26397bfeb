"""The attention study's questions, asked of attention on held-out windows through the generators'
hidden state.

All functions take the attention of one layer, ``attention [W, heads, T, T]`` (W windows, rows
attending, columns attended), and per-window facts aligned with the T input points:

- :func:`event_lift` — do heads over-react to spikes? The attention events (large shocks, jumps,
  outliers) receive, divided by what a point at the same position receives in windows without an
  event there. Position-matched, because attention depends strongly on position (recent points get
  more): 1 = an event is attended like any point, 3 = three times as much.
- :func:`group_contrast` — is attention more concentrated in turbulent periods? A per-window metric
  averaged over the windows with the lowest and the highest ``share`` of a score (e.g. GARCH
  volatility).
- :func:`post_change_lift` — does the model follow a regime change? The attention on the points after
  the last change in a window, divided by what the same span receives in windows without a change,
  binned by how long ago the change happened. > 1: attention moves to the new regime.
- :func:`error_by_time_since_change` — does the forecast recover? Held-out MSE of windows binned by
  the time since the last change in their input (and of windows without one), divided by the mean
  MSE of all windows.
"""

from __future__ import annotations

import numpy as np

# Time-since-change bins (points since the last change, inclusive ranges) for the recovery questions;
# they cover inputs of up to 100 points (a change at position 0 does not count), the study's input length.
CHANGE_BINS = ((1, 5), (6, 20), (21, 50), (51, 99))


def received(attention: np.ndarray) -> np.ndarray:
    """[W, heads, T, T] -> [W, heads, T]: the mean attention each key receives over the attending rows."""
    return np.asarray(attention, dtype=np.float64).mean(axis=-2)


def event_lift(attention: np.ndarray, events: np.ndarray) -> np.ndarray:
    """Per head: attention received by event keys ÷ attention received at the same positions without an event.

    ``events`` [W, T] bool. Events at a position where every window has one are left out (nothing to
    compare with). Returns [heads], NaN when no event is left."""
    got = received(attention)  # [W, N, T]
    events = np.asarray(events, dtype=bool)
    quiet = ~events
    quiet_count = quiet.sum(axis=0)  # [T]
    baseline = (got * quiet[:, None, :]).sum(axis=0) / np.maximum(
        quiet_count, 1
    )  # [N, T]: mean at each position without an event
    usable = events & (quiet_count > 0)[None, :]  # [W, T]
    if not usable.any():
        return np.full(got.shape[1], np.nan)
    windows, positions = np.nonzero(usable)
    return got[windows, :, positions].sum(axis=0) / baseline[:, positions].sum(axis=1)


def group_contrast(per_window: np.ndarray, score: np.ndarray, share: float = 0.25) -> dict[str, np.ndarray]:
    """Mean of ``per_window`` [W, ...] over the windows with the lowest and the highest ``share`` of ``score`` [W]."""
    if not 0 < share <= 0.5:
        raise ValueError(f"share must be in (0, 0.5], got {share}")
    order = np.argsort(score, kind="stable")
    count = max(1, int(round(share * len(order))))
    values = np.asarray(per_window, dtype=np.float64)
    return {"low": values[order[:count]].mean(axis=0), "high": values[order[-count:]].mean(axis=0)}


def calm_vs_turbulent(name: str, per_window: np.ndarray, volatility: np.ndarray) -> dict[str, list]:
    """``{name}_calm`` / ``{name}_turbulent``: the mean of ``per_window`` [W, ...] over the calmest and the
    most turbulent quarter of the windows by ``volatility`` [W] (see :func:`group_contrast`)."""
    contrast = group_contrast(per_window, volatility)
    return {f"{name}_calm": contrast["low"].tolist(), f"{name}_turbulent": contrast["high"].tolist()}


def last_change(changes: np.ndarray) -> np.ndarray:
    """[W, T] bool (a change at t: the new regime starts at t) -> [W] position of the last change after
    the first point, -1 where there is none (a change at position 0 changes nothing inside the window)."""
    changes = np.asarray(changes, dtype=bool).copy()
    changes[:, 0] = False
    T = changes.shape[1]
    last = T - 1 - np.argmax(changes[:, ::-1], axis=1)
    return np.where(changes.any(axis=1), last, -1)


def post_change_lift(attention: np.ndarray, change_at: np.ndarray) -> dict[str, np.ndarray]:
    """Attention on the points from the last change on, ÷ the same for windows without a change.

    ``change_at`` [W] from :func:`last_change`. Returns, per bin of :data:`CHANGE_BINS` (keyed "a-b"
    points since the change), the lift per head [heads] (NaN for an empty bin) and the count of windows."""
    got = received(attention)  # [W, N, T]
    T = got.shape[-1]
    tail_mass = np.cumsum(got[..., ::-1], axis=-1)[..., ::-1]  # [W, N, T]: mass on keys c..T-1 for every c
    calm = change_at < 0
    result: dict[str, np.ndarray] = {}
    for low, high in CHANGE_BINS:
        since = T - change_at  # points from the change to the end of the input, the change included
        chosen = np.flatnonzero(~calm & (since >= low) & (since <= high))
        key = f"{low}-{high}"
        if not len(chosen) or not calm.any():
            result[key] = np.full(got.shape[1], np.nan)
        else:
            starts = change_at[chosen]
            baseline = tail_mass[calm][:, :, starts].mean(axis=0)  # [N, chosen]: same span, no change
            result[key] = tail_mass[chosen, :, starts].sum(axis=0) / baseline.sum(axis=1)
        result[f"{key} windows"] = np.array(len(chosen))
    return result


def error_by_time_since_change(squared_error: np.ndarray, change_at: np.ndarray, input_length: int) -> dict[str, float]:
    """Mean ``squared_error`` [W] of the windows in each :data:`CHANGE_BINS` bin, and of those without a
    change ("none"), each ÷ the mean over all windows (NaN for an empty bin)."""
    reference = squared_error.mean()
    since = input_length - change_at
    groups = {f"{low}-{high}": (change_at >= 0) & (since >= low) & (since <= high) for low, high in CHANGE_BINS}
    groups["none"] = change_at < 0
    return {
        key: float(squared_error[chosen].mean() / reference) if chosen.any() else float("nan")
        for key, chosen in groups.items()
    }
