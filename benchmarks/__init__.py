"""Comparisons that train and score several models and print tables: contenders, ablations, speed.

Each script states its command line in its docstring; results and their commands are in docs/results.md.
"""
