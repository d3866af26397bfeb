"""Forecasts for production: the hours after the end of the data, at any levels asked, from a checkpoint.

Not here: scoring (``evaluation/``): a forecast of the future has nothing to be scored against.
"""
