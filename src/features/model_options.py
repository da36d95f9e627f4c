"""The `model` config group's options: every torchvision classification model, and timm.

conf/model/ holds YAML files only where a model has something to say (the ResNets carry
the original workflow's comments; timm.yaml asks for a timm name). Every other torchvision
model is registered here, in Hydra's ConfigStore, by `register_model_options`: src/run.py
and src/lr_find.py call it before `hydra.main` runs, so `model=convnext_tiny` composes
and Hydra's own "could not find model/..." lists every option.

The names are written out rather than read from `torchvision.models.list_models` at start:
importing torchvision takes seconds, and a mistyped option should fail at once.
tests/features/test_model_options.py checks this list against the installed torchvision.
"""

import difflib

from hydra.core.config_store import ConfigStore

# torchvision.models.list_models(module=torchvision.models), torchvision 0.29
TORCHVISION_MODELS = (
    "alexnet",
    "convnext_base",
    "convnext_large",
    "convnext_small",
    "convnext_tiny",
    "densenet121",
    "densenet161",
    "densenet169",
    "densenet201",
    "efficientnet_b0",
    "efficientnet_b1",
    "efficientnet_b2",
    "efficientnet_b3",
    "efficientnet_b4",
    "efficientnet_b5",
    "efficientnet_b6",
    "efficientnet_b7",
    "efficientnet_v2_l",
    "efficientnet_v2_m",
    "efficientnet_v2_s",
    "googlenet",
    "inception_v3",
    "maxvit_t",
    "mnasnet0_5",
    "mnasnet0_75",
    "mnasnet1_0",
    "mnasnet1_3",
    "mobilenet_v2",
    "mobilenet_v3_large",
    "mobilenet_v3_small",
    "regnet_x_16gf",
    "regnet_x_1_6gf",
    "regnet_x_32gf",
    "regnet_x_3_2gf",
    "regnet_x_400mf",
    "regnet_x_800mf",
    "regnet_x_8gf",
    "regnet_y_128gf",
    "regnet_y_16gf",
    "regnet_y_1_6gf",
    "regnet_y_32gf",
    "regnet_y_3_2gf",
    "regnet_y_400mf",
    "regnet_y_800mf",
    "regnet_y_8gf",
    "resnet101",
    "resnet152",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnext101_32x8d",
    "resnext101_64x4d",
    "resnext50_32x4d",
    "shufflenet_v2_x0_5",
    "shufflenet_v2_x1_0",
    "shufflenet_v2_x1_5",
    "shufflenet_v2_x2_0",
    "squeezenet1_0",
    "squeezenet1_1",
    "swin_b",
    "swin_s",
    "swin_t",
    "swin_v2_b",
    "swin_v2_s",
    "swin_v2_t",
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg13_bn",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
    "vit_b_16",
    "vit_b_32",
    "vit_h_14",
    "vit_l_16",
    "vit_l_32",
    "wide_resnet101_2",
    "wide_resnet50_2",
)
WITH_YAML = ("resnet18", "resnet34", "resnet50", "timm")  # conf/model/<name>.yaml


def register_model_options() -> None:
    """One ConfigStore entry per torchvision model without its own YAML file."""
    store = ConfigStore.instance()
    for name in TORCHVISION_MODELS:
        if name not in WITH_YAML:
            # weights: auto | imagenet | none | PATH, as in conf/model/resnet18.yaml
            store.store(group="model", name=name, node={"name": name, "weights": "auto"})


def model_options() -> list[str]:
    return sorted(set(TORCHVISION_MODELS) | set(WITH_YAML))


def close_model_names(name: str, n: int = 5) -> list[str]:
    """The options nearest to a mistyped `model=NAME`, best first (for the one-line error)."""
    options = model_options()
    close = difflib.get_close_matches(name, options, n=n, cutoff=0.6)
    # a known family prefix (resnet99 → resnet18, resnet34, ...) when spelling alone finds few
    family = name.rstrip("0123456789_").lower()
    if family:
        close += [o for o in options if o.startswith(family) and o not in close]
    return close[:n]
