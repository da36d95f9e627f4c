"""Grad-CAM: where in an image the network found the evidence for a class.

For a class c, the map is ReLU(sum_k a_k A_k), A_k the channels of the network's last
spatial feature map and a_k the spatial mean of d(score_c)/dA_k (Selvaraju et al., 2017).
With a linear head on globally average-pooled features (the SVM) a_k is that class's
weight on channel k, so the map is the class activation map of Zhou et al. (2016); see
`scores_and_evidence` for the SVM's L2 normalisation.

`scores_and_maps` scores a split and makes the maps of the predicted and the true class in
the same pass: one decode of each image, one forward, one backward per class. The feature
map is found once per network (`find_feature_map`): the last module whose output is still
spatial (an (N, C, H, W) or (N, H, W, C) map, or a grid of patch tokens) and still carries
gradient from the class scores (in a vision transformer, the last block's input: after it,
only the class token reaches the head).
"""

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from src.data.loader import make_loader
from src.data.presets import ImageSpec
from src.device import Compute
from src.features.featurize import image_files, prepare_for_inference
from src.precision import autocast


class NoFeatureMap(Exception):
    """The network has no spatial map its scores depend on (at this side): no heat maps."""


@dataclass(frozen=True)
class FeatureMap:
    name: str  # the module's name in the network, e.g. "featurizer.1.layer4"
    layout: str  # "nchw" | "nhwc" | "tokens" (N, [class token +] H*W, C)


@dataclass
class ClassMaps:
    """Maps in [0, 1] (1: the strongest evidence in that image), float16 (N, h, w)."""

    predicted: np.ndarray
    true: np.ndarray
    layer: str


def scores_and_maps(
    model: nn.Module,
    paths: list,
    labels: np.ndarray,
    image: ImageSpec,
    compute: Compute,
    batch_size: int,
) -> tuple[np.ndarray, ClassMaps]:
    """Logits (N, classes) and the predicted and true class's maps of every image. The
    forward pass runs in `compute.precision`, the run's one precision: these logits are the
    test split's reported decisions, and the served model computes in the same precision."""
    device = compute.device
    model = prepare_for_inference(model, device)
    target = find_feature_map(model, image.size, device)
    module = dict(model.named_modules())[target.name]
    loader = make_loader(image_files(paths, image), batch_size, compute.workers, device)
    captured = {}

    def keep(_module, _inputs, output):
        # a leaf of its own: gradients stop here, and no parameter's .grad is touched
        captured["map"] = output.detach().requires_grad_(True)
        return captured["map"]

    handle = module.register_forward_hook(keep)
    logits = predicted = true = None
    try:
        with tqdm(total=len(paths), desc="scoring test + Grad-CAM", unit="img") as bar:
            for pixels, _, index in loader:
                with torch.enable_grad(), autocast(device, compute.precision):
                    scores, evidence = scores_and_evidence(model, pixels.to(device))
                    rows = torch.arange(len(scores), device=device)
                    best = scores.argmax(1)
                    wanted = torch.as_tensor(labels[index.clamp(min=0).numpy()], device=device)
                    activation = captured["map"]
                    maps_pred = grad_cam(evidence[rows, best].sum(), activation, target, True)
                    maps_true = grad_cam(evidence[rows, wanted].sum(), activation, target)
                if logits is None:
                    n, h, w = len(paths), *maps_pred.shape[1:]
                    logits = np.full((n, scores.shape[1]), np.nan, np.float32)
                    predicted = np.zeros((n, h, w), np.float16)
                    true = np.zeros((n, h, w), np.float16)
                ok = index.numpy() >= 0  # files that failed to decode keep NaN scores
                at = index.numpy()[ok]
                logits[at] = scores.detach().cpu().numpy()[ok]
                predicted[at] = maps_pred.cpu().numpy()[ok]
                true[at] = maps_true.cpu().numpy()[ok]
                bar.update(len(index))
    finally:
        handle.remove()
    return logits, ClassMaps(predicted, true, target.name)


