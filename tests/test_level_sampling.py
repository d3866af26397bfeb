"""The level samplers (modules/level_sampling.py): uniform and beta draws; the adaptive sampler's probabilities,
what it learns, importance weights, state, DDP; bad settings."""

from __future__ import annotations

import math
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from anyquantile.modules.level_sampling import (
    AdaptiveLevelSampler,
    BetaLevelSampler,
    LevelDraw,
    SamplerConfig,
    UniformLevelSampler,
    build_level_sampler,
)
from anyquantile.modules.losses import pinball

CPU = torch.device("cpu")


def adaptive_sampler(**options) -> AdaptiveLevelSampler:
    """An adaptive sampler of 8 levels per sample unless ``options`` say otherwise."""
    return AdaptiveLevelSampler(SamplerConfig(kind="adaptive", **{"levels_per_sample": 8, **options}))


def all_observed(batch: int, horizon: int) -> torch.Tensor:
    return torch.ones(batch, horizon, dtype=torch.bool)


def gaussian_forecast(levels: torch.Tensor, horizon: int, sigma: float = 1.0) -> torch.Tensor:
    """The q-quantiles of N(0, sigma^2) for every step, ``[B, H, Q]``."""
    return (sigma * torch.special.ndtri(levels.double()))[:, None, :].expand(-1, horizon, -1)


def set_state(sampler: AdaptiveLevelSampler, loss: list[float], count: float = 1.0) -> None:
    sampler.bin_loss.copy_(torch.tensor(loss))
    sampler.bin_count.fill_(count)


# --------------------------------------------------------------------------------------------
# Uniform and beta levels


def test_uniform_level_sampler_shape_range_and_mean():
    torch.manual_seed(0)
    draw = UniformLevelSampler(SamplerConfig(levels_per_sample=3))(20000, torch.device("cpu"))
    assert isinstance(draw, LevelDraw) and draw.weights is None
    assert draw.levels.shape == (20000, 3)
    assert ((draw.levels > 0) & (draw.levels < 1)).all()
    # sd of the mean of 60000 uniforms is sqrt(1/12 / 60000) ~ 0.0012
    assert draw.levels.mean().item() == pytest.approx(0.5, abs=0.01)
    assert draw.levels.var().item() == pytest.approx(1 / 12, abs=0.005)


@pytest.mark.parametrize("alpha, beta", [(0.5, 0.5), (2.0, 5.0), (5.0, 1.0)])
def test_beta_level_sampler_shape_range_and_mean(alpha, beta):
    torch.manual_seed(1)
    draw = BetaLevelSampler(SamplerConfig(kind="beta", levels_per_sample=2, alpha=alpha, beta=beta))(
        20000, torch.device("cpu")
    )
    assert draw.levels.shape == (20000, 2)
    assert ((draw.levels > 0) & (draw.levels < 1)).all()
    # Beta variance <= 1/4 / (alpha + beta + 1) <= 1/8 here: sd of the mean of 40000 draws < 0.002
    assert draw.levels.mean().item() == pytest.approx(alpha / (alpha + beta), abs=0.01)


def test_beta_level_sampler_stays_inside_the_open_interval_for_tiny_concentration():
    # Beta(0.01, 0.01) puts almost all its mass at 0 and 1: float32 draws round to exactly 0 or 1
    torch.manual_seed(2)
    levels = BetaLevelSampler(SamplerConfig(kind="beta", levels_per_sample=4, alpha=0.01, beta=0.01))(
        5000, torch.device("cpu")
    ).levels
    assert ((levels > 0) & (levels < 1)).all()
    assert (levels < 1e-6).any() and (levels > 1 - 1e-6).any()
    # the sampler keeps them at least one float32 epsilon away from either end
    eps = torch.finfo(torch.float32).eps
    assert levels.min() >= eps and levels.max() <= 1 - eps


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(levels_per_sample=0), "levels_per_sample must be >= 1"),
        (dict(kind="beta", levels_per_sample=0), "levels_per_sample must be >= 1"),
        (dict(kind="beta", alpha=0.0), "Beta parameters must be positive"),
        (dict(kind="beta", beta=-1.0), "Beta parameters must be positive"),
        (dict(kind="beta", beta=0.0), "Beta parameters must be positive"),  # the boundaries themselves
        (dict(fixed_levels=[0.0]), r"fixed levels must be in \(0, 1\)"),
        (dict(fixed_levels=[1.0]), r"fixed levels must be in \(0, 1\)"),
    ],
)
def test_level_samplers_reject_bad_parameters(settings, message):
    with pytest.raises(ValueError, match=message):
        SamplerConfig(**settings)


