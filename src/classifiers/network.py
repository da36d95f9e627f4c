"""The whole classifier as one torch module: uint8 pixels → class scores (logits).

Every classifier mode ends as this module (a linear SVM is a linear layer on L2-normalised
features), so one code path evaluates, serves and exports them all. `spec` is what is
needed to rebuild it without any training code or config: architecture, head, classes,
the calibration temperature and the precision its reported metrics were computed in.

`forward` gives the logits, whose argmax is the decision; `probabilities` applies the
temperature after them (src/classifiers/calibration.py), so calibration changes no label.
"""

import torch
import torch.nn.functional as F
from torch import nn

from src.features.backbone import build_featurizer, feature_size


class ImageClassifier(nn.Module):
    def __init__(self, featurizer: nn.Module, head: nn.Module, l2_normalize: bool):
        super().__init__()
        self.featurizer = featurizer  # Normalize → backbone trunk → pooled features
        self.head = head
        self.l2_normalize = l2_normalize
        self.temperature = 1.0  # softmax(T * logits): the calibrated scores (set by a mode)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.featurizer(images)
        if self.l2_normalize:
            features = F.normalize(features.float(), dim=1)
        return self.head(features)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Calibrated scores of `logits` (this model's output), in float32 whatever the
        precision the logits were computed in."""
        return torch.softmax(logits.float() * self.temperature, dim=1)


def make_head(kind: str, in_features: int, num_classes: int, dropout: float = 0.0) -> nn.Module:
    """`svm`: a linear layer holding the SVM's hyperplanes; `dnn`: dropout → linear."""
    if kind == "svm":
        return nn.Linear(in_features, num_classes)
    if kind == "dnn":
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, num_classes))
    raise ValueError(f"unknown head {kind!r}")


def build_from_spec(spec: dict) -> ImageClassifier:
    """Rebuild an ImageClassifier from its spec and load its weights (no download)."""
    featurizer, _ = build_featurizer(spec["arch"], weights="none", size=spec["size"])
    head = make_head(
        spec["head"], feature_size(spec["arch"]), len(spec["classes"]), spec.get("dropout", 0.0)
    )
    model = ImageClassifier(featurizer, head, spec["l2_normalize"])
    model.load_state_dict(spec["state_dict"])
    # older specs built T into the last layer and record none: their T is 1 here
    model.temperature = float(spec.get("temperature", 1.0))
    return model.eval()


def make_spec(
    model: ImageClassifier,
    arch: str,
    head: str,
    classes: list[str],
    size: int,
    preprocessing: str,
    dropout: float = 0.0,
) -> dict:
    return {
        "arch": arch,
        "head": head,
        "dropout": dropout,
        "l2_normalize": model.l2_normalize,
        "classes": list(classes),
        "size": size,
        "preprocessing": preprocessing,
        "temperature": float(model.temperature),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
