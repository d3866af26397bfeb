"""The Lightning wrapper: it delegates the objective to the network, scores val and test through the one
scoring path, logs, and builds the optimiser and schedule. No tensor maths of its own."""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from lightning import LightningModule
from torch import nn

from anyquantile.dataset.windows import WindowBatch
from anyquantile.model.metrics import RandomLevelCRPS, headline
from anyquantile.model.scoring import ForecastScorer
from anyquantile.modules.forecast_network import QuantileNetwork, ScaledForecast
from anyquantile.modules.level_sampling import LevelSampler
from anyquantile.modules.quantile_levels import EvaluationLevels


class AnyQuantileForecaster(LightningModule):
    """Trains a network that answers any quantile level, and scores it on a fixed level grid.

    Args:
        network: ``(history, history_mask, calendar, levels) -> ScaledForecast``, with its training
            objective ``network.loss(batch, sampler)``.
        level_sampler: ``(batch_size, device) -> LevelDraw``: the levels each training sample is scored at;
            it sees every training batch's forecasts (``observe``) and may learn from them.
        evaluation_levels: the fixed dense grid (plus median and interval ends) for val and test.
        horizon: H, for the per-step metrics.
        optimizer: builds the optimiser from the parameters (e.g. ``functools.partial(Adam, lr=...)``).
        lr_schedule: multiplier of the learning rate per optimiser step, or None for a constant rate.
        rearrange: sort each evaluation forecast along the level grid (monotone rearrangement) before
            scoring; the raw scores are kept too (``results["<stage>_raw"]``).
        paper_protocol_levels: levels drawn per test window for the any-quantile paper's CRPS (0: off).
        config: the resolved run config, stored in every checkpoint so that a model can be rebuilt.
    """

    def __init__(
        self,
        network: QuantileNetwork,
        level_sampler: LevelSampler,
        evaluation_levels: EvaluationLevels,
        horizon: int,
        optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer],
        lr_schedule: Callable[[int], float] | None = None,
        rearrange: bool = True,
        paper_protocol_levels: int = 0,
        config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.network = network
        self.level_sampler = level_sampler
        self.evaluation_levels = evaluation_levels
        self.register_buffer("eval_levels", evaluation_levels.levels.float(), persistent=False)  # [Q]
        self.scorers = nn.ModuleDict(
            {stage: ForecastScorer(evaluation_levels, horizon, rearrange) for stage in ("val", "test")}
        )
        self.paper_protocol_levels = paper_protocol_levels
        self.paper_protocol = RandomLevelCRPS(horizon)
        self.optimizer_factory = optimizer
        self.lr_schedule = lr_schedule
        self.config = config or {}
        self.results: dict[str, dict[str, float]] = {}  # last computed scores per stage ("test", "test_raw", ...)

    def forward(self, batch: WindowBatch, levels: torch.Tensor) -> ScaledForecast:
        """Forecast ``levels`` [B, Q] for a batch of windows: prediction [B, H, Q] in data units."""
        return self.network(batch.history, batch.history_mask, batch.calendar, levels)

    @torch.no_grad()
    def forecast(self, batch: WindowBatch, levels: torch.Tensor) -> torch.Tensor:
        """Forecasts [B, H, Q] of ``levels`` — [Q] for every window alike, or [B, Q] — without gradients.

        Evaluation runs without autocast (fp32) even when training uses bf16 autocast: adjacent grid
        levels differ by less than bf16 rounding noise, which would make nearly every forecast cross.
        A [Q] row is expanded over the windows (stride 0), which lets the backbone compute its level
        features once.
        """
        if levels.dim() == 1:
            levels = levels.expand(len(batch), -1)
        with torch.autocast(device_type=self.device.type, enabled=False):
            return self(batch, levels).prediction

    def training_step(self, batch: WindowBatch, batch_idx: int) -> torch.Tensor:
        loss = self.network.loss(batch, self.level_sampler)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch))
        if self._trainer is not None and self.trainer.is_last_batch:  # (a step called outside a Trainer: no epoch)
            self._record_sampler(self.global_step + 1)  # the step this batch completes
        return loss

    def validation_step(self, batch: WindowBatch, batch_idx: int) -> None:
        self.scorers["val"].update(self.forecast(batch, self.eval_levels), batch.target, batch.target_mask)

    def test_step(self, batch: WindowBatch, batch_idx: int) -> None:
        self.scorers["test"].update(self.forecast(batch, self.eval_levels), batch.target, batch.target_mask)
        if self.paper_protocol_levels:
            self.paper_protocol.update_batch(self.forecast, batch, self.paper_protocol_levels)

    def on_train_end(self) -> None:
        self._record_sampler(self.global_step)  # where training stopped (max_steps, the time budget)

    def _record_sampler(self, step: int) -> None:
        """Snapshot a learning sampler's state (kept in the checkpoint) and log it as TensorBoard histograms.

        Taken in an epoch's last training step, not at the epoch's end: a checkpoint saved at that
        step (callbacks save in ``on_train_batch_end``, before any epoch-end hook) then holds the
        snapshot, and a run resumed from it, which goes on to the next epoch without running the
        epoch-end hooks again, keeps the same history as the run left alone.
        """
        snapshot = self.level_sampler.record(step)
        if snapshot is None:  # a sampler that learns nothing, or this step's snapshot was taken already
            return
        writer = getattr(self.logger, "experiment", None)
        if self.trainer.is_global_zero and hasattr(writer, "add_histogram_raw"):
            log_bin_histogram(writer, "sampler/probability", snapshot["probabilities"], step)
            log_bin_histogram(writer, "sampler/weakness", snapshot["weakness"], step)
            log_bin_histogram(writer, "sampler/loss", snapshot["loss"], step)

    def on_validation_epoch_end(self) -> None:
        self._log_scores("val")

    def on_test_epoch_end(self) -> None:
        self._log_scores("test")

    def _log_scores(self, stage: str) -> None:
        scorer = self.scorers[stage]
        if not scorer.update_called:
            return
        scores = scorer.compute()
        scorer.reset()
        final = scores.final
        if stage == "test" and self.paper_protocol.update_called:
            final.update({name: float(value) for name, value in self.paper_protocol.compute().items()})
            self.paper_protocol.reset()
        self.results[stage] = final
        scalars = headline(final)
        self.log(f"{stage}/crps", scalars.pop("crps"), prog_bar=True)
        self.log_dict({f"{stage}/{name}": value for name, value in scalars.items()})
        if scores.raw is not None:
            self.results[f"{stage}_raw"] = scores.raw
            self.log(f"{stage}/crps_before_rearrangement", scores.raw["crps"])

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.lr_schedule is None:
            return optimizer
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self.lr_schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["forecast_config"] = self.config

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """On resume, the optimiser runs fused or not as configured now: torch's ``load_state_dict``
        would otherwise take the choice saved in the checkpoint's parameter groups."""
        fused = getattr(self.optimizer_factory, "keywords", {}).get("fused")
        if fused is None:
            return
        for state in checkpoint.get("optimizer_states", []):
            for group in state["param_groups"]:
                group["fused"] = fused