def test_build_level_sampler_of_uniform_and_beta():
    uniform = build_level_sampler(SamplerConfig(levels_per_sample=3))
    assert isinstance(uniform, UniformLevelSampler) and uniform.levels_per_sample == 3
    beta = build_level_sampler(SamplerConfig(kind="beta", levels_per_sample=2, alpha=2.0, beta=5.0))
    assert isinstance(beta, BetaLevelSampler) and beta.levels_per_sample == 2
    assert beta.concentration.tolist() == [2.0, 5.0]


# --------------------------------------------------------------------------------------------
# Probabilities


@pytest.mark.parametrize("temperature", [0.05, 1.0, 20.0])
@pytest.mark.parametrize("min_prob", [0.0, 0.02, 0.1, 0.25])
def test_probabilities_sum_to_one_and_respect_the_floor(temperature, min_prob):
    sampler = adaptive_sampler(num_bins=4, temperature=temperature, min_prob=min_prob, weakness="raw")
    set_state(sampler, [100.0, 1.0, 0.001, 5.0])  # one bin far weaker than the rest
    p = sampler.probabilities()
    assert p.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert (p >= min_prob - 1e-7).all()
    assert p.argmax().item() == 0


def test_probabilities_by_hand():
    # relative scores s = w / mean(w) = [0.5, 1.5]; softmax at T = 1: 1 / (1 + e) and e / (1 + e)
    sampler = adaptive_sampler(num_bins=2, temperature=1.0, min_prob=0.1, weakness="raw")
    set_state(sampler, [1.0, 3.0])
    high = math.e / (1 + math.e)
    expected = [0.1 + 0.8 * (1 - high), 0.1 + 0.8 * high]
    torch.testing.assert_close(sampler.probabilities(), torch.tensor(expected))


def test_min_prob_times_bins_of_one_is_uniform_and_unseen_bins_start_uniform():
    sampler = adaptive_sampler(num_bins=5, min_prob=0.2, weakness="raw")
    set_state(sampler, [9.0, 1.0, 1.0, 1.0, 1.0])
    torch.testing.assert_close(sampler.probabilities(), torch.full((5,), 0.2))
    fresh = adaptive_sampler(num_bins=5)
    torch.testing.assert_close(fresh.probabilities(), torch.full((5,), 0.2))


