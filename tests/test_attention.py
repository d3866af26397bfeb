"""Adaptive temporal attention: locality, masking, gates, bias, temporal weights, fast == reference."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import anyquantile.modules.attention as attention_module
from anyquantile.modules.attention import (
    AdaptiveTemporalAttention,
    AttentionConfig,
    Gate,
    LocalityBias,
    TemporalWeights,
)

GATE_KINDS = [kind.value for kind in Gate]
BIAS_KINDS = [kind.value for kind in LocalityBias]
TEMPORAL_WEIGHT_KINDS = [kind.value for kind in TemporalWeights]

B, L, D, N, W = 2, 30, 16, 4, 4


def make(
    max_length: int | None = L, gate_context_size: int = 0, local_path: str = "auto", **options
) -> AdaptiveTemporalAttention:
    """An attention layer of width D, N heads, window W, with ``options`` of its AttentionConfig."""
    torch.manual_seed(0)
    config = AttentionConfig(**{"d_model": D, "num_heads": N, "window": W, **options})
    return AdaptiveTemporalAttention(
        config, max_length=max_length, gate_context_size=gate_context_size, local_path=local_path
    )


def inputs(seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(B, L, D, generator=generator)
    mask = torch.rand(B, L, generator=generator) > 0.2
    return x, mask


def test_local_heads_put_exactly_zero_weight_outside_their_window():
    attention = make(local_ratio=0.5)
    x, _ = inputs()
    weights = attention(x, return_weights=True).weights  # [B, N, L, L]
    distance = (torch.arange(L)[:, None] - torch.arange(L)[None, :]).abs()
    local, global_ = weights[:, : attention.num_local], weights[:, attention.num_local :]
    assert (local[..., distance > W] == 0).all()
    assert (local[..., distance <= W] > 0).all()
    assert (global_[..., distance > W] > 0).all()  # global heads see everything
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, N, L))


def test_masked_keys_get_zero_weight_and_an_unobserved_window_gives_zeros_without_nan():
    attention = make()
    x, mask = inputs()
    mask[1] = False
    x.requires_grad_(True)
    result = attention(x, key_mask=mask, return_weights=True)
    assert (result.weights[0][..., ~mask[0]] == 0).all()
    assert (result.weights[1] == 0).all()
    fast = attention(x, key_mask=mask)
    fast.output.sum().backward()
    assert torch.isfinite(x.grad).all()
    for p in attention.parameters():
        assert p.grad is None or torch.isfinite(p.grad).all()


@pytest.mark.parametrize(
    "temporal_weights,gate,bias,local_ratio",
    [
        (t, g, b, r)
        for (t, g, b), r in zip(
            itertools.product(TEMPORAL_WEIGHT_KINDS, GATE_KINDS, BIAS_KINDS), itertools.cycle([0.5, 0.25, 1.0, 0.0])
        )
    ],
)
@pytest.mark.parametrize("local_path", ["banded", "dense"])
def test_fast_path_agrees_with_reference(temporal_weights, gate, bias, local_ratio, local_path):
    attention = make(
        temporal_weights=temporal_weights,
        gate=gate,
        bias=bias,
        local_ratio=local_ratio,
        gate_context_size=3,
        local_path=local_path,
    )
    x, mask = inputs()
    mask[0, 10:20] = False  # a gap longer than the window: some queries' local windows see nothing
    context = torch.randn(B, L, 3)
    reference = attention(x, mask, context, reference=True).output
    x.requires_grad_(True)
    fast = attention(x, mask, context).output
    torch.testing.assert_close(fast, reference, atol=1e-5, rtol=1e-5)
    fast.sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize(
    "length,expected", [(30, "dense"), ((attention_module.BANDED_MIN_RATIO + 1) * (2 * W + 1), "banded")]
)
def test_auto_path_picks_the_band_for_long_sequences(length, expected, monkeypatch):
    attention = make(local_ratio=1.0, gate="scalar")
    calls = []
    for path, method in (("banded", "_banded_local"), ("dense", "_fused_dense")):
        original = getattr(attention, method)
        monkeypatch.setattr(
            attention, method, lambda *args, _path=path, _original=original: calls.append(_path) or _original(*args)
        )
    attention(torch.randn(1, length, D))
    assert calls == [expected]


def test_learned_bias_is_trained_and_scheduled_bias_follows_its_schedule_without_gradient():
    learned = make(bias="learned", bias_init=0.7)
    assert isinstance(learned.beta, torch.nn.Parameter)
    learned(inputs()[0]).output.sum().backward()
    assert learned.beta.grad is not None and learned.beta.grad.abs().sum() > 0

    scheduled = make(bias="scheduled", bias_start=2.0, bias_end=0.5)
    assert "beta" not in dict(scheduled.named_parameters()) and "beta" in dict(scheduled.named_buffers())
    for progress, expected in ((0.0, 2.0), (0.5, 1.25), (1.0, 0.5), (3.0, 0.5)):
        scheduled.set_schedule_progress(progress)
        torch.testing.assert_close(scheduled.beta, torch.full((N,), expected))
    scheduled(inputs()[0]).output.sum().backward()
    assert not scheduled.beta.requires_grad


def test_locality_bias_shifts_logits_by_beta_times_minus_distance_over_window():
    """One global head, no temporal weights: weights = softmax(q.k / sqrt(hs) - beta * d / w)."""
    attention = make(num_heads=1, local_ratio=0.0, bias="learned", bias_init=1.5)
    x, _ = inputs()
    weights = attention(x, return_weights=True).weights[:, 0]  # [B, L, L]
    q, k, _ = attention.qkv(x).split(D, dim=-1)
    distance = (torch.arange(L)[:, None] - torch.arange(L)[None, :]).abs().float()
    expected = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(D) - 1.5 * distance / W, dim=-1)
    torch.testing.assert_close(weights, expected, atol=1e-6, rtol=1e-5)


def test_temporal_weights_start_as_documented():
    """At the start W_h(d) = sigmoid(3) ~ 0.95 for every distance when linear (flat in d); when sinusoidal
    sigmoid(0.5 sin(2 pi d / 24) + 3), a small daily ripple, so the frequency and phase get a gradient."""
    d = torch.tensor([0.0, 6.0, 12.0, 18.0])
    linear = make(temporal_weights="linear").temporal_weight(d)
    torch.testing.assert_close(linear, torch.full((N, 4), 1 / (1 + math.exp(-3.0))))
    sinusoidal = make(temporal_weights="sinusoidal").temporal_weight(d)
    ripple = torch.tensor([3.0, 3.5, 3.0, 2.5])  # 0.5 sin(2 pi d / 24) + 3 at d = 0, 6, 12, 18
    torch.testing.assert_close(sinusoidal, torch.sigmoid(ripple).expand(N, -1))


@pytest.mark.parametrize("kind", ["linear", "sinusoidal"])
def test_temporal_weights_follow_their_formula(kind):
    attention = make(num_heads=1, local_ratio=0.0, bias="off", temporal_weights=kind)
    with torch.no_grad():
        attention.temporal_scale.fill_(-2.0)
        attention.temporal_offset.fill_(0.5)
    d = torch.arange(L).float()
    if kind == "linear":
        expected = torch.sigmoid(-2.0 * d / W + 0.5)
    else:
        expected = torch.sigmoid(-2.0 * torch.sin(2 * math.pi / 24 * d) + 0.5)
    torch.testing.assert_close(attention.temporal_weight(d)[0], expected)

    x, _ = inputs()
    weights = attention(x, return_weights=True).weights[:, 0]
    q, k, _ = attention.qkv(x).split(D, dim=-1)
    distance = (torch.arange(L)[:, None] - torch.arange(L)[None, :]).abs().float()
    logits = (q @ k.transpose(1, 2)) * attention.temporal_weight(distance)[0] / math.sqrt(D)
    torch.testing.assert_close(weights, torch.softmax(logits, dim=-1), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("gate", GATE_KINDS)
def test_gates_stay_in_unit_interval_and_calendar_aware_gates_follow_the_calendar(gate):
    attention = make(gate=gate, fixed_gate=0.3, gate_context_size=3)
    x, _ = inputs()
    with torch.no_grad():
        attention.gate_from_context.weight.fill_(5.0)
    low = attention.gate(x, torch.full((B, L, 3), -1.0))
    high = attention.gate(x, torch.full((B, L, 3), 1.0))
    for alpha in (low, high):
        assert ((alpha >= 0) & (alpha <= 1)).all()
    assert (high > low).all()  # the calendar moves the gate
    # the calendar adds no offset of its own (the base logit carries it): a zero calendar leaves the base gate,
    # 0.5 for the learnt gates at their start, the fixed value, or the token gate's own
    base = torch.sigmoid(attention.gate_from_token(x)).reshape(B, 1, L, 1) if gate == "token" else None
    expected = {"fixed": torch.tensor(0.3), "token": base}.get(gate, torch.tensor(0.5))
    zero_calendar = attention.gate(x, torch.zeros(B, L, 3))
    torch.testing.assert_close(zero_calendar, expected.expand_as(zero_calendar))


def test_fixed_gate_is_a_constant_and_scales_local_and_global_heads():
    attention = make(gate="fixed", fixed_gate=0.3)
    x, _ = inputs()
    alpha = attention(x).gate
    torch.testing.assert_close(alpha, torch.full_like(alpha, 0.3))
    assert not any("gate" in name for name, _ in attention.named_parameters())


def hand_computed_heads(attention: AdaptiveTemporalAttention, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each head's output [B, N, L, hs] written out: softmax(q.k / sqrt(hs)) over the visible keys, times v
    (no bias, no temporal weights); local heads see keys within W, global heads all; no visible key: zeros."""
    hs = D // N
    q, k, v = (t.reshape(B, L, N, hs).transpose(1, 2) for t in attention.qkv(x).split(D, dim=-1))
    distance = (torch.arange(L)[:, None] - torch.arange(L)[None, :]).abs()
    heads = []
    for h in range(N):
        visible = mask[:, None, :].expand(B, L, L)
        if h < attention.num_local:
            visible = visible & (distance <= W)
        logits = (q[:, h] @ k[:, h].transpose(1, 2) / math.sqrt(hs)).masked_fill(~visible, float("-inf"))
        weights = torch.softmax(logits, dim=-1).nan_to_num(0.0)  # a row with nothing visible: all zero
        heads.append(weights @ v[:, h])
    return torch.stack(heads, dim=1)


