"""Scoring trained checkpoints: ``evaluate`` (metrics.json, forecasts, dashboard), ensembles, conformal
calibration, the reference forecasters scored on the model's windows, the dashboard and its figures.

Not here: training (``training/``); the scores themselves are computed by ``model/scoring.py``.
Evaluation never imports ``training``.
"""
