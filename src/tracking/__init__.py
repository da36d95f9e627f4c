"""Tracking: MLflow runs (lifecycle, params, metrics, artifacts) and the served model."""
