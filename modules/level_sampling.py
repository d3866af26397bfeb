"""Drawing the quantile levels each training sample is scored at.

Every sampler draws ``levels_per_sample`` random levels per sample, then appends the same
``fixed_levels`` (e.g. the median and interval ends) to every sample. Three kinds of random draw:

- ``uniform``: independent U(0, 1) levels. The mean pinball loss over them estimates the uniform-q
  integral of the pinball loss, which is CRPS / 2.
- ``beta``: Beta(alpha, beta) levels; alpha = beta < 1 puts more of them in the tails. This changes
  the training objective (the integral is weighted by the Beta density).
- ``adaptive``: levels drawn where the model is weakest (:class:`AdaptiveLevelSampler`), with
  importance weights that keep the objective the uniform-q integral.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from anyquantile.modules.options import Choice, choose, require


class SamplerKind(Choice):
    uniform = "uniform"
    beta = "beta"
    adaptive = "adaptive"


class Weakness(Choice):
    """What an adaptive sampler measures per bin (see :class:`AdaptiveLevelSampler`)."""

    raw = "raw"
    variance = "variance"
    gaussian = "gaussian"
    calibration = "calibration"


def _only_for(kind: SamplerKind) -> dict[str, SamplerKind]:
    """Field metadata: the option applies to this sampler kind alone."""
    return {"only_for": kind}


@dataclass
class SamplerConfig:
    """How training levels are drawn (``sampler.*``; presets in config/sampler/).

    A field marked for one kind (``_only_for``) must keep its default under the other kinds: a
    setting that the chosen sampler would ignore is an error, not silently dropped.
    """

    kind: SamplerKind = SamplerKind.uniform
    levels_per_sample: int = 1  # random levels per sample (for adaptive: its adaptive levels)
    fixed_levels: list[float] = field(default_factory=list)  # added to every sample, e.g. [0.5, 0.05, 0.95]
    alpha: float = field(default=0.5, metadata=_only_for(SamplerKind.beta))
    beta: float = field(default=0.5, metadata=_only_for(SamplerKind.beta))
    num_bins: int = field(default=20, metadata=_only_for(SamplerKind.adaptive))
    # running per-bin estimates: new = momentum * old + (1 - momentum) * batch
    momentum: float = field(default=0.98, metadata=_only_for(SamplerKind.adaptive))
    # softmax temperature over relative bin weakness; higher = closer to uniform
    temperature: float = field(default=1.0, metadata=_only_for(SamplerKind.adaptive))
    # floor of each bin's probability; min_prob * num_bins <= 1
    min_prob: float = field(default=0.01, metadata=_only_for(SamplerKind.adaptive))
    # weight levels by uniform / sampling density (the objective stays CRPS / 2)
    importance_weighting: bool = field(default=True, metadata=_only_for(SamplerKind.adaptive))
    weakness: Weakness = field(default=Weakness.gaussian, metadata=_only_for(SamplerKind.adaptive))

    def __post_init__(self) -> None:
        self.kind = choose(SamplerKind, self.kind, "level sampler")
        self.weakness = choose(Weakness, self.weakness, "weakness measure")
        for option in fields(self):
            kind = option.metadata.get("only_for")
            if kind is not None and kind != self.kind and getattr(self, option.name) != option.default:
                raise ValueError(
                    f"sampler.{option.name} applies only to sampler.kind={kind}, but sampler.kind is '{self.kind}'"
                )
        require(self.levels_per_sample >= 1, f"levels_per_sample must be >= 1, got {self.levels_per_sample}")
        for level in self.fixed_levels:
            require(0.0 < level < 1.0, f"fixed levels must be in (0, 1), got {level}")
        require(
            self.alpha > 0 and self.beta > 0,
            f"Beta parameters must be positive, got alpha={self.alpha}, beta={self.beta}",
        )
        require(self.num_bins >= 1, f"num_bins must be >= 1, got {self.num_bins}")
        require(0.0 <= self.momentum < 1.0, f"momentum must be in [0, 1), got {self.momentum}")
        require(self.temperature > 0, f"temperature must be > 0, got {self.temperature}")
        require(
            0 <= self.min_prob and self.min_prob * self.num_bins <= 1 + 1e-9,
            f"min_prob must be in [0, 1 / num_bins] so that the floors sum to at most 1; got min_prob={self.min_prob} "
            f"with num_bins={self.num_bins} (min_prob * num_bins = {self.min_prob * self.num_bins:g})",
        )


@dataclass(frozen=True)
class LevelDraw:
    """Levels for a batch, ``[B, Q]`` in (0, 1), and optional per-level loss weights ``[B, Q]``."""

    levels: torch.Tensor
    weights: torch.Tensor | None = None


class LevelSampler(nn.Module):
    """``(batch_size, device) -> LevelDraw``: random levels (subclasses draw them) plus fixed levels.

    ``observe`` receives each training batch's forecasts at the drawn levels; samplers that learn
    from them (the adaptive one) override it, the others ignore it.
    """

    kind: SamplerKind  # the kind of config each subclass draws by

    def __init__(self, config: SamplerConfig) -> None:
        super().__init__()
        require(config.kind == self.kind, f"{type(self).__name__} draws sampler.kind={self.kind}, got {config.kind}")
        self.levels_per_sample = config.levels_per_sample
        self.register_buffer(
            "fixed_levels", torch.tensor(list(config.fixed_levels), dtype=torch.float32), persistent=False
        )

    def forward(self, batch_size: int, device: torch.device) -> LevelDraw:
        random = self.draw(batch_size, device)  # levels [B, A]
        if len(self.fixed_levels) == 0:
            return random
        fixed = self.fixed_levels.to(device).expand(batch_size, -1)  # [B, F]
        weights = None
        if random.weights is not None:  # a fixed level counts as much as one random level of average weight
            weights = torch.cat([random.weights, torch.ones_like(fixed)], dim=1)
        return LevelDraw(torch.cat([random.levels, fixed], dim=1), weights)  # [B, A + F]

    def draw(self, batch_size: int, device: torch.device) -> LevelDraw:
        raise NotImplementedError

    def observe(
        self,
        prediction: torch.Tensor,
        target: torch.Tensor,
        levels: torch.Tensor,
        mask: torch.Tensor,
        denominator: torch.Tensor | None = None,
    ) -> None:
        """Learn from forecasts ``[B, H, Q]`` at the levels ``[B, Q]`` this sampler drew; a no-op here."""

    def state_summary(self) -> dict[str, list[float]] | None:
        """The learnt sampling state as plain lists (for logs and ``metrics.json``); None if it learns nothing."""
        return None

    def record(self, step: int) -> dict[str, Any] | None:
        """Keep a snapshot of the learnt state at training ``step`` and return it; None if it learns nothing
        or holds this step's snapshot already."""
        return None


