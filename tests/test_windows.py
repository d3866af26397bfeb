"""Windows, splits, batch gathering, past-only filling and the index batch sampler."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from anyquantile.dataset.calendar import calendar_features
from anyquantile.dataset.datamodule import IndexBatchSampler
from anyquantile.dataset.panel import HourlyPanel
from anyquantile.dataset.splits import SplitBoundaries, make_splits
from anyquantile.dataset.windows import WindowBatches, WindowIndex, WindowShape, fill_from_past, split_windows


def make_panel(values, start: str = "2021-01-01 00:00") -> HourlyPanel:
    values = np.asarray(values, dtype=np.float32)
    if values.ndim == 1:
        values = values[None]
    timestamps = pd.date_range(start, periods=values.shape[1], freq="h")
    return HourlyPanel(tuple(f"s{i}" for i in range(values.shape[0])), timestamps, values)


@pytest.fixture
def panel() -> HourlyPanel:
    """Three series over 30 days with a few gaps (a long one in s1, a leading one in s2)."""
    rng = np.random.default_rng(7)
    values = rng.normal(100.0, 10.0, size=(3, 30 * 24)).astype(np.float32)
    values[0, [5, 6, 100, 333]] = np.nan
    values[1, 200:260] = np.nan
    values[2, :50] = np.nan
    values[2, 400:403] = np.nan
    return make_panel(values, start="2021-01-04 00:00")  # a Monday, midnight


def window_set(windows: WindowIndex) -> set[tuple[int, int]]:
    return set(zip(windows.series.tolist(), windows.origin.tolist()))


# --------------------------------------------------------------------------------------------
# split_windows
# --------------------------------------------------------------------------------------------


def test_origins_start_at_split_start_and_step(panel):
    shape = WindowShape(history_length=48, horizon=24)
    start, end, step = 100, 500, 7
    full = make_panel(np.ones((1, panel.num_hours)))
    windows = split_windows(full, shape, start, end, step)
    expected = np.arange(start, end - shape.horizon + 1, step)
    np.testing.assert_array_equal(windows.origin, expected)
    np.testing.assert_array_equal(windows.series, np.zeros(len(expected)))
    assert windows.origin.dtype == np.int64 and windows.series.dtype == np.int64


def test_every_target_inside_split_and_history_may_start_before(panel):
    shape = WindowShape(history_length=72, horizon=24)
    start, end = 100, 500
    windows = split_windows(panel, shape, start, end, step=5)
    assert len(windows) > 0
    assert (windows.origin >= start).all()
    assert (windows.origin + shape.horizon <= end).all()
    assert ((windows.origin - shape.history_length) >= 0).all()
    assert ((windows.origin - shape.history_length) < start).any()  # history reaches back before start
    assert (np.diff(np.unique(windows.origin)) % 5 == 0).all()
    assert ((windows.origin - start) % 5 == 0).all()


def test_last_origin_fills_split_exactly():
    shape = WindowShape(history_length=4, horizon=3)
    windows = split_windows(make_panel(np.ones(20)), shape, start=4, end=20, step=1)
    assert windows.origin.max() == 20 - 3
    assert windows.origin.min() == 4


def test_split_start_before_history_fits_keeps_phase():
    shape = WindowShape(history_length=10, horizon=2)
    windows = split_windows(make_panel(np.ones(60)), shape, start=0, end=60, step=4)
    # history must fit on the grid: first origin >= 10, on the phase of start (multiples of 4)
    np.testing.assert_array_equal(windows.origin, np.arange(12, 59, 4))


def test_eval_step_24_from_midnight_gives_midnight_origins(panel):
    shape = WindowShape(history_length=168, horizon=24)
    start = panel.hour_index("2021-01-10 00:00")
    windows = split_windows(panel, shape, start, panel.num_hours, step=24)
    assert len(windows) > 0
    hours_of_day = panel.timestamps[windows.origin].hour
    assert (hours_of_day == 0).all()
    # also when the split starts before the first hour a history fits
    early = split_windows(panel, shape, 0, panel.num_hours, step=24)
    assert (panel.timestamps[early.origin].hour == 0).all()
    assert early.origin.min() == 168


def test_entirely_missing_target_drops_window():
    values = np.ones(40)
    values[20:24] = np.nan  # the whole target of origin 20 with horizon 4
    shape = WindowShape(history_length=8, horizon=4)
    kept = set(split_windows(make_panel(values), shape, 8, 40, step=1).origin.tolist())
    assert 20 not in kept
    # a target with at least one observed hour is kept
    assert {17, 18, 19, 21, 22, 23} <= kept
    assert kept == set(range(8, 37)) - {20}


def test_mostly_missing_history_drops_window():
    values = np.ones(40)
    values[10:16] = np.nan  # 6 missing hours
    shape = WindowShape(history_length=8, horizon=2)
    panel = make_panel(values)
    half = set(split_windows(panel, shape, 8, 40, step=1, min_observed_history=0.5).origin.tolist())
    # origin t has history [t-8, t); observed count = 8 - |[t-8, t) & [10, 16)|
    gap = set(range(10, 16))
    observed = {t: 8 - len(set(range(t - 8, t)) & gap) for t in range(8, 39)}
    target_seen = {t for t in range(8, 39) if not {t, t + 1} <= gap}
    assert half == {t for t, n in observed.items() if n >= 4} & target_seen
    assert 16 in target_seen and 17 in target_seen
    assert 16 not in half and 17 not in half  # only 2 and 3 of 8 observed, though the target is
    assert 19 not in half and 20 in half  # 3, then 4 of 8 observed: exactly half is enough
    full = set(split_windows(panel, shape, 8, 40, step=1, min_observed_history=1.0).origin.tolist())
    assert full == {t for t, n in observed.items() if n == 8} & target_seen
    assert min(t for t in full if t > 10) == 24


def test_split_windows_matches_brute_force(panel):
    shape = WindowShape(history_length=24, horizon=12)
    start, end, step, share = 30, 600, 3, 0.75
    windows = split_windows(panel, shape, start, end, step, min_observed_history=share)
    expected = set()
    observed = np.isfinite(panel.values)
    for s in range(panel.num_series):
        for t in range(start, end - shape.horizon + 1, step):
            if t < shape.history_length:
                continue
            history = observed[s, t - shape.history_length : t].sum()
            target = observed[s, t : t + shape.horizon].sum()
            if history >= share * shape.history_length and target > 0:
                expected.add((s, t))
    assert window_set(windows) == expected
    assert len(windows) == len(expected)  # no duplicates
    # windows were dropped somewhere (s1's long gap, s2's leading gap)
    assert len(expected) < panel.num_series * len(range(start, end - shape.horizon + 1, step))


def test_split_windows_rejects_bad_arguments(panel):
    shape = WindowShape(4, 2)
    with pytest.raises(ValueError, match="step"):
        split_windows(panel, shape, 0, 100, step=0)
    with pytest.raises(ValueError, match="min_observed_history"):
        split_windows(panel, shape, 0, 100, step=1, min_observed_history=0.0)
    with pytest.raises(ValueError, match="positive"):
        WindowShape(0, 2)


def test_split_too_short_gives_no_windows(panel):
    windows = split_windows(panel, WindowShape(24, 24), 100, 123, step=1)
    assert len(windows) == 0


# --------------------------------------------------------------------------------------------
# make_splits / SplitBoundaries
# --------------------------------------------------------------------------------------------


BOUNDARIES = SplitBoundaries(val_start="2021-01-20 00:00", test_start="2021-01-27 00:00")


def test_no_target_leakage_between_splits(panel):
    shape = WindowShape(history_length=48, horizon=24)
    splits = make_splits(panel, shape, BOUNDARIES, train_step=1, eval_step=24, min_observed_history=0.5)
    assert set(splits) == {"train", "val", "test"}
    val_start, test_start = panel.hour_index(BOUNDARIES.val_start), panel.hour_index(BOUNDARIES.test_start)
    assert panel.timestamps[val_start] == pd.Timestamp(BOUNDARIES.val_start)

    def target_hours(windows):
        return windows.origin[:, None] + np.arange(shape.horizon)

    train, val, test = (target_hours(splits[name]) for name in ("train", "val", "test"))
    assert train.max() < val_start
    assert val.min() >= val_start and val.max() < test_start
    assert test.min() >= test_start and test.max() < panel.num_hours
    # the timestamps say the same
    assert panel.timestamps[train.max()] < pd.Timestamp(BOUNDARIES.val_start)
    assert panel.timestamps[val.min()] >= pd.Timestamp(BOUNDARIES.val_start)
    assert panel.timestamps[test.min()] >= pd.Timestamp(BOUNDARIES.test_start)
    # train uses step 1, eval splits step 24 from midnight
    assert np.diff(np.unique(splits["train"].origin)).min() == 1
    assert (panel.timestamps[splits["val"].origin].hour == 0).all()
    assert (panel.timestamps[splits["test"].origin].hour == 0).all()
    # the last train window ends right at val_start (nothing is lost at the border)
    assert train.max() == val_start - 1


def test_hour_ranges():
    panel = make_panel(np.ones(100), start="2021-01-01 00:00")
    ranges = SplitBoundaries(
        val_start="2021-01-02 00:00",
        train_start="2021-01-01 05:00",
        test_start="2021-01-03 00:00",
        test_end="2021-01-04 00:00",
    ).hour_ranges(panel)
    assert ranges == {"train": (5, 24), "val": (24, 48), "test": (48, 72)}
    no_test = SplitBoundaries(val_start="2021-01-02 00:00").hour_ranges(panel)
    assert no_test == {"train": (0, 24), "val": (24, 100)}
    val_end = SplitBoundaries(val_start="2021-01-02 00:00", test_end="2021-01-03 00:00").hour_ranges(panel)
    assert val_end == {"train": (0, 24), "val": (24, 48)}


@pytest.mark.parametrize(
    "dates, names",
    [
        (dict(val_start="2021-01-10", test_start="2021-01-05"), "val_start.*test_start"),
        (dict(val_start="2021-01-10", test_start="2021-01-10"), "val_start.*test_start"),
        (dict(val_start="2021-01-10", train_start="2021-01-12"), "train_start.*val_start"),
        (dict(val_start="2021-01-10", test_start="2021-01-15", test_end="2021-01-12"), "test_start.*test_end"),
        (dict(val_start="2021-01-10", test_end="2021-01-08"), "val_start.*test_end"),
    ],
)
def test_boundaries_out_of_order_raise(dates, names):
    with pytest.raises(ValueError, match="out of order.*" + names):
        SplitBoundaries(**dates)


def test_a_boundary_that_is_no_date_raises_naming_it():
    with pytest.raises(ValueError, match="test_start='soon' is not a date"):
        SplitBoundaries(val_start="2021-01-10", test_start="soon")


def test_split_without_windows_raises_naming_it(panel):
    shape = WindowShape(history_length=48, horizon=24)
    too_late = SplitBoundaries(val_start="2021-01-20 00:00", test_start="2021-02-02 12:00")  # 12 h of test left
    with pytest.raises(ValueError, match=r"the test split .*has no windows"):
        make_splits(panel, shape, too_late, 1, 24, 0.5)
    after_data = SplitBoundaries(val_start="2021-03-01 00:00")  # past the last hour: empty val split
    with pytest.raises(ValueError, match=r"the val split .*has no windows"):
        make_splits(panel, shape, after_data, 1, 24, 0.5)
    no_train = SplitBoundaries(val_start="2021-01-05 00:00")  # 24 h of train, but 48 h of history needed
    with pytest.raises(ValueError, match=r"the train split .*has no windows"):
        make_splits(panel, shape, no_train, 1, 24, 0.5)


# --------------------------------------------------------------------------------------------
# fill_from_past
# --------------------------------------------------------------------------------------------


def test_fill_from_past_hand_example():
    nan = np.nan
    values = np.array(
        [
            [nan, nan, 3, nan, 5],
            [1, nan, nan, 4, nan],
            [nan, nan, nan, nan, nan],
            [2, 3, 4, 5, 6],
        ],
        dtype=np.float32,
    )
    filled = fill_from_past(values)
    assert filled.dtype == np.float32
    np.testing.assert_array_equal(filled[:2], [[3, 3, 3, 3, 5], [1, 1, 1, 4, 4]])
    assert np.isnan(filled[2]).all()  # nothing to fill from
    np.testing.assert_array_equal(filled[3], values[3])
    assert np.isnan(values[0, 0])  # the input is not changed


def test_fill_from_past_never_uses_the_future_after_the_first_observation():
    rng = np.random.default_rng(3)
    values = rng.normal(size=(4, 300)).astype(np.float32)
    values[rng.random(values.shape) < 0.3] = np.nan
    values[1, :40] = np.nan
    filled = fill_from_past(values)
    for s in range(values.shape[0]):
        first = int(np.flatnonzero(np.isfinite(values[s]))[0])
        for t in range(values.shape[1]):
            if t < first:
                assert filled[s, t] == values[s, first]
            else:
                last = max(u for u in range(t + 1) if np.isfinite(values[s, u]))
                assert filled[s, t] == values[s, last]
        # changing the future (after t) never changes the filled value at t >= first
        changed = values.copy()
        changed[s, 150:] = 1e6
        np.testing.assert_array_equal(fill_from_past(changed)[s, first:150], filled[s, first:150])


# --------------------------------------------------------------------------------------------
# WindowBatches
# --------------------------------------------------------------------------------------------


def test_window_batches_match_hand_slicing(panel):
    shape = WindowShape(history_length=36, horizon=12)
    windows = split_windows(panel, shape, 40, panel.num_hours, step=5, min_observed_history=0.5)
    batches = WindowBatches(panel, shape, windows)
    assert len(batches) == len(windows)

    # forward fill, then back fill of the leading gap only, computed independently with pandas
    filled = pd.DataFrame(panel.values.T).ffill().bfill().to_numpy().T
    calendar = calendar_features(panel.timestamps)

    # windows with gaps in history and target, plus a few plain ones
    observed = np.isfinite(panel.values)
    gappy = [
        i
        for i, (s, t) in enumerate(zip(windows.series, windows.origin))
        if not observed[s, t - shape.history_length : t + shape.horizon].all()
    ]
    assert len(gappy) >= 3
    picks = [0, len(windows) - 1, len(windows) // 2] + gappy[:2] + gappy[-2:]
    batch = batches[torch.tensor(picks)]

    assert batch.history.shape == (len(picks), 36)
    assert batch.target.shape == (len(picks), 12)
    assert batch.calendar.shape == (len(picks), 48, calendar.shape[1])
    assert batch.history_mask.dtype == torch.bool and batch.target_mask.dtype == torch.bool
    for row, i in enumerate(picks):
        s, t = int(windows.series[i]), int(windows.origin[i])
        history = panel.values[s, t - 36 : t]
        target = panel.values[s, t : t + 12]
        assert int(batch.series[row]) == s and int(batch.origin[row]) == t
        np.testing.assert_array_equal(batch.history[row].numpy(), filled[s, t - 36 : t].astype(np.float32))
        np.testing.assert_array_equal(batch.history_mask[row].numpy(), np.isfinite(history))
        np.testing.assert_array_equal(batch.target_mask[row].numpy(), np.isfinite(target))
        np.testing.assert_array_equal(batch.target[row].numpy(), np.where(np.isfinite(target), target, 0.0))
        np.testing.assert_array_equal(batch.calendar[row].numpy(), calendar[t - 36 : t + 12])
        # observed history hours are the raw values
        mask = np.isfinite(history)
        np.testing.assert_array_equal(batch.history[row].numpy()[mask], history[mask])
        assert torch.isfinite(batch.history[row]).all() and torch.isfinite(batch.target[row]).all()


def test_window_batches_accept_lists_and_scalars(panel):
    shape = WindowShape(24, 6)
    windows = split_windows(panel, shape, 24, panel.num_hours, step=24)
    batches = WindowBatches(panel, shape, windows)
    one = batches[torch.tensor(3)]
    assert one.history.shape == (1, 24)
    as_list = batches[[3, 1]]
    np.testing.assert_array_equal(as_list.origin.numpy(), windows.origin[[3, 1]])


# --------------------------------------------------------------------------------------------
# IndexBatchSampler
# --------------------------------------------------------------------------------------------


def flatten(batches) -> list[int]:
    batches = list(batches)
    return torch.cat(batches).tolist() if batches else []


@pytest.mark.parametrize("shuffle", [True, False])
def test_sampler_every_index_once_per_epoch(shuffle):
    sampler = IndexBatchSampler(103, batch_size=10, shuffle=shuffle, seed=5)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == 11
        assert all(len(b) == 10 for b in batches[:-1]) and len(batches[-1]) == 3
        assert sorted(flatten(batches)) == list(range(103))
    if not shuffle:
        assert flatten(sampler) == list(range(103))


def test_sampler_order_is_seeded_by_seed_and_epoch():
    def order(seed, epoch):
        sampler = IndexBatchSampler(500, batch_size=64, shuffle=True, seed=seed)
        sampler.set_epoch(epoch)
        return flatten(sampler)

    assert order(1, 0) == order(1, 0)
    assert order(1, 4) == order(1, 4)
    assert order(1, 0) != order(1, 1)
    assert order(1, 0) != order(2, 0)
    assert order(1, 0) != list(range(500))


@pytest.mark.parametrize("num_items, batch_size", [(100, 10), (95, 10), (7, 3), (1, 4)])
def test_sampler_ranks_are_disjoint_and_cover_everything(num_items, batch_size):
    # Evaluation (no shuffle): every window exactly once across the ranks.
    eval_samplers = [IndexBatchSampler(num_items, batch_size, shuffle=False, rank=r, world_size=2) for r in range(2)]
    ranks = [flatten(sampler) for sampler in eval_samplers]
    assert not set(ranks[0]) & set(ranks[1])
    assert sorted(ranks[0] + ranks[1]) == list(range(num_items))
    for sampler, share in zip(eval_samplers, ranks):
        assert len(list(sampler)) == len(sampler)
        # a contiguous share: no rank is left without windows while there are enough (Lightning
        # refuses a rank whose loader is empty), even when all windows fit in one batch
        assert share == sorted(share) and (len(share) >= 1 or num_items < 2)

    # Training (shuffle): ranks shard one shared order into equal batch counts, disjoint, and
    # drop at most the last (world_size - 1) batches of the epoch.
    samplers = [IndexBatchSampler(num_items, batch_size, shuffle=True, seed=11, rank=r, world_size=2) for r in range(2)]
    shards = []
    for sampler in samplers:
        sampler.set_epoch(2)
        batches = list(sampler)
        assert len(batches) == len(sampler) == len(samplers[0])
        shards.append(flatten(batches) if batches else [])
    assert not set(shards[0]) & set(shards[1])
    single = IndexBatchSampler(num_items, batch_size, shuffle=True, seed=11)
    single.set_epoch(2)
    all_batches = list(single)
    assert (flatten(all_batches[0::2][: len(samplers[0])]) if len(samplers[0]) else []) == shards[0]
    assert len(shards[0]) + len(shards[1]) >= num_items - batch_size


def test_sampler_rejects_bad_batch_size():
    with pytest.raises(ValueError, match="batch_size"):
        IndexBatchSampler(10, batch_size=0, shuffle=False)


def test_history_threshold_is_exact_for_fractions_that_do_not_round_trip():
    # 0.55 * 100 evaluates to 55.000000000000007: a window with exactly 55 observed hours must be kept.
    values = np.full((1, 200), 1.0, dtype=np.float32)
    values[0, :45] = np.nan
    panel = HourlyPanel(("a",), pd.date_range("2021-01-01", periods=200, freq="h"), values)
    windows = split_windows(panel, WindowShape(100, 10), start=100, end=110, step=10, min_observed_history=0.55)
    assert list(windows.origin) == [100]
