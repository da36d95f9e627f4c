"""Evaluation: metrics on a split, the figures people look at."""
