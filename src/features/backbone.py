"""The pretrained backbone: uint8 pixels in, the pooled penultimate representation out.

Any torchvision classification model (`model=convnext_tiny`) or, when timm is installed,
any timm model (`model=timm model.name=NAME`; its architecture string is `timm:NAME`).
The model's own classifier is replaced by an identity: what is left ends in the pooled
features that the SVM sees and a refinement head is put on. Its normalisation (mean and
std) comes from its weights' own preprocessing and runs inside the model (`Normalize`).

`model.weights` decides where its weights come from:
  imagenet  torchvision's (timm's) ImageNet weights (downloaded once into torch's cache)
  none      random initialisation (tests, or training from scratch)
  PATH      a state dict saved with torch.save
  auto      ImageNet weights when they can be had, else random, with a loud warning
Whatever happened is returned as a `Weights` record, so the run can log it.
"""

import functools
import hashlib
import logging
import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from src.errors import UserError

log = logging.getLogger(__name__)

TIMM = "timm:"  # architecture strings of timm models start with it
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # what every torchvision ImageNet model was trained with
IMAGENET_STD = (0.229, 0.224, 0.225)
DOWNLOAD_TIMEOUT = 30  # s without a byte before a weights download is given up
CLASSIFIER_ATTRIBUTES = ("fc", "classifier", "heads", "head")  # where torchvision keeps it
AUXILIARY = ("AuxLogits.", "aux1.", "aux2.")  # googlenet / inception_v3 training-only heads


@dataclass(frozen=True)
class Weights:
    identity: str  # e.g. "torchvision:ResNet18_Weights.IMAGENET1K_V1", "none", "file:<sha>"
    pretrained: bool


@dataclass(frozen=True)
class Preprocessing:
    """What the architecture's own weights expect: recorded as the run's params."""

    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    native_size: int = 224  # px, the side its ImageNet weights were trained and evaluated at
    patch_size: int | None = None  # vision transformers: the side must be a multiple of this
    params: dict = field(default_factory=dict)


class Normalize(nn.Module):
    """uint8 (N, H, W, 3) → float (N, 3, H, W), normalised, channels-last in memory.

    Part of the model, so the conversion runs on the model's device and the served model
    takes the same uint8 pixels that training saw."""

    def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) * 255)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # NHWC permuted to NCHW is exactly the channels-last layout: no copy is made here.
        x = images.permute(0, 3, 1, 2).to(self.mean.dtype)
        return (x - self.mean) / self.std


def architecture(model_cfg) -> str:
    """The architecture string of a `model` config: its name, or `timm:NAME`."""
    name = str(model_cfg.name)
    return TIMM + name if model_cfg.get("source") == "timm" else name


def feature_size(arch: str, size: int | None = None) -> int:
    """Length of the pooled feature vector (built on the meta device: no memory, no init)."""
    size = size or preprocessing_of(arch).native_size
    try:
        with torch.device("meta"):
            return _strip_classifier(_construct(arch, None, size)[0])[1]
    except NotImplementedError:  # an initialiser that needs real numbers (regnet's)
        return _strip_classifier(_construct(arch, None, size)[0])[1]


def build_featurizer(
    arch: str, weights: str = "auto", size: int | None = None
) -> tuple[nn.Sequential, Weights]:
    """Normalize → the network without its classifier: pixels → pooled features.
    `size`: the side of the images it will see (vision transformers are built for it)."""
    preprocessing = preprocessing_of(arch)
    size = int(size or preprocessing.native_size)
    if size != preprocessing.native_size and str(weights) != "none":
        log.info(
            f"{arch}: its weights were trained at {preprocessing.native_size} px; "
            f"this run uses {size} px (resolution.size)"
        )
    check_size(arch, size, preprocessing)
    try:
        trunk, info = _load(arch, str(weights), size)
    except (ValueError, AssertionError) as error:  # e.g. maxvit: sides its windows cannot tile
        raise _size_error(arch, size, error) from None
    featurizer = nn.Sequential(Normalize(preprocessing.mean, preprocessing.std), trunk)
    _probe(featurizer, arch, size)
    return featurizer, info


@functools.lru_cache(maxsize=16)
def preprocessing_of(arch: str) -> Preprocessing:
    """Mean, std and native side of the architecture's default (ImageNet) weights."""
    if arch.startswith(TIMM):
        timm = _timm()
        name = arch[len(TIMM) :]
        try:
            config = timm.get_pretrained_cfg(name)
        except RuntimeError:
            config = None
        if config is None:
            _check_timm_name(timm, name)
            return Preprocessing()
        side = int(config.input_size[-1])
        patch = _timm_patch_size(name)
        return Preprocessing(tuple(config.mean), tuple(config.std), side, patch)
    from torchvision import models

    _check_torchvision_name(arch)
    default = models.get_model_weights(arch).DEFAULT
    transforms = default.transforms()
    patch = int(arch.split("_")[-1]) if arch.startswith("vit_") else None
    return Preprocessing(
        tuple(transforms.mean), tuple(transforms.std), int(transforms.crop_size[0]), patch
    )


