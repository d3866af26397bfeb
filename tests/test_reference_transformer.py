"""analysis/reference_transformer.py: sizes of the study, attention read per layer and head, it learns."""

from __future__ import annotations

import pytest
import torch

from analysis.reference_transformer import ReferenceTransformer
from anyquantile.dataset.generators import generate


def test_shapes_and_attention_per_layer_and_head():
    model = ReferenceTransformer().eval()
    assert (model.layers[0].attention.embed_dim, model.layers[0].attention.num_heads, len(model.layers)) == (64, 4, 2)
    assert model.layers[0].ffn[0].out_features == 256
    history = torch.randn(3, 100)
    forecast, weights = model(history, return_attention=True)
    assert forecast.shape == (3, 20) and len(weights) == 2
    for layer in weights:
        assert layer.shape == (3, 4, 100, 100)
        torch.testing.assert_close(layer.sum(dim=-1), torch.ones(3, 4, 100))
    torch.testing.assert_close(model(history), forecast)  # the read-out does not change the forecast
    with pytest.raises(ValueError, match="100 past points"):
        model(torch.randn(2, 50))


def test_scale_and_shift_of_the_input_carry_to_the_forecast():
    model = ReferenceTransformer().eval()
    history = torch.randn(2, 100)
    torch.testing.assert_close(model(10 * history + 5), 10 * model(history) + 5, rtol=1e-4, atol=1e-3)


def test_it_learns_a_sinusoid_on_mse():
    torch.manual_seed(0)
    values = torch.tensor(
        generate("multi_seasonal", 1400, seed=0, periods=(24.0,), amplitudes=(3.0,), noise=0.1).values,
        dtype=torch.float32,
    )
    windows = values.unfold(0, 120, 20)  # [65, 120]
    history, target = windows[:, :100], windows[:, 100:]
    model = ReferenceTransformer()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.mse_loss(model(history), target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]  # the series' variance is 4.5; a periodic signal is learnt quickly
