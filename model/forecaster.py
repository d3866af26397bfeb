"""The Lightning wrapper: one shared step for train, val and test; metrics; optimiser."""
from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from lightning import LightningModule
from torch import nn

from model.metrics import QuantileForecastMetrics, RandomLevelCRPS, headline
from modules.forecast_network import ScaledForecast
from modules.level_sampling import LevelSampler
from modules.losses import pinball_loss, target_denominator
from modules.quantile_levels import EvaluationLevels
from modules.rearrangement import rearrange_quantiles

LOSS_NORMALISATIONS = ("window", "target", "none")
Batch = dict[str, torch.Tensor]


class AnyQuantileForecaster(LightningModule):
    """Trains a network that answers any quantile level, and scores it on a fixed level grid.

    Args:
        network: ``(history, history_mask, calendar, levels) -> ScaledForecast``.
        level_sampler: ``(batch_size, device) -> LevelDraw``: the levels each training sample is scored at;
            it sees every training batch's forecasts (``observe``) and may learn from them.
        evaluation_levels: the fixed dense grid (plus median and interval ends) for val and test.
        horizon: H, for the per-step metrics.
        optimizer: builds the optimiser from the parameters (e.g. ``functools.partial(Adam, lr=...)``).
        lr_schedule: multiplier of the learning rate per optimiser step, or None for a constant rate.
        loss_normalisation: what each pinball error is divided by in training: ``window`` (the
            window's input scale, so every series counts alike), ``target`` (max(|y|, 1), the
            paper's variant) or ``none`` (raw units).
        rearrange: sort each evaluation forecast along the level grid (monotone rearrangement) before
            scoring; the scores before it are kept too (``results["<stage>_raw"]``).
        config: the resolved run config, stored in every checkpoint so that a model can be rebuilt.
    """

    def __init__(
        self,
        network: nn.Module,
        level_sampler: LevelSampler,
        evaluation_levels: EvaluationLevels,
        horizon: int,
        optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer],
        lr_schedule: Callable[[int], float] | None = None,
        loss_normalisation: str = "window",
        rearrange: bool = True,
        paper_protocol_levels: int = 0,
        config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if loss_normalisation not in LOSS_NORMALISATIONS:
            raise ValueError(f"unknown loss normalisation '{loss_normalisation}'; choose one of {LOSS_NORMALISATIONS}")
        self.network = network
        self.level_sampler = level_sampler
        self.evaluation_levels = evaluation_levels
        self.register_buffer("eval_levels", evaluation_levels.levels.float(), persistent=False)  # [Q]
        self.rearrange = rearrange
        stages = ("val", "test") + (("val_raw", "test_raw") if rearrange else ())  # raw: before rearrangement
        self.metrics = nn.ModuleDict({stage: QuantileForecastMetrics(evaluation_levels, horizon) for stage in stages})
        if paper_protocol_levels < 0:
            raise ValueError(f"paper_protocol_levels must be >= 0 (0 = off), got {paper_protocol_levels}")
        self.paper_protocol_levels = paper_protocol_levels
        self.paper_protocol = RandomLevelCRPS(horizon)
        self.optimizer_factory = optimizer
        self.lr_schedule = lr_schedule
        self.loss_normalisation = loss_normalisation
        self.config = config or {}
        self.results: dict[str, dict[str, float]] = {}  # last computed metrics per stage

    def forward(self, batch: Batch, levels: torch.Tensor) -> ScaledForecast:
        """Forecast ``levels`` [B, Q] for a batch of windows: prediction [B, H, Q] in data units."""
        return self.network(batch["history"], batch["history_mask"], batch["calendar"], levels)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def _shared_step(self, batch: Batch, stage: str) -> torch.Tensor | None:
        B = batch["history"].shape[0]
        if stage != "train":
            # Evaluation runs in fp32 even when training uses bf16 autocast: adjacent grid levels
            # differ by less than bf16 rounding noise, which would make nearly every forecast cross.
            with torch.autocast(device_type=self.device.type, enabled=False):
                prediction = self(batch, self.eval_levels.expand(B, -1)).prediction  # [B, H, Q]
                if stage == "test" and self.paper_protocol_levels:
                    self.paper_protocol.update_batch(lambda b, levels: self(b, levels).prediction, batch, self.paper_protocol_levels)
            if self.rearrange:
                self.metrics[f"{stage}_raw"].update(prediction, batch["target"], batch["target_mask"])
                prediction = rearrange_quantiles(prediction)
            self.metrics[stage].update(prediction, batch["target"], batch["target_mask"])
            return None
        draw = self.level_sampler(B, self.device)
        forecast = self(batch, draw.levels)
        denominator = self._loss_denominator(forecast, batch["target"])
        loss = pinball_loss(
            forecast.prediction,
            batch["target"],
            draw.levels,
            mask=batch["target_mask"],
            weights=None if draw.weights is None else draw.weights[:, None, :],  # [B, 1, Q]
            denominator=denominator,
        )
        # An adaptive sampler learns where the model is weak from the same forecasts (a no-op for the others).
        self.level_sampler.observe(forecast.prediction.detach(), batch["target"], draw.levels, batch["target_mask"], denominator)
        self.log("train/loss", loss, prog_bar=True, batch_size=B)
        return loss

    def _loss_denominator(self, forecast: ScaledForecast, target: torch.Tensor) -> torch.Tensor | None:
        if self.loss_normalisation == "window":
            return forecast.scale.scale[:, :, None]  # [B, 1, 1]
        if self.loss_normalisation == "target":
            return target_denominator(target)  # [B, H, 1]
        return None

    def on_train_epoch_end(self) -> None:
        """Snapshot a learning sampler's state (kept in the checkpoint) and log it as TensorBoard histograms."""
        snapshot = self.level_sampler.record(self.global_step)
        if snapshot is None:  # a sampler that learns nothing
            return
        writer = getattr(self.logger, "experiment", None)
        if self.trainer.is_global_zero and hasattr(writer, "add_histogram_raw"):
            log_bin_histogram(writer, "sampler/probability", snapshot["probabilities"], self.global_step)
            log_bin_histogram(writer, "sampler/weakness", snapshot["weakness"], self.global_step)
            log_bin_histogram(writer, "sampler/loss", snapshot["loss"], self.global_step)

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")

    def _log_metrics(self, stage: str) -> None:
        if not self.metrics[stage].update_called:
            return
        scalars = headline(self._compute(stage))
        self.log(f"{stage}/crps", scalars.pop("crps"), prog_bar=True)
        self.log_dict({f"{stage}/{name}": value for name, value in scalars.items()})
        if self.rearrange:
            raw = self._compute(f"{stage}_raw")
            self.log_dict({f"{stage}/crps_before_rearrangement": raw["crps"],
                           f"{stage}/crossing_rate_before_rearrangement": raw["crossing_rate"]})

    def _compute(self, name: str) -> dict[str, float]:
        metrics = [self.metrics[name]]
        if name == "test" and self.paper_protocol.update_called:
            metrics.append(self.paper_protocol)
        self.results[name] = {key: float(value) for metric in metrics for key, value in metric.compute().items()}
        for metric in metrics:
            metric.reset()
        return self.results[name]

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

    def on_train_batch_start(self, batch: Batch, batch_idx: int) -> None:
        self.network.set_training_step(self.global_step)  # global_step is restored on resume

    @torch.no_grad()
    def attention_maps(self, batch: Batch, levels: torch.Tensor) -> dict[str, Any]:
        """Attention weights [B, N, L, L] and gate values of every block for a batch, from the same model."""
        forecast = self.network(batch["history"], batch["history_mask"], batch["calendar"], levels, return_attention=True)
        return forecast.analysis


def log_bin_histogram(writer: Any, tag: str, values: list[float], step: int) -> None:
    """Log per-bin values of (0, 1) as a TensorBoard histogram whose bar heights are the values."""
    heights = torch.tensor(values, dtype=torch.float64).clamp_min(0)  # TensorBoard draws counts: no negatives
    edges = torch.linspace(0, 1, len(values) + 1, dtype=torch.float64)
    centres = (edges[1:] + edges[:-1]) / 2
    writer.add_histogram_raw(
        tag, min=0.0, max=1.0, num=float(heights.sum()), sum=float((heights * centres).sum()),
        sum_squares=float((heights * centres**2).sum()), bucket_limits=edges[1:].tolist(),
        bucket_counts=heights.tolist(), global_step=step,
    )
