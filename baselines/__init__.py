"""Reference forecasters: seasonal naive, neuralforecast's NBEATS and NHITS, and the form they share.

Belongs here: forecasters that answer ``(series, origin, horizon, levels) -> [N, H, Q]`` for the
model's own windows (``baselines/reference.py``), so that the one scoring path scores them as the model.
Not here: scoring them (``evaluation/references.py``, ``benchmarks/``), our own models.
"""
