"""Fitting: ``train(cfg)`` trains, tests and writes the run folder; its callbacks; how a run uses the CPU.

Not here: reference forecasters and reports (``evaluation/``, the step after training); configs and
builders (``experiment/``). Training never imports ``evaluation``.
"""
