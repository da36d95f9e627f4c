"""imgsweep: transfer-learning image classifiers, tracked in MLflow, tuned with Optuna."""
