"""An experiment's configuration and what it builds: the schema, loading and validating configs, building
data, network and forecaster from them, reading checkpoints back.

Belongs here: the typed schema (``schema``), ``load_config`` / ``merge_config`` (``config``), every rule
that ties config keys together (``validation``), the builders, checkpoint loading, the user-facing
errors (``errors``). It sits below ``training`` and ``evaluation``, which both use it.
Not here: fitting (``training/``), scoring and reports (``evaluation/``).
"""
