"""The pretrained ResNet backbone: uint8 pixels in, global-average-pooled features out.

`model.weights` decides where its weights come from:
  imagenet  torchvision's ImageNet weights (downloaded once into torch's cache)
  none      random initialisation (tests, or training from scratch)
  PATH      a state dict saved with torch.save
  auto      ImageNet weights when they can be had, else random, with a loud warning
Whatever happened is returned as a `Weights` record, so the run can log it.
"""

import hashlib
import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn
from torchvision import models

from src.errors import UserError

log = logging.getLogger(__name__)

ARCHITECTURES = {  # name → (constructor, ImageNet weights enum, pooled feature size)
    "resnet18": (models.resnet18, models.ResNet18_Weights.IMAGENET1K_V1, 512),
    "resnet34": (models.resnet34, models.ResNet34_Weights.IMAGENET1K_V1, 512),
    "resnet50": (models.resnet50, models.ResNet50_Weights.IMAGENET1K_V2, 2048),
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # what every torchvision ResNet was trained with
IMAGENET_STD = (0.229, 0.224, 0.225)
DOWNLOAD_TIMEOUT = 30  # s without a byte before a weights download is given up


@dataclass(frozen=True)
class Weights:
    identity: str  # e.g. "torchvision:ResNet18_Weights.IMAGENET1K_V1", "none", "file:<sha>"
    pretrained: bool


class Normalize(nn.Module):
    """uint8 (N, H, W, 3) → float (N, 3, H, W), ImageNet-normalised, channels-last in memory.

    Part of the model, so the conversion runs on the model's device and the served model
    takes the same uint8 pixels that training saw."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # NHWC permuted to NCHW is exactly the channels-last layout: no copy is made here.
        x = images.permute(0, 3, 1, 2).to(self.mean.dtype)
        return (x - self.mean) / self.std


def feature_size(arch: str) -> int:
    return ARCHITECTURES[_check_arch(arch)][2]


def build_featurizer(arch: str, weights: str = "auto") -> tuple[nn.Sequential, Weights]:
    """Normalize → ResNet without its ImageNet classifier: pixels → pooled features."""
    constructor, imagenet_weights, _ = ARCHITECTURES[_check_arch(arch)]
    resnet, info = _load(constructor, imagenet_weights, str(weights))
    resnet.fc = nn.Identity()  # the output is now the global-average-pooled features
    return nn.Sequential(Normalize(), resnet), info


def _load(constructor, imagenet_weights, weights: str) -> tuple[nn.Module, Weights]:
    if weights == "none":
        return constructor(weights=None), Weights("none", pretrained=False)
    if weights in ("imagenet", "auto"):
        try:
            return _imagenet(constructor, imagenet_weights)
        except UserError as error:
            if weights == "imagenet":
                raise
            log.warning(
                f"WARNING: {error}.\nGoing on with RANDOMLY INITIALISED weights: features "
                "from a random network are weak, so expect accuracies near chance on real photos "
                "(model.weights=none says this is intended and silences this warning)."
            )
            return constructor(weights=None), Weights("none", pretrained=False)
    return _from_file(constructor, Path(weights).expanduser())


def _imagenet(constructor, imagenet_weights) -> tuple[nn.Module, Weights]:
    identity = f"torchvision:{imagenet_weights}"
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT)  # torch.hub's download has no timeout of its own
    filename = Path(imagenet_weights.url).name
    if not (checkpoints / filename).is_file() and not _reachable(imagenet_weights.url):
        # torch would print `Downloading: "https://..."` first, as if a download were under way
        raise UserError(
            f"ImageNet weights {imagenet_weights} are not in torch's cache ({checkpoints}) and "
            f"{urlparse(imagenet_weights.url).hostname} cannot be reached; copy {filename} there, "
            "or use model.weights=none (random initialisation) or model.weights=PATH (a state dict)"
        )
    try:
        model = constructor(weights=imagenet_weights, progress=True)
    except (OSError, RuntimeError) as error:  # URLError is an OSError; a torn file a RuntimeError
        raise UserError(
            f"ImageNet weights {imagenet_weights} are not in torch's cache ({checkpoints}) and "
            f"could not be downloaded ({error}); copy {filename} there, or use "
            "model.weights=none (random initialisation) or model.weights=PATH (a state dict)"
        ) from None
    finally:
        socket.setdefaulttimeout(previous)
    return model, Weights(identity, pretrained=True)


def _reachable(url: str, timeout: float = 3.0) -> bool:
    """Can a connection to the weights' host be opened at all (DNS and TCP)?"""
    parsed = urlparse(url)
    try:
        socket.create_connection((parsed.hostname, parsed.port or 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _from_file(constructor, path: Path) -> tuple[nn.Module, Weights]:
    if not path.is_file():
        raise UserError(
            f"model.weights={path}: no such file; expected auto, imagenet, none or a state dict"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many types for a bad file
        raise UserError(f"model.weights={path} is not a loadable state dict ({error})") from None
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}  # any head is replaced
    model = constructor(weights=None)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shapes differ: another depth
        first = str(error).split("\n")[1].strip() if "\n" in str(error) else str(error)
        raise UserError(f"model.weights={path} does not fit this architecture ({first})") from None
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise UserError(
            f"model.weights={path} does not fit this architecture: "
            f"{len(missing)} missing keys (e.g. {missing[:2]}), {len(unexpected)} unexpected "
            f"(e.g. {unexpected[:2]})"
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return model, Weights(f"file:{path.name}:{digest}", pretrained=True)


def _check_arch(arch: str) -> str:
    if arch not in ARCHITECTURES:
        raise UserError(f"model {arch!r} is not one of {', '.join(ARCHITECTURES)}")
    return arch