def check_size(arch: str, size: int, preprocessing: Preprocessing | None = None) -> None:
    """A vision transformer cuts the image into patches: the side must be a multiple."""
    patch = (preprocessing or preprocessing_of(arch)).patch_size
    if patch and size % patch:
        lower, upper = size // patch * patch, (size // patch + 1) * patch
        fits = f"{lower} or {upper}" if lower else str(upper)
        raise UserError(
            f"model {arch} cuts images into {patch} px patches: resolution.size={size} is not "
            f"a multiple of {patch}; use resolution.size={fits}"
        )


def check_model(arch: str, size: int) -> None:
    """The checks that need no network built: a known name, timm installed, a fitting side."""
    check_size(arch, int(size), preprocessing_of(arch))


def describe(arch: str, featurizer: nn.Sequential) -> dict[str, str]:
    """The params a run records about its backbone."""
    preprocessing = preprocessing_of(arch)
    normalize = featurizer[0]
    mean = (normalize.mean.flatten() / 255).tolist()
    std = (normalize.std.flatten() / 255).tolist()
    return {
        "model.architecture": arch,
        "model.feature_size": str(feature_size(arch)),
        "model.native_size": str(preprocessing.native_size),
        "model.normalize_mean": ",".join(f"{v:.4f}" for v in mean),
        "model.normalize_std": ",".join(f"{v:.4f}" for v in std),
    }


def _construct(arch: str, imagenet: bool | None, size: int) -> tuple[nn.Module, str]:
    """The full network (its own classifier still on) and its weights' identity."""
    if arch.startswith(TIMM):
        timm, name = _timm(), arch[len(TIMM) :]
        kwargs = {"img_size": size} if _timm_patch_size(name) else {}
        model = timm.create_model(name, pretrained=bool(imagenet), **kwargs)
        tag = getattr(model, "pretrained_cfg", {}).get("tag") or "default"
        return model, f"timm:{name}.{tag}" if imagenet else "none"
    from torchvision import models

    kwargs = {}
    if arch.startswith("vit_"):
        kwargs["image_size"] = size
    elif arch.startswith("maxvit_"):
        kwargs["input_size"] = (size, size)
    enum = models.get_model_weights(arch).DEFAULT if imagenet else None
    if arch in ("googlenet", "inception_v3") and enum is None:
        kwargs["init_weights"] = False  # torch's default init: scipy's takes seconds per build
    if enum is not None and kwargs:
        # torchvision builds pretrained transformers at their native side only: build that,
        # then carry its weights over (position embeddings interpolated for the new side)
        native = models.get_model(arch, weights=enum, progress=True)
        model = models.get_model(arch, weights=None, **kwargs)
        model.load_state_dict(_resized_state(arch, native.state_dict(), size))
    else:
        model = models.get_model(arch, weights=enum, **kwargs)
    if hasattr(model, "aux_logits"):  # googlenet, inception_v3: one output, always
        model.aux_logits = False
        for name in ("AuxLogits", "aux1", "aux2"):
            if hasattr(model, name):
                setattr(model, name, None)
        model.transform_input = True  # as their ImageNet weights were trained: same both ways
    return model, f"torchvision:{enum}" if enum is not None else "none"


def _resized_state(arch: str, state: dict, size: int) -> dict:
    if arch.startswith("vit_"):
        from torchvision.models.vision_transformer import interpolate_embeddings

        return interpolate_embeddings(size, int(arch.split("_")[-1]), state)
    return state


def _strip_classifier(model: nn.Module) -> tuple[str, int]:
    """Replace the model's own last layer by an identity, in place; returns the state-dict
    prefix of what was removed and the feature size left."""
    if hasattr(model, "reset_classifier") and hasattr(model, "num_features"):  # timm
        classifier = getattr(model, "pretrained_cfg", {}).get("classifier") or "head"
        model.reset_classifier(0)
        return f"{classifier}.", int(model.num_features)
    for attribute in CLASSIFIER_ATTRIBUTES:
        classifier = getattr(model, attribute, None)
        if isinstance(classifier, nn.Linear):
            setattr(model, attribute, nn.Identity())
            return f"{attribute}.", classifier.in_features
        if isinstance(classifier, nn.Sequential):
            layers = (nn.Linear, nn.Conv2d)
            last = [n for n, m in classifier.named_children() if isinstance(m, layers)]
            if last:
                layer = getattr(classifier, last[-1])
                setattr(classifier, last[-1], nn.Identity())
                size = layer.in_features if isinstance(layer, nn.Linear) else layer.in_channels
                return f"{attribute}.{last[-1]}.", size
    raise RuntimeError(f"no classifier layer found on {type(model).__name__}")