def test_unseen_bins_score_the_mean_of_the_seen_ones():
    sampler = adaptive_sampler(num_bins=3, min_prob=0.0, weakness="raw")
    sampler.bin_loss.copy_(torch.tensor([1.0, 3.0, 0.0]))
    sampler.bin_count.copy_(torch.tensor([5.0, 5.0, 0.0], dtype=torch.float64))
    p = sampler.probabilities()
    # weakness [1, 3, 2] -> scores [0.5, 1.5, 1.0]
    expected = torch.softmax(torch.tensor([0.5, 1.5, 1.0]), dim=0)
    torch.testing.assert_close(p, expected)
    # one seen bin: the unseen score its weakness, so every score is the mean and the draw stays uniform
    sampler.bin_loss.copy_(torch.tensor([4.0, 0.0, 0.0]))
    sampler.bin_count.copy_(torch.tensor([5.0, 0.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(sampler.probabilities(), torch.full((3,), 1 / 3))


def test_weaker_bins_are_drawn_more_often():
    torch.manual_seed(0)
    sampler = adaptive_sampler(levels_per_sample=4, num_bins=4, temperature=0.5, min_prob=0.01, weakness="raw")
    set_state(sampler, [1.0, 4.0, 2.0, 1.0])
    levels = sampler(50_000, CPU).levels  # [B, 4]
    share = torch.bincount((levels * 4).long().flatten(), minlength=4).double() / levels.numel()
    torch.testing.assert_close(share, sampler.probabilities().double(), atol=0.005, rtol=0)  # sd ~ 0.001
    assert share[1] > share[2] > share[0]
    # levels are uniform inside a bin: the mean level of bin 1's draws is its centre
    in_bin = levels[(levels * 4).long() == 1]
    assert in_bin.mean().item() == pytest.approx(0.375, abs=0.003)
    assert ((levels > 0) & (levels < 1)).all()


# --------------------------------------------------------------------------------------------
# What it learns


def test_observe_by_hand():
    sampler = adaptive_sampler(levels_per_sample=2, num_bins=2, momentum=0.5, weakness="raw")
    prediction = torch.tensor([[[0.0, 1.0], [0.0, 1.0]]])  # [1, H=2, Q=2]
    target = torch.tensor([[1.0, -1.0]])
    levels = torch.tensor([[0.25, 0.75]])  # one level per bin
    mask = torch.tensor([[True, True]])
    sampler.observe(prediction, target, levels, mask)
    # level 0.25, forecast 0: errors +1 (loss 0.25), -1 (loss 0.75): mean 0.5; below: 0 then 1 -> 0.5 - 0.25
    # level 0.75, forecast 1: errors 0 (loss 0), -2 (loss 0.5): mean 0.25; below: 0, 1 -> 0.5 - 0.75
    torch.testing.assert_close(sampler.bin_loss, torch.tensor([0.5, 0.25]))
    torch.testing.assert_close(sampler.bin_below_minus_level, torch.tensor([0.25, -0.25]))
    assert sampler.bin_count.tolist() == [2.0, 2.0]  # observed steps
    # a second batch is averaged in with the momentum; the unobserved step counts for nothing
    sampler.observe(prediction, target, levels, torch.tensor([[True, False]]), denominator=torch.tensor(0.5))
    # loss at step 1 only, divided by 0.5: level 0.25 -> 0.5, level 0.75 -> 0
    torch.testing.assert_close(sampler.bin_loss, torch.tensor([0.5 * 0.5 + 0.5 * 0.5, 0.5 * 0.25 + 0.5 * 0.0]))
    assert sampler.bin_count.tolist() == [3.0, 3.0]


def test_fixed_levels_are_appended_and_not_observed():
    sampler = adaptive_sampler(levels_per_sample=2, num_bins=2, weakness="raw", fixed_levels=(0.5, 0.95))
    draw = sampler(3, CPU)
    assert draw.levels.shape == (3, 4) and draw.weights.shape == (3, 4)
    assert (draw.levels[:, 2:] == torch.tensor([0.5, 0.95])).all()
    assert (draw.weights[:, 2:] == 1).all()
    prediction = torch.zeros(3, 1, 4)
    prediction[..., 2:] = 100.0  # huge losses at the fixed levels
    sampler.observe(prediction, torch.zeros(3, 1), draw.levels, all_observed(3, 1))
    assert sampler.bin_count.sum().item() == 6  # 3 samples x 2 random levels
    assert sampler.bin_loss.max().item() < 1  # the fixed levels' losses are not in any bin


def test_gaussian_weakness_is_flat_for_an_ideal_gaussian_forecast_and_raw_loss_starves_the_tails():
    # For y ~ N(0, 1) and the true quantiles as forecast, E pinball(q) = phi(z_q): largest at the
    # median, tiny in the tails. The 'gaussian' measure divides that profile out.
    torch.manual_seed(1)
    measures = {
        name: adaptive_sampler(levels_per_sample=8, num_bins=10, momentum=0.0, weakness=name)
        for name in ("raw", "variance", "gaussian")
    }
    batch, horizon = 20_000, 4
    levels = torch.rand(batch, 8).clamp_min(1e-6)
    target = torch.randn(batch, horizon)
    for sampler in measures.values():
        sampler.observe(gaussian_forecast(levels, horizon), target, levels, all_observed(batch, horizon))
    gaussian = measures["gaussian"].bin_weakness()
    # The bin's mean of phi(z_q) over its levels, divided by phi at the centre, is within 8 % of 1 in
    # the end bins (it is 1 exactly only for a linear profile); the MC error is < 2 %.
    assert gaussian.max() / gaussian.min() < 1.15
    raw = measures["raw"].bin_weakness()
    assert raw[4] / raw[0] > 2.5 and raw[5] / raw[9] > 2.5  # the raw loss at the median dwarfs the tails'
    variance = measures["variance"].bin_weakness()
    assert variance[0] > variance[4] and variance[9] > variance[5]  # q (1 - q) over-corrects: tails favoured


def test_calibration_weakness_points_at_the_miscalibrated_tail():
    # The forecast is N(0, 1) quantiles but the data have a heavier upper tail: the upper bins'
    # share below the forecast falls short of q.
    torch.manual_seed(2)
    sampler = adaptive_sampler(levels_per_sample=8, num_bins=10, momentum=0.0, weakness="calibration")
    batch, horizon = 20_000, 2
    levels = torch.rand(batch, 8).clamp_min(1e-6)
    noise = torch.randn(batch, horizon)
    target = torch.where(noise > 1, 3 * noise, noise)
    sampler.observe(gaussian_forecast(levels, horizon), target, levels, all_observed(batch, horizon))
    weakness = sampler.bin_weakness()
    assert weakness[:5].max() < 0.05  # below 1 the data are N(0, 1): calibrated
    assert weakness[9] > 5 * weakness[:5].max()
    assert sampler.probabilities().argmax().item() == 9


# --------------------------------------------------------------------------------------------
# Importance weights keep the objective the uniform-q integral


def weighted_mean_loss(sampler, target_sigma: float, forecast_sigma: float, rounds: int = 40) -> tuple[float, float]:
    """Mean over rounds of the self-normalised weighted pinball loss, and its standard error."""
    values = []
    for _ in range(rounds):
        draw = sampler(2_000, CPU)
        target = target_sigma * torch.randn(2_000, 4)
        loss = pinball(gaussian_forecast(draw.levels, 4, forecast_sigma), target.double(), draw.levels.double()).mean(1)
        weights = torch.ones_like(loss) if draw.weights is None else draw.weights.double()
        values.append(((loss * weights).sum() / weights.sum()).item())
    values = torch.tensor(values)
    return values.mean().item(), values.std().item() / math.sqrt(rounds)


def uniform_integral(target_sigma: float, forecast_sigma: float) -> float:
    """Closed form of the uniform-q integral of E pinball for y ~ N(0, s^2), forecast N(0, f^2) quantiles:
    half the CRPS of N(0, f^2) at y, averaged over y ~ N(0, s^2)."""
    s, f = target_sigma, forecast_sigma
    # E_y CRPS(N(0, f^2), y) = sqrt(f^2 + s^2) * 2 phi(0) - f / sqrt(pi) for centred Gaussians
    return 0.5 * (2 * math.sqrt(f * f + s * s) / math.sqrt(2 * math.pi) - f / math.sqrt(math.pi))


def test_importance_weighted_loss_matches_the_uniform_integral_and_unweighted_does_not():
    torch.manual_seed(3)
    weights = [0.2, 0.5, 1.0, 1.0, 1.5, 2.0, 4.0, 8.0, 16.0, 30.0]  # a strongly skewed sampler
    expected = uniform_integral(target_sigma=1.0, forecast_sigma=0.6)
    weighted = adaptive_sampler(levels_per_sample=8, num_bins=10, temperature=0.5, min_prob=0.02, weakness="raw")
    set_state(weighted, weights)
    mean, error = weighted_mean_loss(weighted, 1.0, 0.6)
    assert abs(mean - expected) < 4 * error + 1e-4
    unweighted = adaptive_sampler(
        levels_per_sample=8, num_bins=10, temperature=0.5, min_prob=0.02, weakness="raw", importance_weighting=False
    )
    set_state(unweighted, weights)
    biased, biased_error = weighted_mean_loss(unweighted, 1.0, 0.6)
    assert abs(biased - expected) > 10 * biased_error  # the upper tail is oversampled: the objective moved


def test_uniform_sampler_matches_the_closed_form_integral():
    # The closed form itself checked against plain uniform sampling.
    torch.manual_seed(4)
    mean, error = weighted_mean_loss(UniformLevelSampler(SamplerConfig(levels_per_sample=8)), 1.0, 0.6)
    assert abs(mean - uniform_integral(1.0, 0.6)) < 4 * error + 1e-4


def test_weights_are_uniform_over_sampling_density_self_normalised():
    torch.manual_seed(5)
    sampler = adaptive_sampler(levels_per_sample=4, num_bins=5, temperature=0.2, min_prob=0.05, weakness="raw")
    set_state(sampler, [1.0, 1.0, 1.0, 1.0, 50.0])
    p = sampler.probabilities()
    assert p.min().item() == pytest.approx(0.05, abs=1e-6)  # the four equal bins sit on the floor
    draw = sampler(1000, CPU)
    raw = 1.0 / (5 * p[(draw.levels * 5).long()])  # [B, A]: 1 / (N p_b), at most 1 / (N min_prob) = 4
    assert raw.max().item() <= 4 + 1e-5
    torch.testing.assert_close(draw.weights, raw / raw.mean())
    assert draw.weights.mean().item() == pytest.approx(1.0, abs=1e-5)


# --------------------------------------------------------------------------------------------
# State


def trained_sampler() -> AdaptiveLevelSampler:
    torch.manual_seed(6)
    sampler = adaptive_sampler(levels_per_sample=4, num_bins=8)
    for step in range(3):
        draw = sampler(64, CPU)
        sampler.observe(gaussian_forecast(draw.levels, 3, 0.5), torch.randn(64, 3), draw.levels, all_observed(64, 3))
        sampler.record(step)
    return sampler


def test_state_dict_round_trip_keeps_estimates_counts_and_history(tmp_path):
    sampler = trained_sampler()
    torch.save(sampler.state_dict(), tmp_path / "sampler.pt")
    restored = adaptive_sampler(levels_per_sample=4, num_bins=8)
    restored.load_state_dict(torch.load(tmp_path / "sampler.pt", weights_only=False))
    for name in ("bin_loss", "bin_below_minus_level", "bin_count"):
        assert torch.equal(getattr(restored, name), getattr(sampler, name))
    torch.testing.assert_close(restored.probabilities(), sampler.probabilities())
    assert restored.history == sampler.history and [s["step"] for s in restored.history] == [0, 1, 2]


def test_a_non_finite_batch_leaves_the_estimates_alone():
    sampler = adaptive_sampler(levels_per_sample=2, num_bins=2, momentum=0.5, weakness="raw")
    levels, target, mask = torch.tensor([[0.25, 0.75]]), torch.zeros(1, 1), all_observed(1, 1)
    sampler.observe(torch.tensor([[[1.0, 1.0]]]), target, levels, mask)
    before = sampler.bin_loss.clone()
    sampler.observe(torch.tensor([[[float("nan"), 2.0]]]), target, levels, mask)
    assert sampler.bin_loss[0] == before[0] and sampler.bin_count[0] == 1  # the NaN bin is skipped
    assert sampler.bin_loss[1] == 0.5 * before[1] + 0.5 * (1 - 0.75) * 2.0  # the finite one is updated
    assert torch.isfinite(sampler.probabilities()).all()


def test_state_keeps_its_dtypes_when_the_module_is_cast():
    # Lightning's bf16-true casts the whole module; the estimates must stay in full precision.
    sampler = adaptive_sampler().to(torch.bfloat16)
    assert sampler.bin_loss.dtype == torch.float32 and sampler.bin_count.dtype == torch.float64
    assert sampler.bin_centres.dtype == torch.float32


def _observe_on_rank(rank: int, world_size: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)  # two processes on the cores: one thread each, so that neither spins waiting for the other
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        torch.manual_seed(100 + rank)  # each rank draws its own levels and sees its own data
        sampler = adaptive_sampler(levels_per_sample=4, num_bins=8)
        for _ in range(3):
            draw = sampler(32, CPU)
            target = torch.randn(32, 3) * (1 + rank)
            sampler.observe(gaussian_forecast(draw.levels, 3), target, draw.levels, all_observed(32, 3))
        torch.save(sampler.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_end_with_identical_state(tmp_path):
    mp.spawn(_observe_on_rank, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    states = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    for name in ("bin_loss", "bin_below_minus_level", "bin_count"):
        assert torch.equal(states[0][name], states[1][name]), name
    # the counts are those of both ranks' data: 3 batches x 2 ranks x 32 samples x 4 levels x 3 steps
    assert states[0]["bin_count"].sum().item() == 3 * 2 * 32 * 4 * 3


# --------------------------------------------------------------------------------------------
# Bad settings


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(num_bins=10, min_prob=0.2), r"min_prob \* num_bins = 2"),
        (dict(min_prob=-0.1), "min_prob"),
        (dict(temperature=0.0), "temperature must be > 0"),
        (dict(temperature=-1.0), "temperature must be > 0"),
        (dict(momentum=1.0), r"momentum must be in \[0, 1\)"),
        (dict(momentum=-0.5), r"momentum must be in \[0, 1\)"),
        (dict(num_bins=0), "num_bins must be >= 1"),
        (dict(weakness="loss"), "unknown weakness measure 'loss'; choose one of raw, variance, gaussian, calibration"),
        (dict(levels_per_sample=0), "levels_per_sample must be >= 1"),
        (dict(fixed_levels=(0.5, 1.0)), r"fixed levels must be in \(0, 1\)"),
    ],
)
def test_bad_settings_fail_clearly(settings, message):
    with pytest.raises(ValueError, match=message):
        adaptive_sampler(**settings)


def test_the_smallest_settings_allowed_are_accepted():
    """Each range's closed end: one bin, momentum 0, no floor, fixed levels just inside (0, 1)."""
    sampler = adaptive_sampler(num_bins=1, momentum=0.0, min_prob=0.0, fixed_levels=[1e-6, 1 - 1e-6])
    assert sampler.probabilities().tolist() == [1.0]
    assert SamplerConfig(kind="beta", alpha=1e-3, beta=1e-3).alpha == 1e-3


def test_floors_that_sum_to_exactly_one_are_allowed():
    """min_prob * num_bins = 1: every bin at its floor, the draw uniform (the bound is inclusive)."""
    sampler = adaptive_sampler(num_bins=20, min_prob=0.05)
    assert torch.allclose(sampler.probabilities(), torch.full((20,), 0.05))


def test_fixed_levels_add_no_weights_to_an_unweighted_draw_and_are_not_saved():
    """A uniform draw has no weights, with fixed levels too; the fixed levels are settings, not state: a
    checkpoint loads under other ones (strict), as the adaptive sampler's learnt buffers do."""
    draw = UniformLevelSampler(SamplerConfig(levels_per_sample=2, fixed_levels=[0.5, 0.75]))(4, torch.device("cpu"))
    assert draw.weights is None and draw.levels.shape == (4, 4)
    assert draw.levels[:, 2:].tolist() == [[0.5, 0.75]] * 4  # exact in float32
    saved = adaptive_sampler(fixed_levels=[0.5]).state_dict()
    assert "fixed_levels" not in saved
    adaptive_sampler(fixed_levels=[0.05, 0.95]).load_state_dict(saved)


def test_settings_derived_buffers_are_not_saved_so_a_checkpoint_keeps_the_configs_own():
    """The Beta concentration and the bin centres follow the config; only what was learnt is state. A
    checkpoint of Beta(0.5, 0.5) loaded under Beta(2, 2) keeps drawing from Beta(2, 2)."""
    wide = BetaLevelSampler(SamplerConfig(kind="beta", alpha=0.5, beta=0.5)).state_dict()
    assert "concentration" not in wide
    narrow = BetaLevelSampler(SamplerConfig(kind="beta", alpha=2.0, beta=2.0))
    narrow.load_state_dict(wide)
    assert narrow.concentration.tolist() == [2.0, 2.0]
    learnt = {"bin_loss", "bin_below_minus_level", "bin_count", "_extra_state"}
    assert set(adaptive_sampler().state_dict()) == learnt


def test_the_settings_default_as_documented():
    """config/sampler/*.yaml and docs/design.md state these; a config that leaves a key unset gets them."""
    defaults = SamplerConfig()
    assert (defaults.kind, defaults.levels_per_sample, defaults.fixed_levels) == ("uniform", 1, [])
    assert (SamplerConfig(kind="beta").alpha, SamplerConfig(kind="beta").beta) == (0.5, 0.5)
    adaptive = SamplerConfig(kind="adaptive")
    assert (adaptive.num_bins, adaptive.momentum, adaptive.temperature, adaptive.min_prob) == (20, 0.98, 1.0, 0.01)
    assert (adaptive.importance_weighting, adaptive.weakness) == (True, "gaussian")


def test_build_level_sampler_passes_settings_by_kind():
    config = SamplerConfig(
        kind="adaptive", levels_per_sample=3, fixed_levels=[0.5], num_bins=7, temperature=0.3, weakness="variance"
    )
    adaptive = build_level_sampler(config)
    assert isinstance(adaptive, AdaptiveLevelSampler)
    assert (adaptive.levels_per_sample, adaptive.num_bins, adaptive.temperature, adaptive.weakness) == (
        3,
        7,
        0.3,
        "variance",
    )
    assert adaptive(2, CPU).levels.shape == (2, 4)
    beta = build_level_sampler(
        SamplerConfig(kind="beta", levels_per_sample=2, fixed_levels=[0.1, 0.9], alpha=2.0, beta=3.0)
    )
    assert isinstance(beta, BetaLevelSampler) and beta(5, CPU).levels.shape == (5, 4)
    assert isinstance(build_level_sampler(SamplerConfig()), UniformLevelSampler)
    with pytest.raises(ValueError, match="unknown level sampler 'gaussian'; choose one of uniform, beta, adaptive"):
        SamplerConfig(kind="gaussian")


@pytest.mark.parametrize(
    "settings, message",
    [
        (
            dict(kind="uniform", temperature=0.5),
            "sampler.temperature applies only to sampler.kind=adaptive, but sampler.kind is 'uniform'",
        ),
        (
            dict(kind="adaptive", alpha=2.0),
            "sampler.alpha applies only to sampler.kind=beta, but sampler.kind is 'adaptive'",
        ),
        (dict(kind="beta", weakness="raw"), "sampler.weakness applies only to sampler.kind=adaptive"),
    ],
)
def test_a_setting_the_chosen_sampler_would_ignore_is_an_error(settings, message):
    with pytest.raises(ValueError, match=message):
        SamplerConfig(**settings)
    kind = settings["kind"]
    assert SamplerConfig(kind=kind).kind == kind  # the defaults of the other kinds' settings are fine


def test_a_sampler_refuses_a_config_of_another_kind():
    with pytest.raises(ValueError, match="AdaptiveLevelSampler draws sampler.kind=adaptive, got beta"):
        AdaptiveLevelSampler(SamplerConfig(kind="beta"))
