"""The LightningModule and what it needs under Lightning: the one scoring path, metrics, schedules.

Belongs here: ``AnyQuantileForecaster`` (it delegates the objective to the network, scores val and
test through ``model/scoring.py``, logs, builds the optimiser), torchmetrics metrics, learning-rate
schedules, silencing Lightning's banners (``quiet``).
Not here: tensor maths a module could own (``modules/``), configs and builders (``experiment/``),
the fit loop (``training/``).
"""
