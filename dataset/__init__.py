"""Data: series on an hourly grid, windows and their splits, batches, calendar features, the synthetic data set.

Belongs here: reading and validating long-format files (``loader``), the panel, windows and
``WindowBatch``, splits by date, calendar features, the synthetic load data and its oracle, the
generators of the attention study, the Lightning data module, the long forecast table.
Not here: anything about models or scores — this package imports no other package of the project.
"""
