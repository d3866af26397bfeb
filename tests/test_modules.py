"""The network modules: any-quantile N-BEATS, scaling, the full network, level samplers, schedules."""
from __future__ import annotations

import math
from functools import partial

import pytest
import torch

from model.schedules import InverseSquareRootWarmup
from modules.forecast_network import AnyQuantileNetwork, context_size
from modules.level_sampling import BetaLevelSampler, LevelDraw, UniformLevelSampler, build_level_sampler
from modules.nbeats import CONDITIONING_MODES, AnyQuantileNBeats, NBeatsBlock, NBeatsStack, QuantileEmbedding, run_blocks
from modules.scaling import MaxAbsScaler, RobustScaler, WindowScale, build_scaler

T, H, C = 24, 6, 5  # history, horizon, calendar features


def _backbone(conditioning="film", embedding="identity", dim=1, context=0, seed=0, **kwargs) -> AnyQuantileNBeats:
    torch.manual_seed(seed)
    model = AnyQuantileNBeats(
        history_length=T,
        horizon=H,
        context_size=context,
        num_blocks=3,
        num_layers=2,
        width=32,
        conditioning=conditioning,
        quantile_embedding=embedding,
        quantile_embedding_dim=dim,
        dropout=0.2,  # so that eval mode matters
        **kwargs,
    )
    return model.eval()


def _network(scaler, conditioning="film", seed=0) -> AnyQuantileNetwork:
    backbone = _backbone(conditioning, context=context_size(T, C, True, True), seed=seed)
    return AnyQuantileNetwork(backbone, scaler).eval()


