"""anyquantile: any-quantile probabilistic forecasting on an N-BEATS backbone with adaptive attention.

    from anyquantile import Forecaster

    forecaster = Forecaster("nbeatsaq-synthetic", overrides=["trainer.max_steps=200"])
    forecaster.fit(df)  # a long frame: unique_id, ds (hourly), y
    forecaster.predict(level=[80, 95])  # unique_id, ds, AnyQuantile-median, AnyQuantile-lo-80, ...

The repository keeps one folder per responsibility (``model/``, ``modules/``, ``dataset/``, ...); installed,
they are the subpackages ``anyquantile.model``, ``anyquantile.modules``, ... (``pyproject.toml`` maps them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"
__all__ = ["Forecaster", "__version__"]

if TYPE_CHECKING:
    from anyquantile.api import Forecaster


def __getattr__(name: str) -> Any:
    # imported on first use: ``import anyquantile`` (the CLI's argument parsing, say) stays light
    if name == "Forecaster":
        from anyquantile.api import Forecaster

        return Forecaster
    raise AttributeError(f"module 'anyquantile' has no attribute {name!r}")
