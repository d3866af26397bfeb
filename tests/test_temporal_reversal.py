"""analysis/temporal_reversal.py: the temporal weights, the plain attention it falls back to, learning, the CLI."""

from __future__ import annotations

import json

import pytest
import torch

from analysis import temporal_reversal
from analysis.temporal_reversal import ReversalSettings, TemporalSelfAttention, accuracy, run


def test_standard_attention_is_the_scaled_dot_product():
    torch.manual_seed(0)
    layer = TemporalSelfAttention(d_model=16, num_heads=4, length=6, temporal=False, dropout=0.0)
    x = torch.randn(3, 6, 16)
    _, attention = layer(x)
    q, k, _ = layer.qkv(x).view(3, 6, 3, 4, 4).permute(2, 0, 3, 1, 4)
    expected = torch.softmax(q @ k.transpose(-1, -2) / 2.0, dim=-1)  # sqrt(head_dim 4) = 2
    torch.testing.assert_close(attention, expected)
    assert layer.temporal_weights() is None


def test_temporal_weights_multiply_the_scores_before_the_softmax():
    torch.manual_seed(0)
    layer = TemporalSelfAttention(d_model=16, num_heads=4, length=6, temporal=True, dropout=0.0)
    weights = layer.temporal_weights()
    assert weights.shape == (4, 6, 6) and bool(((weights > 0) & (weights < 1)).all())
    x = torch.randn(2, 6, 16)
    _, attention = layer(x)
    q, k, _ = layer.qkv(x).view(2, 6, 3, 4, 4).permute(2, 0, 3, 1, 4)
    torch.testing.assert_close(attention, torch.softmax(q @ k.transpose(-1, -2) * weights / 2.0, dim=-1))
    torch.testing.assert_close(attention.sum(-1), torch.ones(2, 4, 6))


def test_accuracy_counts_tokens_and_whole_sequences():
    class Oracle(torch.nn.Module):  # reverses all but the first position of each output
        def forward(self, tokens):
            target = tokens.flip(-1).clone()
            target[:, 0] = (target[:, 0] + 1) % 5
            return torch.nn.functional.one_hot(target, 5).float()

    tokens = torch.randint(5, (8, 4))
    assert accuracy(Oracle(), tokens) == pytest.approx((0.75, 0.0))


@pytest.mark.parametrize("variant", ["standard", "temporal"])
def test_both_variants_learn_short_reversals_well_above_chance(variant):
    settings = ReversalSettings(length=4, vocab=4, steps=300, test_sequences=500, checkpoints=(300,))
    record = run(variant, seed=0, settings=settings)
    assert record["step"] == [300]
    assert record["token_accuracy"][0] > 0.45  # chance is 0.25


def test_cli_writes_the_table_json_and_figure(tmp_path):
    assert temporal_reversal.main(["--seeds", "0", "1", "--steps", "3", "--length", "5", "--out", str(tmp_path)]) == 0
    table = (tmp_path / "temporal_reversal.md").read_text()
    assert "| temporal, token accuracy % |" in table and "| standard, sequence accuracy % |" in table
    saved = json.loads((tmp_path / "temporal_reversal.json").read_text())
    assert (
        saved["seeds"] == [0, 1] and len(saved["runs"]["temporal"]) == 2 and saved["runs"]["standard"][0]["step"] == [3]
    )
    assert (tmp_path / "learning_curves.png").stat().st_size > 0
    assert temporal_reversal.main(["--length", "1", "--out", str(tmp_path)]) == 2
    with pytest.raises(ValueError, match="unknown variant"):
        run("relative", 0, ReversalSettings(steps=1))
