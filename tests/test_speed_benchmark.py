"""benchmarks/speed.py end to end on a tiny model: every table row is written, with finite numbers
(nothing here compares a time with anything), and the FLOP count by hand."""

from __future__ import annotations

import math

import pytest
import torch

from benchmarks import speed
from benchmarks.speed import EVAL_LEVELS, Subject, flops_per_sample, matmul_peak

TINY = (
    "dataset.synthetic.num_series=2",
    "dataset.synthetic.num_hours=2880",
    "dataset.val_start=2015-03-15",
    "dataset.test_start=2015-04-10",
    "dataset.batch_size=32",
    "model.num_blocks=2",
    "model.width=16",
    "model.attention.d_model=16",
)


def numbers(row: str) -> list[float]:
    values = []
    for cell in row.strip("|").split("|")[1:]:
        text = cell.strip().rstrip("x %").replace(",", "")
        try:
            values.append(float(text))
        except ValueError:
            pass
    return values


def test_speed_benchmark_prints_every_row(capsys):
    speed.main(
        [
            "--models",
            "out",
            "attention",
            "--precisions",
            "32-true",
            "bf16-mixed",
            "--steps",
            "6",
            "--loader-batches",
            "2",
            "--eval-windows",
            "8",
            *TINY,
        ]
    )
    lines = capsys.readouterr().out.splitlines()
    training = [line for line in lines if line.startswith("| base OUT") or line.startswith("| adaptive attention")]
    assert len(training) == 2 * 2 + 2  # 2 models x 2 precisions, then 2 evaluation rows
    for row in training[:4]:  # params, loader, Lightning path, step alone, plain loop, GFLOP/s, % of peak
        values = numbers(row)
        assert len(values) == 7 and all(v >= 0 and math.isfinite(v) for v in values), row
        assert all(rate > 0 for rate in values[1:5]), row  # loader, Lightning path, step alone, plain loop
    for row in training[4:]:  # milliseconds at each level count, and the ratio
        values = numbers(row)
        assert len(values) == len(EVAL_LEVELS) + 1 and all(v > 0 and math.isfinite(v) for v in values[:-1]), row
    assert f"| {EVAL_LEVELS[-1]} ÷ 1 |" in "\n".join(lines)


def test_zero_evaluation_windows_skip_the_evaluation_table(capsys):
    speed.main(
        [
            "--models",
            "out",
            "--precisions",
            "32-true",
            "--steps",
            "6",
            "--loader-batches",
            "2",
            "--eval-windows",
            "0",
            *TINY,
        ]
    )
    out = capsys.readouterr().out
    assert "| base OUT" in out and "Evaluation" not in out
    with pytest.raises(SystemExit):
        speed.main(["--models", "out", "--eval-windows", "-1"])
    assert "--eval-windows must be 0" in capsys.readouterr().err


def test_flops_per_sample_counts_the_out_model_by_hand():
    """Forward + backward matmul FLOPs of a 1-block OUT model with identity level embedding, by hand."""
    model = Subject(
        "out",
        (
            *TINY,
            "model.num_blocks=1",
            "model.num_layers=1",
            "model.use_calendar=false",
            "model.use_history_mask=false",
            "model.quantile_embedding=identity",
            "model.quantile_embedding_dim=1",
        ),
    )
    T, H, D = 168, 48, 16
    stack = (
        T * D + D * T + D * H
    )  # the plain block: first layer, backcast (the level read-out reads the residual), forecast head
    level_readout = T * D + D * H + 1 * 2 * D  # its one layer, forecast head, FiLM generator (1 level per sample)
    forward = 2 * (stack + level_readout)  # 2 FLOPs per multiply-add
    # backward: for every matmul the weight gradient and the input gradient, except the input gradients
    # that nothing needs: the stack's first layer (its input is the history) and the FiLM generator (the levels)
    backward = 2 * forward - 2 * (T * D + 2 * D)
    assert flops_per_sample(model, batch_size=4) == pytest.approx(forward + backward)


def test_matmul_peak_is_positive():
    assert matmul_peak(torch.float32, size=64, repeats=2) > 0
    assert matmul_peak(torch.bfloat16, size=128, repeats=2) > 0


def test_matmul_peak_stops_growing_the_size_once_a_product_is_slow(monkeypatch):
    """Where bf16 is emulated a 2048² product takes most of a minute: the peak is measured at the first
    size whose product takes over ``slow_seconds``."""
    sizes = []
    real = speed._square_matrices

    def recording(n, dtype):
        sizes.append(n)
        return real(n, dtype)

    monkeypatch.setattr(speed, "_square_matrices", recording)
    matmul_peak(torch.float32, size=2048, repeats=1, slow_seconds=float("inf"))  # never slow: every size up to 2048
    assert sorted(set(sizes)) == [256, 512, 1024, 2048]  # the last one measured
    sizes.clear()
    matmul_peak(torch.float32, size=2048, repeats=1, slow_seconds=0.0)  # always slow: the first size
    assert sorted(set(sizes)) == [256]