def scores_and_evidence(model: nn.Module, pixels: torch.Tensor):
    """The logits, and the class scores the maps explain. For the SVM (a linear head on
    L2-normalised features) those are its linear scores w_c . f before the normalisation:
    dividing by |f| scales an image's map without changing its shape, but its gradient
    would mix every other class's evidence into each map. On average-pooled features the
    map is then exactly the class activation map ReLU(sum_k w_ck A_k)."""
    features = model.featurizer(pixels).float()
    if not model.l2_normalize:
        scores = model.head(features).float()
        return scores, scores
    scores = model.head(F.normalize(features, dim=1)).float()
    return scores, features @ model.head.weight.float().T


def grad_cam(score: torch.Tensor, activation: torch.Tensor, target: FeatureMap, retain=False):
    """(N, h, w) maps, each scaled to a maximum of 1, for a summed per-image class score
    (images do not interact in eval mode, so each image's gradient is its own)."""
    (gradient,) = torch.autograd.grad(score, activation, retain_graph=retain)
    a, g = as_nhwc(activation.detach(), target), as_nhwc(gradient, target)
    weights = g.float().mean(dim=(1, 2), keepdim=True)  # a_k: (N, 1, 1, C)
    cam = torch.relu((weights * a.float()).sum(dim=3))
    peak = cam.flatten(1).max(1).values.clamp(min=1e-12).view(-1, 1, 1)
    return (cam / peak).to(torch.float16)


def as_nhwc(tensor: torch.Tensor, target: FeatureMap) -> torch.Tensor:
    if target.layout == "nchw":
        return tensor.permute(0, 2, 3, 1)
    if target.layout == "nhwc":
        return tensor
    tokens = tensor.shape[1]
    side = math.isqrt(tokens)
    if side * side != tokens:  # a class token first
        tokens, tensor = tokens - 1, tensor[:, 1:]
        side = math.isqrt(tokens)
    return tensor.reshape(tensor.shape[0], side, side, tensor.shape[-1])


def find_feature_map(model: nn.Module, size: int, device: torch.device) -> FeatureMap:
    """The last spatial output (in the order modules finish) that the scores depend on."""
    found = []

    def record(name):
        def hook(_module, _inputs, output):
            layout = spatial_layout(output, size)
            if layout:
                output.retain_grad()
                found.append((name, layout, output))

        return hook

    handles = [m.register_forward_hook(record(name)) for name, m in model.named_modules() if name]
    trainable = [p.requires_grad for p in model.parameters()]
    try:
        generator = torch.Generator().manual_seed(0)
        pixels = torch.randint(0, 256, (1, size, size, 3), dtype=torch.uint8, generator=generator)
        with torch.enable_grad():
            for p in model.parameters():  # a graph to the feature maps, even when frozen
                p.requires_grad_(True)
            # squared: a two-class SVM's scores are +-m/2, and their plain sum has no gradient
            model(pixels.to(device)).float().square().sum().backward()
    finally:
        for handle in handles:
            handle.remove()
        for p, flag in zip(model.parameters(), trainable, strict=True):
            p.requires_grad_(flag)
    for name, layout, output in reversed(found):
        grad = output.grad
        if grad is not None and as_nhwc(grad, FeatureMap(name, layout)).abs().sum() > 0:
            model.zero_grad(set_to_none=True)
            return FeatureMap(name, layout)
    raise NoFeatureMap(f"no spatial feature map with gradient in the network at {size} px")


def spatial_layout(output, size: int) -> str | None:
    """How a module's output holds a spatial map of more than one cell, if it does."""
    if not isinstance(output, torch.Tensor) or not output.requires_grad:
        return None
    if output.dim() == 4:
        _, a, b, c = output.shape
        if b == c and b > 1 and b < size:  # (N, C, H, W) and a square input
            return "nchw"
        if a == b and a > 1 and a < size:
            return "nhwc"
        return None
    if output.dim() == 3:
        tokens = output.shape[1]
        for t in (tokens, tokens - 1):
            side = math.isqrt(max(t, 0))
            if side > 1 and side * side == t and size % side == 0:
                return "tokens"
    return None
