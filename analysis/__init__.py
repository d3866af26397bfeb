"""The attention-map study (docs/attention_study.md): a reference transformer, our model on generated
series, attention metrics, the study's questions, temporal-weighted attention on sequence reversal."""
