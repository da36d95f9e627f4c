"""Grad-CAM maps point at the evidence: trained on images whose class is decided by one
small patch at a random place, the map's peak falls on that patch."""

import numpy as np
import pytest
import torch
from PIL import Image

from src.classifiers.dnn import Refinement
from src.classifiers.network import ImageClassifier, make_head
from src.data.folders import ImageFile
from src.data.presets import ImageSpec, load_pixels
from src.device import Compute
from src.evaluation.gradcam import find_feature_map, scores_and_maps
from src.features.backbone import build_featurizer, feature_size
from src.features.featurize import model_outputs
from src.modes import ModeSettings
from src.modes import dnn as dnn_mode
from src.modes.job import Job
from src.modes.refining import train_with_new_head

SIZE, PATCH = 128, 40  # px: resnet18's last map is 4 x 4 cells of 32 px at 128 px
CLASSES = ("horizontal", "vertical", "none")  # stripes in the patch; "none": no patch at all


def patch_images(folder, n_per_class: int, seed: int):
    """Grey noise everywhere and, but for class "none", one 40 px patch of stripes at a
    random place. Returns the files, labels and patch corners (None: no patch)."""
    rng = np.random.default_rng(seed)
    stripes = np.repeat((np.arange(PATCH) // 5 % 2 * 255).astype(np.uint8)[:, None], PATCH, 1)
    files, labels, corners = [], [], []
    for label, name in enumerate(CLASSES):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            image = rng.integers(90, 166, (SIZE, SIZE, 3), dtype=np.uint8)
            corner = None
            if name != "none":
                top, left = (int(v) for v in rng.integers(0, SIZE - PATCH + 1, size=2))
                patch = stripes if name == "horizontal" else stripes.T
                image[top : top + PATCH, left : left + PATCH] = patch[..., None]
                corner = (top, left)
            path = folder / name / f"{i:03d}.png"
            Image.fromarray(image).save(path)
            files.append(ImageFile(path, f"{name}/{i:03d}.png", name, 0, 0))
            labels.append(label)
            corners.append(corner)
    return files, np.array(labels), corners


def peak_on_patch(cam: np.ndarray, corner) -> bool:
    """Whether the map's strongest cell overlaps the patch (the map is 4 x 4 cells)."""
    cell = SIZE / cam.shape[0]
    y, x = np.unravel_index(np.argmax(cam), cam.shape)
    top, left = corner
    return (
        y * cell < top + PATCH
        and top < (y + 1) * cell
        and x * cell < left + PATCH
        and left < (x + 1) * cell
    )


@pytest.mark.slow  # minutes on 2 CPU cores: 72 images at 128 px, 4 epochs, random weights
def test_the_maps_peak_on_the_patch_that_decides_the_class(tmp_path):
    data = {
        split: patch_images(tmp_path / split, n, seed)
        for split, n, seed in [("train", 24, 0), ("val", 4, 1), ("test", 8, 2)]
    }
    job = Job(
        files={s: d[0] for s, d in data.items()},
        labels={s: d[1] for s, d in data.items()},
        num_classes=len(CLASSES),
        image=ImageSpec(SIZE),
        compute=Compute(torch.device("cpu")),
        batch_size=16,
    )
    torch.manual_seed(0)
    featurizer, _ = build_featurizer("resnet18", "none", SIZE)
    settings = Refinement(epochs=4, lr=0.01, batch_size=8, augment=False, patience=0)
    network = train_with_new_head(job, featurizer, ModeSettings("dnn", settings, dropout=0.0), 512)
    fitted = dnn_mode.fit(job, network, None)
    _, labels, corners = data["test"]
    assert fitted.maps.predicted.shape == (len(labels), 4, 4)
    assert fitted.maps.layer == "featurizer.1.layer4"
    with_patch = [i for i, c in enumerate(corners) if c is not None]
    on_patch = [peak_on_patch(fitted.maps.true[i], corners[i]) for i in with_patch]
    assert np.mean(on_patch) >= 0.7, on_patch


def small_classifier(arch: str, size: int, head: str = "svm") -> ImageClassifier:
    torch.manual_seed(0)
    featurizer, _ = build_featurizer(arch, "none", size)
    return ImageClassifier(featurizer, make_head(head, feature_size(arch), 3), head == "svm")


@pytest.mark.parametrize(
    ("arch", "size", "layer"),
    [
        ("resnet18", 64, "featurizer.1.layer4"),  # the last map (2 x 2) before pooling
        ("convnext_tiny", 64, "featurizer.1.features"),
        # after the last block's attention only the class token reaches the head
        ("vit_b_32", 64, "featurizer.1.encoder.layers.encoder_layer_11.ln_1"),
    ],
)
def test_the_map_is_taken_from_the_last_spatial_layer_the_scores_depend_on(arch, size, layer):
    model = small_classifier(arch, size).eval()
    assert find_feature_map(model, size, torch.device("cpu")).name == layer


def test_the_scoring_pass_gives_the_plain_scores_and_for_a_linear_head_the_class_map(tmp_path):
    files, labels, _ = patch_images(tmp_path, 2, seed=3)
    paths = [f.path for f in files]
    model = small_classifier("resnet18", SIZE, "svm")
    image, compute = ImageSpec(SIZE), Compute(torch.device("cpu"))
    logits, maps = scores_and_maps(model, paths, labels, image, compute, 4)
    plain = model_outputs(model, paths, image, compute, 4)
    assert np.abs(logits - plain).max() < 1e-4
    # linear head on average-pooled features: Grad-CAM is the class activation map
    # ReLU(sum_k w_ck A_k), also under the SVM's L2 normalisation
    captured = {}
    layer4 = model.featurizer[1].layer4
    handle = layer4.register_forward_hook(lambda m, i, o: captured.update(a=o))
    with torch.no_grad():
        pixels = torch.from_numpy(np.stack([load_pixels(p.read_bytes(), SIZE) for p in paths]))
        model(pixels)
    handle.remove()
    weight = model.head.weight.detach()
    best = logits.argmax(1)
    for i in range(len(paths)):
        cam = torch.relu(torch.einsum("k,khw->hw", weight[best[i]], captured["a"][i])).numpy()
        expected = cam / max(cam.max(), 1e-12)
        assert np.abs(maps.predicted[i].astype(np.float32) - expected).max() < 2e-3


@pytest.mark.parametrize("head", ["svm", "dnn"])
def test_the_test_split_is_scored_in_the_runs_precision(tmp_path, head):
    """One precision per run: the Grad-CAM pass that scores the test split gives exactly the
    logits of the inference path (the served model's) in the run's bf16, not fp32's (the pass
    ran in fp32 once, while C, T and the best epoch were chosen in bf16)."""
    files, labels, _ = patch_images(tmp_path, 2, seed=4)
    paths = [f.path for f in files]
    model = small_classifier("resnet18", 64, head).eval()
    image = ImageSpec(64)
    bf16, fp32 = (Compute(torch.device("cpu"), p) for p in ("bf16", "fp32"))
    logits, _ = scores_and_maps(model, paths, labels, image, bf16, 4)
    assert np.array_equal(logits, model_outputs(model, paths, image, bf16, 4))
    assert not np.array_equal(logits, model_outputs(model, paths, image, fp32, 4))


def test_a_two_class_svm_whose_scores_sum_to_zero_still_has_a_map():
    model = small_classifier("resnet18", 32, "svm")
    model.head = make_head("svm", 512, 2)
    with torch.no_grad():  # LinearSVC's one hyperplane as two rows: scores +m/2 and -m/2
        model.head.weight[1] = -model.head.weight[0]
        model.head.bias[1] = -model.head.bias[0]
    assert find_feature_map(model.eval(), 32, torch.device("cpu")).name == "featurizer.1.layer3"
