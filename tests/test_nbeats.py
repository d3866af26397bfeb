"""The any-quantile N-BEATS backbone (modules/nbeats.py): levels never mix, the three ways q enters,
no repeated per-window work, its options."""

from __future__ import annotations

import math

import pytest
import torch

from anyquantile.modules.nbeats import (
    AnyQuantileNBeats,
    Conditioning,
    NBeatsBlock,
    NBeatsConfig,
    NBeatsStack,
    QuantileEmbedding,
    run_blocks,
)

T, H, C = 24, 6, 5  # history, horizon, context features
CONDITIONING_MODES = [mode.value for mode in Conditioning]


def _backbone(conditioning="film", embedding="identity", dim=1, context=0, seed=0) -> AnyQuantileNBeats:
    torch.manual_seed(seed)
    config = NBeatsConfig(
        conditioning=conditioning,
        num_blocks=3,
        num_layers=2,
        width=32,
        quantile_embedding=embedding,
        quantile_embedding_dim=dim,
        dropout=0.2,
    )  # dropout, so that eval mode matters
    return AnyQuantileNBeats(config, T, H, context_size=context).eval()


# --------------------------------------------------------------------------------------------
# Any-quantile independence

MODES = [
    (mode, kind, dim) for mode in CONDITIONING_MODES for kind, dim in (("identity", 1), ("cosine", 8), ("normal", 2))
]


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
    torch.testing.assert_close(
        normal[0, :, 1], torch.tensor([0.0, 1.959964, -1.959964, 1.0]), rtol=0, atol=1e-5
    )  # z(q) by table
    torch.testing.assert_close(normal[0, :, 0], torch.tensor([0.5, 0.975, 0.025, 0.8413447]))
    ends = QuantileEmbedding("normal", 2)(torch.tensor([0.0, 1.0]))
    assert torch.isfinite(ends).all() and ends[0, 1] < -4.7 and ends[1, 1] > 4.7


# --------------------------------------------------------------------------------------------
# Options


def test_unknown_conditioning_raises_with_the_choices():
    with pytest.raises(ValueError, match="unknown conditioning 'add'; choose one of cat, film, out"):
        NBeatsConfig(conditioning="add")


def test_unknown_embedding_raises_with_the_choices():
    with pytest.raises(ValueError, match="unknown quantile embedding 'sine'; choose one of identity, cosine, normal"):
        NBeatsConfig(quantile_embedding="sine")


def test_identity_embedding_with_dim_other_than_one_raises():
    with pytest.raises(ValueError, match="identity quantile embedding has dim 1"):
        NBeatsConfig(quantile_embedding="identity", quantile_embedding_dim=4)
    with pytest.raises(ValueError, match="dim must be positive"):
        QuantileEmbedding("cosine", 0)
    assert NBeatsConfig(conditioning="out").conditioning is Conditioning.out  # a name becomes its choice


def test_bad_block_arguments_raise():
    with pytest.raises(ValueError, match="num_blocks"):
        NBeatsConfig(num_blocks=0)
    with pytest.raises(ValueError, match="num_layers"):
        NBeatsConfig(num_layers=0)


@pytest.mark.parametrize("conditioning", CONDITIONING_MODES)
def test_every_backbone_parameter_receives_a_gradient(conditioning):
    torch.manual_seed(0)
    net = AnyQuantileNBeats(
        NBeatsConfig(conditioning=conditioning, num_blocks=3, num_layers=2, width=8), 24, 6, context_size=3
    )
    net(torch.randn(4, 24), torch.rand(4, 2), torch.randn(4, 3)).pow(2).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_nbeats_stack_is_the_level_free_part_of_the_out_backbone():
    out = _backbone("out", context=C)
    stack = NBeatsStack(NBeatsConfig(num_blocks=3, num_layers=2, width=32), T, H, context_size=C)
    stack.load_state_dict(
        {k: v for k, v in out.state_dict().items() if k.startswith("blocks.") and "blocks.2.backcast" not in k}
    )
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
    network = AnyQuantileNBeats(NBeatsConfig(conditioning="out", num_blocks=2, num_layers=L, width=D), T, H)
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


def test_stack_residual_is_the_history_less_its_blocks_backcasts():
    stack = NBeatsStack(NBeatsConfig(num_blocks=3, num_layers=2, width=32), T, H, context_size=C)
    history, context = torch.randn(4, T), torch.randn(4, C)
    residual, forecast = stack.residual_and_forecast(history, context)
    b0, f0 = stack.blocks[0](history, context)
    b1, f1 = stack.blocks[1](history - b0, context)
    _, f2 = stack.blocks[2](history - b0 - b1, context)  # the last block backcasts nothing
    torch.testing.assert_close(residual, history - b0 - b1)
    torch.testing.assert_close(forecast, f0 + f1 + f2)
    torch.testing.assert_close(forecast, stack(history, context))
