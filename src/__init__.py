"""imgsweep: transfer-learning image classifiers, tracked in MLflow, tuned with Optuna."""

import os

# OpenCV reads its decoder's pixel limit (default 2^30: 3 GB as RGB) once, when cv2 is first
# imported, so it is set here, before any module of ours imports cv2. Pillow's header check in
# src/data/images.py refuses larger images first, but OpenCV parses a broken header its own
# way (issue 24's fuzzing). Same value as src.data.images.MAX_PIXELS.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(100_000_000))