class UniformLevelSampler(LevelSampler):
    """Random levels independent and uniform on (0, 1)."""

    kind = SamplerKind.uniform

    def draw(self, batch_size: int, device: torch.device) -> LevelDraw:
        levels = torch.rand(batch_size, self.levels_per_sample, device=device)
        return LevelDraw(levels.clamp_min(torch.finfo(levels.dtype).tiny))  # rand is in [0, 1): keep 0 out


class BetaLevelSampler(LevelSampler):
    """Random levels from Beta(alpha, beta); alpha = beta < 1 puts more levels in the tails."""

    kind = SamplerKind.beta

    def __init__(self, config: SamplerConfig) -> None:
        super().__init__(config)
        self.register_buffer("concentration", torch.tensor([config.alpha, config.beta]), persistent=False)

    def draw(self, batch_size: int, device: torch.device) -> LevelDraw:
        alpha, beta = self.concentration.to(device)
        draw = torch.distributions.Beta(alpha, beta).sample((batch_size, self.levels_per_sample))
        # Beta samples can round to exactly 0 or 1 in float32; the levels must stay inside (0, 1).
        eps = torch.finfo(draw.dtype).eps
        return LevelDraw(draw.clamp(eps, 1 - eps))


class AdaptiveLevelSampler(LevelSampler):
    """Draws levels where the model is weakest, weighted so that the objective stays the uniform-q integral.

    (0, 1) is split into ``num_bins`` equal bins. Each bin keeps a running (exponential moving
    average, ``momentum``) estimate of the model's *weakness* at its levels, measured on the training
    batches. A bin is drawn with probability

        p_b = min_prob + (1 - num_bins * min_prob) * softmax(s / temperature)_b,   s_b = w_b / mean(w),

    (weakness relative to the mean over bins, so that ``temperature`` does not depend on the data's
    scale), and a level is drawn uniformly inside its bin. Until a bin has been observed it scores
    the mean, so the first draws are uniform.

    **Weakness** (``weakness``): raw pinball loss is largest at the median and vanishes in the tails
    (for a forecast as good as possible its expectation is sigma * phi(z_q) under a Gaussian), so
    sampling by it would starve the tails. The measures, per bin, with q the bin's centre:

    - ``raw``: the mean pinball loss (normalised like the training loss) — for comparison only;
    - ``variance``: pinball / (q (1 - q)), q (1 - q) being the variance of the indicator 1[y < f_q];
    - ``gaussian``: pinball / phi(Phi^-1(q)): the loss relative to the profile of an ideal Gaussian
      forecast, flat when the model is as good in the tails as at the centre;
    - ``calibration``: |observed share of targets below f_q - q| / sqrt(q (1 - q)), the calibration
      error in units of the indicator's standard deviation.

    **Importance weights** (``importance_weighting``): a level from bin b has sampling density
    num_bins * p_b against the uniform density 1, so its loss is weighted by 1 / (num_bins * p_b);
    the weights are self-normalised to mean 1 over the batch. The weighted mean loss is then an
    estimate of the uniform-q integral of the pinball loss (CRPS / 2), as with uniform sampling,
    but with more draws where the model is weak. ``min_prob`` bounds the weights before the
    normalisation by 1 / (num_bins * min_prob). Without weighting the objective leans towards the
    weak bins. (Under DDP every rank draws the same levels, as Lightning seeds every rank alike;
    the ranks' windows differ, so this costs variety of levels, not correctness.)

    **State** is model state: the estimates and counts are buffers (saved in checkpoints, restored
    on resume), and the per-bin sums of a batch are summed across ranks before the update, so every
    rank holds the same state under DDP. ``history`` (snapshots taken by :meth:`record`) is saved
    with the state dict as the module's extra state.
    """

    kind = SamplerKind.adaptive

    def __init__(self, config: SamplerConfig) -> None:
        super().__init__(config)
        num_bins = config.num_bins
        self.num_bins = num_bins
        self.momentum = config.momentum
        self.temperature = config.temperature
        self.min_prob = config.min_prob
        self.importance_weighting = config.importance_weighting
        self.weakness = config.weakness
        centres = (torch.arange(num_bins, dtype=torch.float32) + 0.5) / num_bins
        self.register_buffer("bin_centres", centres, persistent=False)  # [N]
        # Running per-bin means over observed (sample, step, level) triples, and how many were seen.
        self.register_buffer("bin_loss", torch.zeros(num_bins))  # normalised pinball loss  [N]
        self.register_buffer("bin_below_minus_level", torch.zeros(num_bins))  # mean of 1[y < f_q] - q  [N]
        self.register_buffer("bin_count", torch.zeros(num_bins, dtype=torch.float64))  # [N]
        self.history: list[dict[str, Any]] = []

    # -- drawing ------------------------------------------------------------------------------

    def probabilities(self) -> torch.Tensor:
        """Current bin probabilities ``[N]``: they sum to 1 and none is below ``min_prob``."""
        weakness = self.bin_weakness()
        seen = self.bin_count > 0
        # Unseen bins score the mean of the seen ones (all score 0, so the draw is uniform, before any
        # observation); scores are relative to their mean. No data-dependent branch: no GPU sync.
        mean_seen = (weakness * seen).sum() / seen.sum().clamp_min(1)
        weakness = torch.where(seen, weakness, mean_seen)
        score = weakness / weakness.mean().clamp_min(torch.finfo(weakness.dtype).tiny)
        softmax = torch.softmax(score / self.temperature, dim=0)
        return self.min_prob + (1.0 - self.num_bins * self.min_prob) * softmax

    def bin_weakness(self) -> torch.Tensor:
        """The per-bin weakness ``[N]`` that drives the draw (see the class docstring).

        The profile g(q) that a measure divides by is taken at the bin's centre, not at each level:
        near 0 and 1, g(q) -> 0 and the ratios of single levels would be dominated by the few drawn
        closest to the ends.
        """
        q = self.bin_centres
        if self.weakness == Weakness.variance:
            return self.bin_loss / (q * (1 - q))
        if self.weakness == Weakness.gaussian:
            z = torch.special.ndtri(q)
            return self.bin_loss / (torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi))
        if self.weakness == Weakness.calibration:
            return self.bin_below_minus_level.abs() / (q * (1 - q)).sqrt()
        return self.bin_loss

    def draw(self, batch_size: int, device: torch.device) -> LevelDraw:
        probabilities = self.probabilities().to(device)  # [N]
        bins = torch.multinomial(probabilities, batch_size * self.levels_per_sample, replacement=True)
        bins = bins.view(batch_size, self.levels_per_sample)  # [B, A]
        offset = torch.rand(batch_size, self.levels_per_sample, device=device)  # position inside the bin
        eps = torch.finfo(offset.dtype).eps
        levels = ((bins + offset) / self.num_bins).clamp(eps, 1 - eps)  # [B, A]
        if not self.importance_weighting:
            return LevelDraw(levels)
        weights = 1.0 / (self.num_bins * probabilities[bins])  # uniform density / sampling density  [B, A]
        return LevelDraw(levels, weights / weights.mean())

    # -- learning -----------------------------------------------------------------------------

    @torch.no_grad()
    def observe(
        self,
        prediction: torch.Tensor,
        target: torch.Tensor,
        levels: torch.Tensor,
        mask: torch.Tensor,
        denominator: torch.Tensor | None = None,
    ) -> None:
        """Update the per-bin estimates from forecasts ``[B, H, Q]`` at the levels this sampler drew.

        Only the random levels (the first ``levels_per_sample`` columns) count: the fixed ones sit at
        the same points every batch and would misstate their bins' averages.
        """
        A = self.levels_per_sample
        prediction, levels = prediction[..., :A].float(), levels[:, :A].float()  # [B, H, A], [B, A]
        error = target.float()[..., None] - prediction  # [B, H, A]; unobserved steps are masked below
        below = (error < 0).float()  # 1[y < f_q]
        loss = error * (levels[:, None, :] - below)  # the pinball loss, sharing the comparison with `below`
        if denominator is not None:
            loss = loss / denominator.float()
        observed = mask.float()[..., None]  # [B, H, 1]
        steps = observed.sum(dim=1)  # [B, 1]: observed steps of each sample
        loss = torch.where(mask[..., None], loss, torch.zeros_like(loss))  # nothing from unobserved steps leaks in
        level_loss = loss.sum(dim=1)  # [B, A], summed over observed steps
        below = (below * observed).sum(dim=1) - steps * levels  # [B, A]: sum of 1[y < f_q] - q

        bins = (levels * self.num_bins).long().clamp(0, self.num_bins - 1).flatten()  # [B * A]
        per_element = torch.stack([level_loss, below, steps.expand_as(levels)]).flatten(1)  # [3, B * A]
        sums = torch.zeros(3, self.num_bins, device=levels.device).index_add_(1, bins, per_element)  # [3, N]
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(sums)  # every rank updates with the same statistics
        loss_sum, below_sum, count = sums.to(self.bin_loss.device)
        mean = torch.stack([loss_sum, below_sum]) / count.clamp_min(1)  # [2, N]
        # A non-finite forecast would make a bin's running estimate NaN for good: skip that bin this batch.
        hit = (count > 0) & mean.isfinite().all(dim=0)
        # A bin's first observation replaces its zero initial value; later ones are averaged in.
        keep = torch.where(self.bin_count > 0, self.momentum, 0.0).to(mean.dtype)  # [N]
        for state, batch_mean in zip((self.bin_loss, self.bin_below_minus_level), mean):
            state.copy_(torch.where(hit, keep * state + (1 - keep) * batch_mean, state))
        self.bin_count += torch.where(hit, count, 0).double()

    def _apply(self, fn: Any, recurse: bool = True) -> "AdaptiveLevelSampler":
        """Move with the module but keep the state's dtypes: under ``bf16-true`` Lightning casts the
        whole module, and bf16 estimates would swallow updates of 2 % (momentum 0.98)."""
        dtypes = {name: buffer.dtype for name, buffer in self.named_buffers(recurse=False)}
        super()._apply(fn, recurse)
        for name, dtype in dtypes.items():
            setattr(self, name, getattr(self, name).to(dtype))
        return self

    # -- reading out --------------------------------------------------------------------------

    def state_summary(self) -> dict[str, list[float]]:
        return {
            "bin_centres": self.bin_centres.tolist(),
            "probabilities": self.probabilities().tolist(),
            "weakness": self.bin_weakness().tolist(),
            "loss": self.bin_loss.tolist(),
            "below_minus_level": self.bin_below_minus_level.tolist(),
            "count": self.bin_count.tolist(),
        }

    def record(self, step: int) -> dict[str, Any] | None:
        """Append a snapshot of the state at training ``step`` to ``history`` and return it (None: the last
        snapshot is this step's already, e.g. the last step of an epoch and of training)."""
        if self.history and self.history[-1]["step"] == step:
            return None
        snapshot = {"step": int(step), **self.state_summary()}
        self.history.append(snapshot)
        return snapshot

    def get_extra_state(self) -> dict[str, Any]:
        return {"history": self.history}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.history = list(state.get("history", []))


def build_level_sampler(config: SamplerConfig) -> LevelSampler:
    """The sampler of ``config.kind`` with the options of ``config``."""
    samplers = {sampler.kind: sampler for sampler in (UniformLevelSampler, BetaLevelSampler, AdaptiveLevelSampler)}
    return samplers[config.kind](config)