def _inputs(B=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    history = 1000.0 + 200.0 * torch.randn(B, T, generator=g)
    history_mask = torch.rand(B, T, generator=g) > 0.2
    calendar = torch.randn(B, T + H, C, generator=g)
    return history, history_mask, calendar


# --------------------------------------------------------------------------------------------
# Any-quantile independence

MODES = [(mode, kind, dim) for mode in CONDITIONING_MODES for kind, dim in (("identity", 1), ("cosine", 8), ("normal", 2))]


@pytest.mark.parametrize("conditioning, embedding, dim", MODES)
@pytest.mark.parametrize("with_context", [False, True])
def test_level_asked_alone_equals_level_asked_with_others(conditioning, embedding, dim, with_context):
    B, E = 3, 4
    model = _backbone(conditioning, embedding, dim, context=E if with_context else 0)
    g = torch.Generator().manual_seed(2)
    history = torch.randn(B, T, generator=g)
    context = torch.randn(B, E, generator=g) if with_context else None
    with torch.no_grad():
        alone = model(history, torch.full((B, 1), 0.9), context)
        together = model(history, torch.tensor([[0.1, 0.5, 0.9]]).expand(B, -1), context)
        shuffled = model(history, torch.tensor([[0.9, 0.1, 0.5]]).expand(B, -1), context)
        again = model(history, torch.full((B, 1), 0.9), context)
    assert alone.shape == (B, H, 1)
    assert together.shape == (B, H, 3) and shuffled.shape == (B, H, 3)
    torch.testing.assert_close(again, alone, rtol=0, atol=0)  # eval mode: no dropout noise
    torch.testing.assert_close(together[..., 2], alone[..., 0], rtol=0, atol=1e-5)
    torch.testing.assert_close(shuffled[..., 0], alone[..., 0], rtol=0, atol=1e-5)
    torch.testing.assert_close(shuffled[..., 1], together[..., 0], rtol=0, atol=1e-5)
    torch.testing.assert_close(shuffled[..., 2], together[..., 1], rtol=0, atol=1e-5)
    # the level does matter (otherwise the checks above would hold trivially)
    assert (together[..., 0] - together[..., 2]).abs().max() > 1e-4


@pytest.mark.parametrize("conditioning", CONDITIONING_MODES)
def test_per_window_levels_differ_across_the_batch(conditioning):
    # levels [B, Q] may differ per window; each window's answer equals asking that window alone
    model = _backbone(conditioning)
    history = torch.randn(2, T, generator=torch.Generator().manual_seed(3))
    levels = torch.tensor([[0.2, 0.7], [0.95, 0.05]])
    with torch.no_grad():
        both = model(history, levels)
        for b in range(2):
            alone = model(history[b : b + 1], levels[b : b + 1])
            torch.testing.assert_close(both[b : b + 1], alone, rtol=0, atol=1e-5)


def test_train_mode_dropout_is_active():
    model = _backbone("film").train()
    history = torch.randn(2, T, generator=torch.Generator().manual_seed(4))
    levels = torch.full((2, 1), 0.5)
    torch.manual_seed(0)
    first = model(history, levels)
    second = model(history, levels)
    assert not torch.allclose(first, second)


def test_quantile_embedding_values():
    levels = torch.tensor([[0.0, 0.25, 1.0]])
    identity = QuantileEmbedding("identity", 1)(levels)
    assert identity.shape == (1, 3, 1)
    torch.testing.assert_close(identity[..., 0], levels)
    cosine = QuantileEmbedding("cosine", 3)(levels)
    assert cosine.shape == (1, 3, 3)
    expected = torch.tensor([[[math.cos(math.pi * k * q) for k in (1, 2, 3)] for q in (0.0, 0.25, 1.0)]])
    torch.testing.assert_close(cosine, expected, rtol=0, atol=1e-6)
    normal = QuantileEmbedding("normal", 2)(torch.tensor([[0.5, 0.975, 0.025, 0.8413447]]))
    torch.testing.assert_close(normal[0, :, 1], torch.tensor([0.0, 1.959964, -1.959964, 1.0]), rtol=0, atol=1e-5)  # z(q) by table
    torch.testing.assert_close(normal[0, :, 0], torch.tensor([0.5, 0.975, 0.025, 0.8413447]))
    ends = QuantileEmbedding("normal", 2)(torch.tensor([0.0, 1.0]))
    assert torch.isfinite(ends).all() and ends[0, 1] < -4.7 and ends[1, 1] > 4.7


# --------------------------------------------------------------------------------------------
# Scaling


@pytest.mark.parametrize("factor", [3.7, 1e-3, 250.0])
@pytest.mark.parametrize("conditioning", CONDITIONING_MODES)
def test_max_abs_network_is_scale_equivariant(factor, conditioning):
    network = _network(MaxAbsScaler(), conditioning)
    history, history_mask, calendar = _inputs()
    levels = torch.tensor([[0.05, 0.5, 0.95]]).expand(history.shape[0], -1)
    with torch.no_grad():
        base = network(history, history_mask, calendar, levels)
        scaled = network(factor * history, history_mask, calendar, levels)
    assert base.prediction.shape == (history.shape[0], H, 3)
    torch.testing.assert_close(scaled.scale.scale, factor * base.scale.scale, rtol=1e-6, atol=0)
    torch.testing.assert_close(scaled.prediction, factor * base.prediction, rtol=1e-4, atol=1e-5 * factor)


def test_network_composes_scaler_context_and_backbone():
    # prediction = scale * backbone(history / scale, levels, [calendar at the first forecast hour, mask])
    network = _network(MaxAbsScaler())
    history, history_mask, calendar = _inputs()
    levels = torch.tensor([[0.3, 0.6]]).expand(history.shape[0], -1)
    with torch.no_grad():
        got = network(history, history_mask, calendar, levels)
        peak = torch.where(history_mask, history.abs(), torch.zeros_like(history)).amax(dim=1, keepdim=True)
        context = torch.cat([calendar[:, T, :], history_mask.float()], dim=-1)
        expected = network.backbone(history / peak, levels, context) * peak[:, :, None]
    torch.testing.assert_close(got.scale.scale, peak)
    torch.testing.assert_close(got.prediction, expected, rtol=1e-5, atol=1e-3)
    assert got.prediction.dtype == torch.float32


def test_robust_network_is_affine_equivariant():
    # the robust scaler centres on the median and divides by the IQR: x -> c x + d maps the forecast the same way
    network = _network(RobustScaler())
    history, history_mask, calendar = _inputs()
    levels = torch.tensor([[0.1, 0.9]]).expand(history.shape[0], -1)
    c, d = 2.5, -300.0
    with torch.no_grad():
        base = network(history, history_mask, calendar, levels).prediction
        moved = network(c * history + d, history_mask, calendar, levels).prediction
    torch.testing.assert_close(moved, c * base + d, rtol=1e-4, atol=1e-2)


@pytest.mark.parametrize("scaler", [MaxAbsScaler, RobustScaler])
@pytest.mark.parametrize("conditioning", CONDITIONING_MODES)
def test_windows_in_a_batch_do_not_depend_on_each_other(scaler, conditioning):
    network = _network(scaler(), conditioning)
    history, history_mask, calendar = _inputs(B=3)
    levels = torch.tensor([[0.1, 0.5, 0.9]]).expand(3, -1)
    changed_history, changed_mask, changed_calendar = history.clone(), history_mask.clone(), calendar.clone()
    changed_history[1] = 1e5 * torch.rand(T)
    changed_mask[1] = ~changed_mask[1]
    changed_calendar[1] = -changed_calendar[1]
    with torch.no_grad():
        before = network(history, history_mask, calendar, levels).prediction
        after = network(changed_history, changed_mask, changed_calendar, levels).prediction
    torch.testing.assert_close(after[0], before[0], rtol=1e-6, atol=1e-4)
    torch.testing.assert_close(after[2], before[2], rtol=1e-6, atol=1e-4)
    assert not torch.allclose(after[1], before[1])  # window 1 itself did change


def test_max_abs_scaler_ignores_masked_values():
    history = torch.tensor([[1.0, -4.0, 2.0, 1e6], [3.0, -1e6, 0.5, 2.0]])
    mask = torch.tensor([[True, True, True, False], [True, False, True, True]])
    scale = MaxAbsScaler()(history, mask)
    torch.testing.assert_close(scale.scale, torch.tensor([[4.0], [3.0]]))
    torch.testing.assert_close(scale.loc, torch.zeros(2, 1))


def test_max_abs_scaler_all_zero_or_unobserved_window_gets_scale_one():
    history = torch.tensor([[0.0, 0.0, 0.0], [5.0, 7.0, 0.0], [0.0, 0.0, 2.0]])
    mask = torch.tensor([[True, True, True], [False, False, True], [True, True, True]])
    scale = MaxAbsScaler()(history, mask)
    torch.testing.assert_close(scale.scale, torch.tensor([[1.0], [1.0], [2.0]]))
    assert torch.isfinite(scale.apply(history)).all()


def test_robust_scaler_median_and_iqr_by_hand():
    # window 0: 1..9 observed -> linear-interpolated quantiles at positions 2, 4, 6 of the sorted values:
    #   q25 = 3, median = 5, q75 = 7 -> loc 5, scale 4; the masked 1000 does not count
    # window 1: 2, 4, 10, 20 observed -> positions 0.75, 1.5, 2.25: q25 = 3.5, median 7, q75 = 12.5 -> scale 9
    history = torch.tensor(
        [
            [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 1000.0],
            [20.0, 4.0, -50.0, 10.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        ]
    )
    mask = torch.tensor([[True] * 9 + [False], [True, True, False, True, True] + [False] * 5])
    scale = RobustScaler()(history, mask)
    torch.testing.assert_close(scale.loc, torch.tensor([[5.0], [7.0]]))
    torch.testing.assert_close(scale.scale, torch.tensor([[4.0], [9.0]]))


def test_robust_scaler_flat_and_unobserved_windows():
    history = torch.tensor([[-5.0, -5.0, -5.0], [0.2, 0.2, 0.2], [1.0, 2.0, 3.0]])
    mask = torch.tensor([[True, True, True], [True, True, True], [False, False, False]])
    scale = RobustScaler()(history, mask)
    # flat: scale by max(|median|, 1); nothing observed: loc 0, scale 1
    torch.testing.assert_close(scale.loc, torch.tensor([[-5.0], [0.2], [0.0]]))
    torch.testing.assert_close(scale.scale, torch.tensor([[5.0], [1.0], [1.0]]))


def test_robust_scaler_custom_range():
    history = torch.arange(1.0, 10.0)[None]  # 1..9
    scale = RobustScaler(lower=0.0, upper=1.0)(history, torch.ones(1, 9, dtype=torch.bool))
    torch.testing.assert_close(scale.scale, torch.tensor([[8.0]]))


@pytest.mark.parametrize("scaler", [MaxAbsScaler, RobustScaler])
def test_window_scale_undo_inverts_apply(scaler):
    history, history_mask, _ = _inputs(B=5)
    history = history.double()
    scale = scaler()(history, history_mask)
    torch.testing.assert_close(scale.undo(scale.apply(history)), history, rtol=1e-12, atol=1e-9)
    forecast = torch.randn(5, H, 3, dtype=torch.float64)  # any trailing shape
    torch.testing.assert_close(scale.undo(scale.apply(forecast)), forecast, rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(scale.apply(scale.undo(forecast)), forecast, rtol=1e-12, atol=1e-9)


def test_window_scale_by_hand():
    scale = WindowScale(loc=torch.tensor([[1.0], [-2.0]]), scale=torch.tensor([[2.0], [4.0]]))
    values = torch.tensor([[[3.0]], [[2.0]]])  # [2, 1, 1]
    torch.testing.assert_close(scale.apply(values), torch.tensor([[[1.0]], [[1.0]]]))
    torch.testing.assert_close(scale.undo(values), torch.tensor([[[7.0]], [[6.0]]]))


def test_build_scaler():
    assert isinstance(build_scaler("max_abs"), MaxAbsScaler)
    assert isinstance(build_scaler("robust"), RobustScaler)


# --------------------------------------------------------------------------------------------
# Level samplers


def test_uniform_level_sampler_shape_range_and_mean():
    torch.manual_seed(0)
    draw = UniformLevelSampler(levels_per_sample=3)(20000, torch.device("cpu"))
    assert isinstance(draw, LevelDraw) and draw.weights is None
    assert draw.levels.shape == (20000, 3)
    assert ((draw.levels > 0) & (draw.levels < 1)).all()
    # sd of the mean of 60000 uniforms is sqrt(1/12 / 60000) ~ 0.0012
    assert draw.levels.mean().item() == pytest.approx(0.5, abs=0.01)
    assert draw.levels.var().item() == pytest.approx(1 / 12, abs=0.005)


@pytest.mark.parametrize("alpha, beta", [(0.5, 0.5), (2.0, 5.0), (5.0, 1.0)])
def test_beta_level_sampler_shape_range_and_mean(alpha, beta):
    torch.manual_seed(1)
    draw = BetaLevelSampler(levels_per_sample=2, alpha=alpha, beta=beta)(20000, torch.device("cpu"))
    assert draw.levels.shape == (20000, 2)
    assert ((draw.levels > 0) & (draw.levels < 1)).all()
    # Beta variance <= 1/4 / (alpha + beta + 1) <= 1/8 here: sd of the mean of 40000 draws < 0.002
    assert draw.levels.mean().item() == pytest.approx(alpha / (alpha + beta), abs=0.01)


def test_beta_level_sampler_stays_inside_the_open_interval_for_tiny_concentration():
    # Beta(0.01, 0.01) puts almost all its mass at 0 and 1: float32 draws round to exactly 0 or 1
    torch.manual_seed(2)
    levels = BetaLevelSampler(levels_per_sample=4, alpha=0.01, beta=0.01)(5000, torch.device("cpu")).levels
    assert ((levels > 0) & (levels < 1)).all()
    assert (levels < 1e-6).any() and (levels > 1 - 1e-6).any()
    # the sampler keeps them at least one float32 epsilon away from either end
    eps = torch.finfo(torch.float32).eps
    assert levels.min() >= eps and levels.max() <= 1 - eps


@pytest.mark.parametrize(
    "make",
    [
        lambda: UniformLevelSampler(levels_per_sample=0),
        lambda: BetaLevelSampler(levels_per_sample=0),
        lambda: BetaLevelSampler(alpha=0.0),
        lambda: BetaLevelSampler(beta=-1.0),
    ],
)
def test_level_samplers_reject_bad_parameters(make):
    with pytest.raises(ValueError):
        make()


def test_build_level_sampler():
    uniform = build_level_sampler("uniform", 3)
    assert isinstance(uniform, UniformLevelSampler) and uniform.levels_per_sample == 3
    beta = build_level_sampler("beta", 2, alpha=2.0, beta=5.0)
    assert isinstance(beta, BetaLevelSampler) and beta.levels_per_sample == 2
    assert beta.concentration.tolist() == [2.0, 5.0]
    with pytest.raises(ValueError, match="unknown level sampler 'gaussian'"):
        build_level_sampler("gaussian", 1)


# --------------------------------------------------------------------------------------------
# Learning-rate schedule


def test_inverse_square_root_warmup_hand_values():
    schedule = InverseSquareRootWarmup(warmup_steps=4)
    assert schedule(0) == pytest.approx(1 / 4)  # (0 + 1) / 4
    assert schedule(1) == pytest.approx(2 / 4)
    assert schedule(3) == pytest.approx(1.0)  # warmup - 1: the peak
    assert schedule(15) == pytest.approx(0.5)  # 4 * warmup - 1: sqrt(4 / 16)
    assert schedule(99) == pytest.approx(math.sqrt(4 / 100))
    values = [schedule(step) for step in range(50)]
    assert max(values) == 1.0 and values.index(1.0) == 3


def test_inverse_square_root_warmup_of_one_step_starts_at_the_peak():
    schedule = InverseSquareRootWarmup(warmup_steps=1)
    assert schedule(0) == 1.0
    assert schedule(3) == pytest.approx(0.5)


def test_inverse_square_root_warmup_drives_lambda_lr():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, InverseSquareRootWarmup(10))
    rates = []
    for _ in range(40):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] == pytest.approx(0.01)
    assert rates[9] == pytest.approx(0.1)
    assert rates[39] == pytest.approx(0.05)


@pytest.mark.parametrize("warmup", [0, -3])
def test_inverse_square_root_warmup_rejects_non_positive_warmup(warmup):
    with pytest.raises(ValueError, match="warmup_steps"):
        InverseSquareRootWarmup(warmup)


# --------------------------------------------------------------------------------------------
# Constructor arguments


def test_unknown_conditioning_raises():
    with pytest.raises(ValueError, match="unknown conditioning 'add'"):
        AnyQuantileNBeats(T, H, conditioning="add")


def test_unknown_embedding_raises():
    with pytest.raises(ValueError, match="unknown quantile embedding 'sine'"):
        AnyQuantileNBeats(T, H, quantile_embedding="sine")


def test_identity_embedding_with_dim_other_than_one_raises():
    with pytest.raises(ValueError, match="identity quantile embedding has dim 1"):
        AnyQuantileNBeats(T, H, quantile_embedding="identity", quantile_embedding_dim=4)
    with pytest.raises(ValueError, match="dim must be positive"):
        QuantileEmbedding("cosine", 0)


def test_unknown_scaler_raises():
    with pytest.raises(ValueError, match="unknown scaler 'minmax'"):
        build_scaler("minmax")


@pytest.mark.parametrize("lower, upper", [(0.75, 0.25), (0.5, 0.5), (-0.1, 0.5), (0.2, 1.1)])
def test_robust_scaler_rejects_bad_range(lower, upper):
    with pytest.raises(ValueError, match="lower < upper"):
        RobustScaler(lower, upper)


def test_bad_block_arguments_raise():
    with pytest.raises(ValueError, match="num_blocks"):
        AnyQuantileNBeats(T, H, num_blocks=0)
    with pytest.raises(ValueError, match="num_layers"):
        AnyQuantileNBeats(T, H, num_layers=0)


def test_forecaster_rejects_unknown_loss_normalisation():
    from model.forecaster import AnyQuantileForecaster
    from modules.quantile_levels import EvaluationLevels

    network = _network(MaxAbsScaler())
    with pytest.raises(ValueError, match="unknown loss normalisation 'mean'"):
        AnyQuantileForecaster(
            network,
            UniformLevelSampler(),
            EvaluationLevels(),
            H,
            partial(torch.optim.Adam, lr=1e-3),
            loss_normalisation="mean",
        )


@pytest.mark.parametrize("conditioning", CONDITIONING_MODES)
def test_every_backbone_parameter_receives_a_gradient(conditioning):
    torch.manual_seed(0)
    net = AnyQuantileNBeats(24, 6, context_size=3, num_blocks=3, num_layers=2, width=8, conditioning=conditioning)
    net(torch.randn(4, 24), torch.rand(4, 2), torch.randn(4, 3)).pow(2).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_nbeats_stack_is_the_level_free_part_of_the_out_backbone():
    out = _backbone("out", context=C)
    stack = NBeatsStack(T, H, context_size=C, num_blocks=3, num_layers=2, width=32)
    stack.load_state_dict({k: v for k, v in out.state_dict().items() if k.startswith("blocks.") and "blocks.2.backcast" not in k})
    assert stack.blocks[-1].backcast is None  # nothing reads the last block's residual
    history, context = torch.randn(4, T), torch.randn(4, C)
    residual, expected = run_blocks(out.blocks, history, context)
    torch.testing.assert_close(stack(history, context), expected)  # [B, H]
    b0, f0 = out.blocks[0](history, context)  # the doubly residual pass written out
    b1, f1 = out.blocks[1](history - b0, context)
    b2, f2 = out.blocks[2](history - b0 - b1, context)
    torch.testing.assert_close(expected, f0 + f1 + f2)
    torch.testing.assert_close(residual, history - b0 - b1 - b2)


def test_block_broadcasts_a_per_window_residual_over_per_level_side_inputs():
    torch.manual_seed(0)
    block = NBeatsBlock(backcast_size=12, forecast_size=4, side_size=3, width=8, num_layers=2)
    residual, side = torch.randn(2, 1, 12), torch.randn(2, 5, 3)  # one residual per window, side per level
    backcast, forecast = block(residual, side)
    expected_backcast, expected_forecast = block(residual.expand(2, 5, 12), side)  # the same, computed per level
    torch.testing.assert_close(forecast, expected_forecast)
    torch.testing.assert_close(backcast, expected_backcast)


def test_out_conditioning_repeats_no_per_window_work_per_level():
    """Matmul FLOPs are affine in the number of levels Q; the slope is exactly the level read-out's
    per-level work: its forecast head and the FiLM generator (all its layers run once per window)."""
    from torch.utils.flop_counter import FlopCounterMode

    B, T, H, D, L = 2, 12, 4, 8, 3
    network = AnyQuantileNBeats(T, H, num_blocks=2, num_layers=L, width=D, conditioning="out")
    history = torch.randn(B, T)

    def flops(Q: int) -> int:
        with FlopCounterMode(display=False) as counter:
            network(history, torch.rand(B, Q))
        return counter.get_total_flops()

    per_level = 2 * B * (D * H + 1 * 2 * D)  # multiply-adds x 2; identity embedding F = 1
    assert flops(3) - flops(1) == 2 * per_level
    assert flops(7) - flops(3) == 4 * per_level


def test_out_forecast_is_the_stack_plus_the_film_read_out_written_out():
    """y_q = stack(x) + W_f relu(h * scale(q) + shift(q)) + b_f, h the read-out MLP's last
    pre-activation on (final residual, context): computed here step by step from the weights."""
    torch.manual_seed(0)
    net = _backbone("out", context=C)
    history, context, levels = torch.randn(4, T), torch.randn(4, C), torch.rand(4, 5)
    residual, stack_forecast = run_blocks(net.blocks, history, context)  # [B, T], [B, H]
    readout = net.level_readout
    first, last = readout.layers  # num_layers=2
    h = last(torch.relu(first(torch.cat([residual, context], dim=-1))))  # [B, D]
    scale, shift = readout.film(levels[..., None]).chunk(2, dim=-1)  # identity embedding: [B, Q, 1] -> 2 x [B, Q, D]
    correction = readout.forecast(torch.relu(h[:, None] * scale + shift))  # [B, Q, H]
    expected = (stack_forecast[:, None] + correction).transpose(1, 2)  # [B, H, Q]
    torch.testing.assert_close(net(history, levels, context), expected)


def test_out_read_out_is_nonlinear_in_the_level():
    """With q's identity embedding the FiLM is affine in q; the ReLU after it must bend the forecast."""
    torch.manual_seed(0)
    net = _backbone("out", context=C)
    levels = torch.linspace(0.01, 0.99, 9)[None].expand(2, 9)  # [B, Q]
    forecast = net(torch.randn(2, T), levels, torch.randn(2, C))  # [B, H, Q]
    second_difference = forecast[..., 2:] - 2 * forecast[..., 1:-1] + forecast[..., :-2]  # zero iff affine in q
    assert second_difference.abs().max() > 1e-4


@pytest.mark.parametrize("conditioning", CONDITIONING_MODES)
def test_one_level_grid_expanded_over_the_windows_gets_its_film_once(conditioning):
    """A grid passed as one row expanded over the windows (as evaluation passes it) has its FiLM
    generated once, not per window; forecasts and gradients with respect to the levels are those of
    the same grid written out per window."""
    from torch.utils.flop_counter import FlopCounterMode

    net = _backbone(conditioning, context=C)
    B, Q, D = 3, 4, net.width
    history, context = torch.randn(B, T), torch.randn(B, C)
    grid = torch.tensor([0.05, 0.3, 0.5, 0.95], requires_grad=True)  # [Q]

    def run(levels):
        with FlopCounterMode(display=False) as counter:
            forecast = net(history, levels, context)  # [B, H, Q]
        (gradient,) = torch.autograd.grad(forecast.square().sum(), grid)
        return forecast, gradient, counter.get_total_flops()

    shared, shared_gradient, shared_flops = run(grid.expand(B, -1))  # stride 0 over the windows
    written, written_gradient, written_flops = run(grid.expand(B, -1).contiguous())  # the same values, B rows
    torch.testing.assert_close(shared, written)
    torch.testing.assert_close(shared_gradient, written_gradient)
    film_generators = {"cat": 0, "film": 3, "out": 1}[conditioning]  # one per block under FiLM (3 blocks)
    assert written_flops - shared_flops == film_generators * 2 * (B - 1) * Q * 1 * 2 * D  # identity embedding: F = 1


def test_out_read_out_scale_starts_near_one():
    """The FiLM scale's 1 lives in the generator's bias: at initialisation the level barely modulates."""
    net = _backbone("out")
    D = net.width
    bias = net.level_readout.film.bias.detach()
    assert bias[:D].sub(1).abs().max() <= 1.0 and bias[D:].abs().max() <= 1.0  # nn.Linear's bias is U(-1, 1) for F = 1
