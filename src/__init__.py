"""imgsweep: transfer-learning image classifiers, tracked in MLflow, tuned with Optuna."""

import os

# OpenCV reads its decoder's pixel limit (default 2^30: 3 GB as RGB) once, when cv2 is first
# imported, so it is set here, before any module of ours imports cv2. Pillow's header check in
# src/data/images.py refuses larger images first, but OpenCV parses a broken header its own
# way (issue 24's fuzzing). Same value as src.data.images.MAX_PIXELS.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(100_000_000))

# MLflow sets its loggers' level from MLFLOW_LOGGING_LEVEL (default INFO) when it is imported,
# over Hydra's logging config: every run printed "Creating initial MLflow database tables..."
# and "Validating input example against model signature". Set before MLflow is imported, and
# inherited by the processes a run starts (a sweep's trials, `mlflow models serve`), its
# warnings and errors still show; MLFLOW_LOGGING_LEVEL=INFO brings the rest back.
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
