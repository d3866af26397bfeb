"""analysis/questions.py on hand-made attention with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.questions import (
    error_by_time_since_change,
    event_lift,
    group_contrast,
    last_change,
    post_change_lift,
    received,
)


def rows_equal(distributions) -> np.ndarray:
    """[W, T] key distributions -> attention [W, 1 head, T, T] whose every row is the window's distribution."""
    p = np.asarray(distributions, dtype=np.float64)
    return np.repeat(p[:, None, None, :], p.shape[1], axis=2)


def test_received_is_the_mean_over_attending_rows():
    a = np.zeros((1, 1, 2, 2))
    a[0, 0] = [[1.0, 0.0], [0.5, 0.5]]
    np.testing.assert_allclose(received(a)[0, 0], [0.75, 0.25])


def test_event_lift_is_attention_on_events_over_the_same_positions_without_events():
    p = np.full((4, 5), 0.2)
    p[0] = [0.1, 0.1, 0.4, 0.2, 0.2]  # window 0 gives its event at key 2 twice the usual 0.2
    events = np.zeros((4, 5), dtype=bool)
    events[0, 2] = True
    assert event_lift(rows_equal(p), events) == pytest.approx([2.0])


def test_event_lift_matches_by_position():
    # Every window favours recent keys alike; an event at the most recent key gets what any point there
    # gets: lift 1, where a comparison with the uniform share 1/5 would have said 2.
    p = np.tile([0.1, 0.1, 0.2, 0.2, 0.4], (3, 1))
    events = np.zeros((3, 5), dtype=bool)
    events[1, 4] = True
    assert event_lift(rows_equal(p), events) == pytest.approx([1.0])
    assert np.isnan(event_lift(rows_equal(p), np.zeros((3, 5), dtype=bool))).all()


def test_group_contrast_takes_the_lowest_and_highest_quarter():
    values = np.arange(8.0)  # per-window metric
    score = values[::-1].copy()  # the highest score has the lowest value
    contrast = group_contrast(values, score, share=0.25)
    assert contrast["low"] == pytest.approx(6.5) and contrast["high"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="share"):
        group_contrast(values, score, share=0.7)


def test_last_change_ignores_the_first_point():
    changes = np.zeros((3, 6), dtype=bool)
    changes[0, [1, 4]] = True
    changes[1, 0] = True  # a change at the window's first point: nothing changes inside it
    np.testing.assert_array_equal(last_change(changes), [4, -1, -1])


def test_post_change_lift_by_hand():
    T = 10
    p = np.full((3, T), 0.1)  # two calm windows attend uniformly: the last 3 keys get 0.3
    p[0] = 0.0
    p[0, 7:] = 1 / 3  # the changed window puts all its attention on the 3 points since its change
    lift = post_change_lift(rows_equal(p), np.array([7, -1, -1]))
    assert lift["1-5"] == pytest.approx([1 / 0.3]) and int(lift["1-5 windows"]) == 1
    assert np.isnan(lift["6-20"]).all() and int(lift["6-20 windows"]) == 0


def test_error_by_time_since_change_by_hand():
    errors = np.array([4.0, 1.0, 3.0, 8.0])  # mean 4
    change_at = np.array([97, -1, -1, 50])  # 3 and 50 points since the change; calm windows' mean 2
    ratios = error_by_time_since_change(errors, change_at, input_length=100)
    assert (
        ratios["1-5"] == pytest.approx(1.0)
        and ratios["21-50"] == pytest.approx(2.0)
        and ratios["none"] == pytest.approx(0.5)
    )
    assert np.isnan(ratios["6-20"])
