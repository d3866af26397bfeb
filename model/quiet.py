"""Silence Lightning's banners for tools that run many short fits (benchmarks, studies, baselines)."""

from __future__ import annotations

import contextlib
import logging
import warnings
from typing import Iterator

LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "pytorch_lightning")


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Within the block, Lightning (and libraries built on it) log only errors and warnings are ignored;
    the loggers' levels are restored after it."""
    loggers = [logging.getLogger(name) for name in LIGHTNING_LOGGERS]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)