def _load(arch: str, weights: str, size: int) -> tuple[nn.Module, Weights]:
    if weights == "none":
        model, _ = _construct(arch, False, size)
        _strip_classifier(model)
        return model, Weights("none", pretrained=False)
    if weights in ("imagenet", "auto"):
        try:
            return _imagenet(arch, size)
        except UserError as error:
            if weights == "imagenet":
                raise
            log.warning(
                f"WARNING: {error}.\nGoing on with RANDOMLY INITIALISED weights: features "
                "from a random network are weak, so expect accuracies near chance on real photos "
                "(model.weights=none says this is intended and silences this warning)."
            )
            return _load(arch, "none", size)
    return _from_file(arch, Path(weights).expanduser(), size)


def _imagenet(arch: str, size: int) -> tuple[nn.Module, Weights]:
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    if not arch.startswith(TIMM):
        from torchvision import models

        url = models.get_model_weights(arch).DEFAULT.url
        filename = Path(url).name
        if not (checkpoints / filename).is_file() and not _reachable(url):
            # torch would print `Downloading: "https://..."` first, as if one were under way
            raise UserError(
                f"ImageNet weights of {arch} are not in torch's cache ({checkpoints}) and "
                f"{urlparse(url).hostname} cannot be reached; copy {filename} there, or use "
                "model.weights=none (random initialisation) or model.weights=PATH (a state dict)"
            )
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT)  # torch.hub's download has no timeout of its own
    try:
        model, identity = _construct(arch, True, size)
    except (OSError, RuntimeError) as error:  # URLError is an OSError; a torn file a RuntimeError
        where = f"torch's cache ({checkpoints})"
        where = "the Hugging Face cache" if arch.startswith(TIMM) else where
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(
            f"ImageNet weights of {arch} are not in {where} and could not be downloaded "
            f"({first}); copy them there, or use model.weights=none (random initialisation) "
            "or model.weights=PATH (a state dict)"
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


def _from_file(arch: str, path: Path, size: int) -> tuple[nn.Module, Weights]:
    if not path.is_file():
        raise UserError(
            f"model.weights={path}: no such file; expected auto, imagenet, none or a state dict"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many types for a bad file
        raise UserError(f"model.weights={path} is not a loadable state dict ({error})") from None
    model, _ = _construct(arch, False, size)
    head, _ = _strip_classifier(model)
    dropped = (head, *AUXILIARY)  # any head is replaced; auxiliary heads are not used
    state = {k: v for k, v in state.items() if not k.startswith(dropped)}
    if "encoder.pos_embedding" in state:  # a ViT saved at another side
        state = _resized_state(arch, state, size)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shapes differ: another depth
        first = str(error).split("\n")[1].strip() if "\n" in str(error) else str(error)
        raise UserError(f"model.weights={path} does not fit this architecture ({first})") from None
    if missing or unexpected:
        raise UserError(
            f"model.weights={path} does not fit this architecture: "
            f"{len(missing)} missing keys (e.g. {missing[:2]}), {len(unexpected)} unexpected "
            f"(e.g. {unexpected[:2]})"
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return model, Weights(f"file:{path.name}:{digest}", pretrained=True)


def _probe(featurizer: nn.Module, arch: str, size: int) -> None:
    """One blank image through the network: a side it cannot take fails here, in one line."""
    was_training = featurizer.training
    try:
        with torch.inference_mode():
            featurizer.eval()(torch.zeros(1, size, size, 3, dtype=torch.uint8))
    except (RuntimeError, ValueError, AssertionError) as error:
        raise _size_error(arch, size, error) from None
    finally:
        featurizer.train(was_training)


def _size_error(arch: str, size: int, error: Exception) -> UserError:
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return UserError(f"model {arch} cannot take {size} px images (resolution.size={size}): {first}")


def _check_torchvision_name(arch: str) -> None:
    from torchvision import models

    if arch not in models.list_models(module=models):
        from src.features.model_options import close_model_names

        close = close_model_names(arch)
        hint = f"; close: {', '.join(close)}" if close else ""
        raise UserError(
            f"model {arch!r} is not a torchvision classification model{hint} "
            "(or model=timm model.name=NAME for a timm model)"
        )


def _timm():
    try:
        import timm
    except ImportError:
        raise UserError(
            "model=timm needs the timm package: pip install -e '.[timm]' (or pip install timm)"
        ) from None
    return timm


def _check_timm_name(timm, name: str) -> None:
    if not timm.is_model(name):
        close = timm.list_models(f"*{name[:6]}*")[:5]
        hint = f"; close: {', '.join(close)}" if close else ""
        raise UserError(f"model.name={name!r} is not a timm model{hint}")


def _timm_patch_size(name: str) -> int | None:
    """The patch side of a timm vision transformer (None for other architectures)."""
    import timm

    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False)
    patch_embed = getattr(model, "patch_embed", None)
    patch = getattr(patch_embed, "patch_size", None)
    if patch is None or not hasattr(patch_embed, "img_size"):
        return None
    return int(patch[0] if isinstance(patch, tuple | list) else patch)