class AnyQuantileForecasterAdaptiveAttention(AnyQuantileForecaster):
    """The forecaster with an ``AdaptiveAttentionNetwork``: trained and evaluated exactly like the base,
    plus the step clock of scheduled locality biases and a read-out of attention maps and gates."""

    def on_train_batch_start(self, batch: WindowBatch, batch_idx: int) -> None:
        self.network.set_training_step(self.global_step)  # global_step is restored on resume

    @torch.no_grad()
    def attention_maps(self, batch: WindowBatch, levels: torch.Tensor) -> dict[str, Any]:
        """Attention weights [B, N, L, L] and gate values of every block for a batch, from the same model."""
        forecast = self.network(batch.history, batch.history_mask, batch.calendar, levels, return_attention=True)
        return forecast.analysis


def log_bin_histogram(writer: Any, tag: str, values: list[float], step: int) -> None:
    """Log per-bin values of (0, 1) as a TensorBoard histogram whose bar heights are the values."""
    heights = torch.tensor(values, dtype=torch.float64).clamp_min(0)  # TensorBoard draws counts: no negatives
    edges = torch.linspace(0, 1, len(values) + 1, dtype=torch.float64)
    centres = (edges[1:] + edges[:-1]) / 2
    writer.add_histogram_raw(
        tag,
        min=0.0,
        max=1.0,
        num=float(heights.sum()),
        sum=float((heights * centres).sum()),
        sum_squares=float((heights * centres**2).sum()),
        bucket_limits=edges[1:].tolist(),
        bucket_counts=heights.tolist(),
        global_step=step,
    )
