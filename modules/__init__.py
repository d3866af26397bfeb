"""Plain torch networks and what they are made of: N-BEATS-AQ, adaptive attention (HATA), scaling, the
pinball loss and the training objective, level samplers, evaluation level grids, rearrangement.

Belongs here: ``nn.Module``s and tensor maths, each configurable module with its option dataclass
(``AttentionConfig``, ``NBeatsConfig``, ``SamplerConfig``, ...) and its choices (``modules/options.py``).
Not here: Lightning, Hydra or OmegaConf (the import-graph test refuses them), files, metrics that
accumulate over batches (``model/``), anything about configs beyond a module's own options.
"""