@pytest.mark.parametrize("path", ["reference", "banded", "dense"])
def test_fixed_gate_scales_local_heads_by_alpha_and_global_heads_by_one_minus_alpha(path):
    """Output = fuse(concat(alpha * local heads, (1 - alpha) * global heads)), computed by hand, with alpha = 0.9;
    and at alpha -> 1 the global heads drop out: the output is the local heads' alone."""
    x, mask = inputs()
    # alpha = 1: the limit, where only the local heads count (fixed_gate = 1 is clamped to 1 - 1e-6)
    for alpha in (0.9, 1.0):
        attention = make(
            gate="fixed",
            fixed_gate=alpha,
            bias="off",
            local_ratio=0.5,
            local_path="auto" if path == "reference" else path,
        )
        assert attention.num_local == 2  # heads 0, 1 local; 2, 3 global
        with torch.no_grad():
            output = attention(x, mask, reference=path == "reference").output
            heads = hand_computed_heads(attention, x, mask)  # [B, N, L, hs]
            local, global_ = heads[:, :2], heads[:, 2:]
            assert (local - global_).abs().max() > 0.1  # the two kinds of heads are told apart
            combined = torch.cat([alpha * local, (1 - alpha) * global_], dim=1)  # [B, N, L, hs]; alpha = 1: no global
            expected = attention.fuse(combined.transpose(1, 2).reshape(B, L, D))
            torch.testing.assert_close(output, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "gate,temporal_weights,reference",
    [("token", "sinusoidal", False), ("step", "linear", True), ("head", "off", False)],
)
def test_every_parameter_receives_a_gradient(gate, temporal_weights, reference):
    attention = make(gate=gate, temporal_weights=temporal_weights, gate_context_size=3)
    x, mask = inputs()
    attention(x, mask, torch.randn(B, L, 3), reference=reference).output.pow(2).sum().backward()
    for name, p in attention.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_calendar_aware_gate_needs_its_context():
    attention = make(gate_context_size=3)
    with pytest.raises(ValueError, match="gate_context"):
        attention(inputs()[0])


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(d_model=10, num_heads=4), "multiple of num_heads"),
        (dict(local_ratio=1.5), "local_ratio"),
        (dict(window=0), "window"),
        (dict(gate="sometimes"), "unknown gate 'sometimes'; choose one of fixed, scalar, head, step, token"),
        (dict(bias="sometimes"), "unknown locality bias 'sometimes'; choose one of learned, scheduled, off"),
        (dict(temporal_weights="cubic"), "unknown temporal weights 'cubic'; choose one of off, linear, sinusoidal"),
        (dict(local_path="diagonal"), "unknown local path 'diagonal'; choose one of auto, banded, dense"),
        (dict(gate="step", max_length=None), "max_length"),
        (dict(fixed_gate=2.0), "fixed_gate"),
    ],
)
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make(**kwargs)


