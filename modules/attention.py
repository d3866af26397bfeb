"""Hierarchically adaptive temporal attention (HATA): local and global heads, gated, with locality bias.

Self-attention over a sequence x [B, L, D] whose N heads are split into local heads (each query
sees only keys within ``window`` steps: exactly zero weight beyond) and global heads (see every
key). For head h, query i and key j, with distance d = |i - j| and head size hs:

    logits_hij = (q_hi . k_hj) * W_h(d) / sqrt(hs)  +  beta_h * (-d / window)  (+ -inf if masked)

- ``W_h(d) = sigmoid(f_h(d))`` are optional multiplicative *temporal weights*, f linear
  (a_h d / window + b_h) or sinusoidal (a_h sin(w_h d + p_h) + b_h), learnable;
- ``beta_h`` is the *soft locality bias*: learned, or scheduled (a buffer that moves linearly from
  ``bias_start`` to ``bias_end`` as training progresses; no gradient), or off;
- a key is masked where the history hour was not observed (``key_mask``) and, for local heads,
  where d > window. A query whose keys are all masked gets zero output rather than NaN.

Head outputs are scaled by a gate alpha in [0, 1] (local heads by alpha, global heads by 1 - alpha),
concatenated and fused by one projection. alpha = sigmoid(g) with g a learnable scalar, one per
head, one per time step, or computed per token from x; optionally plus a linear function of a
calendar embedding of each position (calendar-aware gates); or a fixed constant (the baseline).

Two paths compute the same thing: ``reference`` (dense [L, L] logits written out step by step,
readable, returns weights) and the fast path: local heads banded when L is long against the window
(memory and time linear in L), everything else in one fused dense pass (batch-independent terms
built once at [N, L, L]; fewest passes over [B, N, L, L]). Not ``scaled_dot_product_attention``: with
the same additive mask it measured slower on CPU than this hand-written masked pass (docs/design.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from anyquantile.modules.options import Choice, choose, require


class Gate(Choice):
    """How the gate alpha (the local heads' share) is computed."""

    fixed = "fixed"  # a constant, ``fixed_gate``
    scalar = "scalar"  # one learnt scalar
    head = "head"  # one learnt value per head
    step = "step"  # one learnt value per sequence position
    token = "token"  # computed from each token


class LocalityBias(Choice):
    """The soft locality bias beta on the logits."""

    learned = "learned"  # a learnt beta per head
    scheduled = "scheduled"  # moved from bias_start to bias_end as training progresses, no gradient
    off = "off"


class TemporalWeights(Choice):
    """The multiplicative temporal weights W_h(d) = sigmoid(f_h(d)) on the scores."""

    off = "off"
    linear = "linear"  # f linear in the distance
    sinusoidal = "sinusoidal"  # f a learnt sinusoid of the distance


class LocalPath(Choice):
    """How the fast path computes local heads: ``auto`` picks by length (:data:`BANDED_MIN_RATIO`)."""

    auto = "auto"
    banded = "banded"
    dense = "dense"


# Local heads take the banded path when L > BANDED_MIN_RATIO * (2 * window + 1): below that the
# fused dense pass is faster (benchmarks/attention_scaling.py; docs/results.md).
BANDED_MIN_RATIO = 16


@dataclass
class AttentionConfig:
    """The options of one adaptive attention layer (``model.attention.*``)."""

    d_model: int = 64
    num_heads: int = 4
    local_ratio: float = 0.5  # share of heads that are local
    window: int = 3  # local heads see keys within this many tokens (3 patches of 8 hours: a day either side)
    gate: Gate = Gate.scalar
    fixed_gate: float = 0.5  # alpha when gate = fixed
    bias: LocalityBias = LocalityBias.learned
    bias_init: float = 1.0
    bias_start: float = 2.0  # a scheduled beta moves from bias_start ...
    bias_end: float = 0.0  # ... to bias_end over model.attention.bias_schedule_steps training steps
    temporal_weights: TemporalWeights = TemporalWeights.off
    dropout: float = 0.0  # on the attention output (and in the HATA block); costly on CPU (docs/results.md)

    def __post_init__(self) -> None:
        self.gate = choose(Gate, self.gate, "gate")
        self.bias = choose(LocalityBias, self.bias, "locality bias")
        self.temporal_weights = choose(TemporalWeights, self.temporal_weights, "temporal weights")
        require(
            self.num_heads >= 1 and self.d_model % self.num_heads == 0,
            f"d_model ({self.d_model}) must be a multiple of num_heads ({self.num_heads})",
        )
        require(0.0 <= self.local_ratio <= 1.0, f"local_ratio must be in [0, 1], got {self.local_ratio}")
        require(self.window >= 1, f"window must be >= 1, got {self.window}")
        require(0.0 <= self.fixed_gate <= 1.0, f"fixed_gate must be in [0, 1], got {self.fixed_gate}")
        require(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class AttentionOutput:
    output: torch.Tensor  # [B, L, D]
    gate: torch.Tensor  # alpha, broadcastable to [B, N, L, 1], in [0, 1]
    weights: torch.Tensor | None = None  # [B, N, L, L] when asked for


class AdaptiveTemporalAttention(nn.Module):
    """HATA attention over ``x`` [B, L, D] as the module docstring writes it, with the options of ``config``.

    Args:
        config: the layer's options.
        max_length: the longest sequence it will see (needed by a per-step gate).
        gate_context_size: width E of the per-position context the gate reads (calendar-aware gates); 0: none.
        local_path: how the fast path computes local heads.
    """

    def __init__(
        self,
        config: AttentionConfig,
        max_length: int | None = None,
        gate_context_size: int = 0,
        local_path: LocalPath | str = LocalPath.auto,
    ) -> None:
        super().__init__()
        c = config
        require(
            c.gate != Gate.step or bool(max_length),
            "a per-step gate needs max_length (the longest sequence it will see)",
        )
        self.num_heads = c.num_heads
        self.num_local = round(c.num_heads * c.local_ratio)
        self.head_size = c.d_model // c.num_heads
        self.window = c.window
        self.gate_kind, self.bias_kind, self.temporal_kind = c.gate, c.bias, c.temporal_weights
        self.local_path = choose(LocalPath, local_path, "local path")
        self.qkv = nn.Linear(c.d_model, 3 * c.d_model)
        self.fuse = nn.Linear(c.d_model, c.d_model)
        self.dropout = nn.Dropout(c.dropout)

        N = c.num_heads
        if c.gate == Gate.fixed:
            self.register_buffer("gate_logit", torch.logit(torch.tensor(c.fixed_gate).clamp(1e-6, 1 - 1e-6)))
        elif c.gate == Gate.scalar:
            self.gate_logit = nn.Parameter(torch.zeros(()))
        elif c.gate == Gate.head:
            self.gate_logit = nn.Parameter(torch.zeros(N))
        elif c.gate == Gate.step:
            self.gate_logit = nn.Parameter(torch.zeros(max_length))
        else:  # token
            self.gate_from_token = nn.Linear(c.d_model, 1)
        self.gate_from_context = nn.Linear(gate_context_size, 1, bias=False) if gate_context_size else None

        if c.bias == LocalityBias.learned:
            self.beta = nn.Parameter(torch.full((N,), float(c.bias_init)))
        elif c.bias == LocalityBias.scheduled:
            self.bias_start, self.bias_end = c.bias_start, c.bias_end
            self.register_buffer("beta", torch.full((N,), float(c.bias_start)))

        if c.temporal_weights != TemporalWeights.off:
            sinusoidal = c.temporal_weights == TemporalWeights.sinusoidal
            # a_h: linear weights start flat in d; sinusoidal ones with a small ripple, since with
            # a_h = 0 the frequency and phase would get no gradient at all.
            self.temporal_scale = nn.Parameter(torch.full((N,), 0.5 if sinusoidal else 0.0))
            self.temporal_offset = nn.Parameter(torch.full((N,), 3.0))  # b_h: sigmoid(3) ~ 0.95
            if sinusoidal:
                self.temporal_frequency = nn.Parameter(torch.full((N,), 2 * math.pi / 24))  # a daily period
                self.temporal_phase = nn.Parameter(torch.zeros(N))

    # -- the parts ---------------------------------------------------------------------------

    def set_schedule_progress(self, progress: float) -> None:
        """Move a scheduled beta to ``bias_start + (bias_end - bias_start) * progress``, progress in [0, 1]."""
        if self.bias_kind == LocalityBias.scheduled:
            progress = min(max(progress, 0.0), 1.0)
            self.beta.fill_(self.bias_start + (self.bias_end - self.bias_start) * progress)

    def gate(self, x: torch.Tensor, gate_context: torch.Tensor | None = None) -> torch.Tensor:
        """alpha in [0, 1], broadcastable to [B, N, L, 1]."""
        B, L, _ = x.shape
        if self.gate_kind in (Gate.fixed, Gate.scalar):
            logit = self.gate_logit.reshape(1, 1, 1, 1)
        elif self.gate_kind == Gate.head:
            logit = self.gate_logit.reshape(1, -1, 1, 1)  # [1, N, 1, 1]
        elif self.gate_kind == Gate.step:
            logit = self.gate_logit[:L].reshape(1, 1, L, 1)  # [1, 1, L, 1]
        else:
            logit = self.gate_from_token(x).reshape(B, 1, L, 1)  # [B, 1, L, 1]
        if self.gate_from_context is not None:
            if gate_context is None:
                raise ValueError("this attention has calendar-aware gates: pass gate_context [B, L, E]")
            logit = logit + self.gate_from_context(gate_context).reshape(B, 1, L, 1)
        return torch.sigmoid(logit)

    def temporal_weight(self, distance: torch.Tensor) -> torch.Tensor:
        """W_h(d) = sigmoid(f_h(d)) for distances ``distance`` [...]: [N, ...]."""
        d = distance.to(self.temporal_scale.dtype)
        shape = (-1,) + (1,) * d.dim()
        a, b = self.temporal_scale.reshape(shape), self.temporal_offset.reshape(shape)
        if self.temporal_kind == TemporalWeights.linear:
            return torch.sigmoid(a * d / self.window + b)
        w, p = self.temporal_frequency.reshape(shape), self.temporal_phase.reshape(shape)
        return torch.sigmoid(a * torch.sin(w * d + p) + b)

    def _locality_bias(self, distance: torch.Tensor) -> torch.Tensor | None:
        """beta_h * (-d / window): [N, ...] for distances [...], or None when off."""
        if self.bias_kind == LocalityBias.off:
            return None
        return self.beta.reshape((-1,) + (1,) * distance.dim()) * (-distance / self.window)

    # -- forward -----------------------------------------------------------------------------

    def forward(
        self,
        x: torch.Tensor,
        key_mask: torch.Tensor | None = None,
        gate_context: torch.Tensor | None = None,
        return_weights: bool = False,
        reference: bool = False,
    ) -> AttentionOutput:
        """x [B, L, D]; key_mask [B, L], True where a key may be attended; gate_context [B, L, E]."""
        B, L, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=-1)
        q, k, v = (t.reshape(B, L, self.num_heads, self.head_size).transpose(1, 2) for t in (q, k, v))  # [B, N, L, hs]
        if key_mask is None:
            key_mask = torch.ones(B, L, dtype=torch.bool, device=x.device)
        if reference or return_weights:
            heads, weights = self._dense_attention(q, k, v, key_mask, slice(0, self.num_heads))
        else:
            heads, weights = self._fast_attention(q, k, v, key_mask), None
        alpha = self.gate(x, gate_context)  # [.., .., L or 1, 1]
        is_local = torch.arange(self.num_heads, device=x.device) < self.num_local  # [N]
        scale = torch.where(is_local.reshape(1, -1, 1, 1), alpha, 1 - alpha)  # [B or 1, N, L or 1, 1]
        heads = heads * scale  # [B, N, L, hs]
        output = self.fuse(heads.transpose(1, 2).reshape(B, L, D))  # [B, L, D]
        return AttentionOutput(output=self.dropout(output), gate=alpha, weights=weights)

    def _distance(self, length: int, device: torch.device) -> torch.Tensor:
        position = torch.arange(length, device=device)
        return (position[:, None] - position[None, :]).abs()  # [L, L]

    def _reach(self, distance: torch.Tensor, heads: slice) -> torch.Tensor:
        """[n, X, Y], False where a local head of ``heads`` may not look (distance > window)."""
        is_local = torch.arange(self.num_heads, device=distance.device)[heads] < self.num_local  # [n]
        return ~(is_local.reshape(-1, 1, 1) & (distance > self.window))

    def _logits(
        self, scores: torch.Tensor, distance: torch.Tensor, heads: slice, reach: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(q . k) * W(d) / sqrt(hs) + beta * (-d / window) for the heads ``heads``, and -inf out of ``reach``.

        scores: [B, n, X, Y]; distance: [X or 1, Y], the query-key distance of each score; reach:
        [n, X, Y] or None. The terms that do not depend on the batch (bias, reach) are built at
        their own small size and added to the scores in one pass, in the scores' dtype.
        """
        if self.temporal_kind != TemporalWeights.off:
            scores = scores * self.temporal_weight(distance)[heads].to(scores.dtype)  # W [n, X or 1, Y]
        bias = self._locality_bias(distance)  # [N, X or 1, Y] or None
        table = None if bias is None else bias[heads]
        if reach is not None:
            outside = torch.zeros(reach.shape, device=scores.device).masked_fill(~reach, float("-inf"))  # [n, X, Y]
            table = outside if table is None else table + outside
        if table is None:
            return scores / math.sqrt(self.head_size)
        return torch.add(table.to(scores.dtype), scores, alpha=1 / math.sqrt(self.head_size))

    def _dense_attention(self, q, k, v, key_mask, heads: slice) -> tuple[torch.Tensor, torch.Tensor]:
        """Reference path for the heads ``heads`` (q, k, v [B, n, L, hs]): every logit of [B, n, L, L] written out."""
        B, n, L, hs = q.shape
        distance = self._distance(L, q.device)  # [L, L]
        logits = self._logits(q @ k.transpose(-2, -1), distance, heads)  # [B, n, L, L]
        visible = key_mask[:, None, None, :] & self._reach(distance, heads)  # [B, n, L, L]
        weights = _masked_softmax(logits, visible)
        return weights @ v, weights  # [B, n, L, hs], [B, n, L, L]

    def _fast_attention(self, q, k, v, key_mask) -> torch.Tensor:
        """Local heads banded when the sequence is long against the window; every other head
        (and short sequences) through one fused dense pass."""
        L = q.shape[2]
        long_enough = L > BANDED_MIN_RATIO * (2 * self.window + 1)
        if 0 < self.num_local and (
            self.local_path == LocalPath.banded or (self.local_path == LocalPath.auto and long_enough)
        ):
            local, rest = slice(0, self.num_local), slice(self.num_local, self.num_heads)
            parts = [self._banded_local(q[:, local], k[:, local], v[:, local], key_mask, local)]
            if rest.start < rest.stop:
                parts.append(self._fused_dense(q[:, rest], k[:, rest], v[:, rest], key_mask, rest))
            return torch.cat(parts, dim=1)  # [B, N, L, hs]
        return self._fused_dense(q, k, v, key_mask, slice(0, self.num_heads))

    def _fused_dense(self, q, k, v, key_mask, heads: slice) -> torch.Tensor:
        """The reference computation with as few passes over [B, n, L, L] as it takes.

        Everything that does not depend on the batch (locality bias, temporal weights, the band
        of local heads) is built once at [n, L, L]; the logits are one batched matmul plus that
        table, the key mask one in-place fill, then the softmax. A masked key is filled with the
        dtype's lowest finite value rather than -inf, so a row with nothing to see stays finite;
        such rows are zeroed after the matmul with v (``has_keys``).
        """
        distance = self._distance(q.shape[2], q.device)  # [L, L]
        in_reach = self._reach(distance, heads)  # [n, L, L]: the band of local heads
        logits = self._logits(q @ k.transpose(-2, -1), distance, heads, reach=in_reach)  # [B, n, L, L]
        logits.masked_fill_(~key_mask[:, None, None, :], torch.finfo(logits.dtype).min)
        weights = torch.softmax(logits, dim=-1)  # [B, n, L, L]
        # A query has keys when some key in its reach is observed: [B, L] x [n, L, L] -> [B, n, L].
        has_keys = torch.einsum("bj,nij->bni", key_mask.to(q.dtype), in_reach.to(q.dtype)) > 0
        return (weights.to(v.dtype) @ v) * has_keys[..., None]  # [B, n, L, hs]

    def _banded_local(self, q, k, v, key_mask, heads: slice) -> torch.Tensor:
        """Local heads over a band of 2w + 1 keys per query: memory and time O(L * w)."""
        B, n, L, hs = q.shape
        w = self.window
        k_band = F.pad(k, (0, 0, w, w)).unfold(2, 2 * w + 1, 1).transpose(-2, -1)  # [B, n, L, 2w+1, hs]
        v_band = F.pad(v, (0, 0, w, w)).unfold(2, 2 * w + 1, 1).transpose(-2, -1)  # [B, n, L, 2w+1, hs]
        mask_band = F.pad(key_mask, (w, w), value=False).unfold(1, 2 * w + 1, 1)  # [B, L, 2w+1], False off the ends
        scores = (q[..., None, :] * k_band).sum(-1)  # [B, n, L, 2w+1]; key = query + offset - w
        distance = torch.arange(-w, w + 1, device=q.device).abs()[None]  # [1, 2w + 1], the same for every query
        logits = self._logits(scores, distance, heads)  # [B, n, L, 2w+1]
        weights = _masked_softmax(logits, mask_band[:, None])  # [B, n, L, 2w+1]
        return (weights[..., None] * v_band).sum(-2)  # [B, n, L, hs]


def _masked_softmax(logits: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis where ``visible``; exactly 0 elsewhere, and all 0 in a row with nothing visible."""
    any_visible = visible.any(dim=-1, keepdim=True)
    # Rows with nothing visible get finite logits (so neither forward nor backward sees NaN) and are zeroed.
    logits = logits.masked_fill(~visible, float("-inf")).masked_fill(~any_visible, 0.0)
    return torch.softmax(logits, dim=-1) * any_visible