def test_the_options_default_as_documented():
    """What a config that leaves model.attention.* unset gets (docs/design.md): a changed default changes
    every such run, so it is changed here too, on purpose."""
    defaults = AttentionConfig()
    assert (defaults.d_model, defaults.num_heads, defaults.local_ratio, defaults.window) == (64, 4, 0.5, 3)
    assert (defaults.gate, defaults.fixed_gate) == ("scalar", 0.5)
    assert (defaults.bias, defaults.bias_init, defaults.bias_start, defaults.bias_end) == ("learned", 1.0, 2.0, 0.0)
    assert (defaults.temporal_weights, defaults.dropout) == ("off", 0.0)


@pytest.mark.parametrize(
    "options", [dict(window=1), dict(gate="fixed", fixed_gate=0.0), dict(gate="fixed", fixed_gate=1.0)]
)
def test_the_ranges_closed_ends_are_accepted(options):
    """window >= 1 and fixed_gate in [0, 1]: the ends themselves build and run, and a fixed gate at an end
    keeps a finite logit (an infinite one would be saved in checkpoints and exported graphs)."""
    x, mask = inputs()
    layer = make(**options)
    assert layer(x, mask).output.shape == (B, L, D)
    if options.get("gate") == "fixed":
        assert torch.isfinite(layer.gate_logit).all()


@pytest.mark.parametrize("dropout", [1.0, 1.5])
def test_a_dropout_of_one_or_more_is_refused(dropout):
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        AttentionConfig(dropout=dropout)


def test_a_layer_built_with_the_defaults_takes_no_gate_context_and_returns_no_weights_unless_asked():
    x, mask = inputs()
    layer = AdaptiveTemporalAttention(AttentionConfig(d_model=D, num_heads=N, window=W), max_length=L)
    output = layer(x, mask)  # no gate_context: a calendar-aware gate would ask for one
    assert output.weights is None
    assert layer(x, mask, return_weights=True).weights.shape == (B, N, L, L)
