"""Training and serving pixels: one preprocessing, augmentation reproducible per image."""

from functools import partial

import numpy as np
import pytest
import torch

from src.data.loader import EpochSampler, ImageDataset, SeededItems, make_loader
from src.data.presets import ImageSpec, augment, colour_jitter, load_pixels
from src.features.featurize import image_files
from tests.conftest import image_bytes, write_dataset

CPU = torch.device("cpu")


@pytest.mark.parametrize("preprocessing", ["letterbox", "center_crop"])
def test_featurised_pixels_are_the_served_pixels(tmp_path, preprocessing):
    """The pixels featurisation feeds the network are those the served model computes from
    the same file's bytes (sent base64-encoded, as a client does)."""
    import base64
    from types import SimpleNamespace

    import torch

    from src.classifiers.network import ImageClassifier, make_head, make_spec
    from src.deployment.served_model import ImageClassifierModel
    from src.features.backbone import build_featurizer

    paths = sorted(write_dataset(tmp_path, {"a": 3}, size=(120, 70)).glob("*/*.jpg"))
    featurizer, _ = build_featurizer("resnet18", "none")
    network = ImageClassifier(featurizer, make_head("dnn", 512, 2, 0.0), l2_normalize=False)
    spec = make_spec(network, "resnet18", "dnn", ["a", "b"], 64, preprocessing)
    torch.save(spec, tmp_path / "network.pt")
    served = ImageClassifierModel()
    served.load_context(SimpleNamespace(artifacts={"network": str(tmp_path / "network.pt")}))
    files = image_files(paths, ImageSpec(64, preprocessing))
    for i, path in enumerate(paths):
        pixels, _, index = files[i]
        sent = base64.b64encode(path.read_bytes()).decode()
        assert index == i
        assert np.array_equal(pixels.numpy(), served.pixels_of(sent, i))


def test_augmentation_without_crop_or_jitter_is_the_plain_letterbox():
    data = image_bytes(size=(300, 200))
    rng = np.random.default_rng(0)
    assert np.array_equal(augment(data, 64, rng, crop=1.0, jitter=0), load_pixels(data, 64))


def test_augmentation_cuts_a_random_square_of_the_letterboxed_image():
    data = image_bytes(size=(300, 200))
    crops = {augment(data, 48, np.random.default_rng(s), jitter=0).tobytes() for s in range(8)}
    assert len(crops) > 4  # another seed, usually another square
    framed = load_pixels(data, round(48 / 0.9))
    crop = augment(data, 48, np.random.default_rng(0), jitter=0)
    windows = np.lib.stride_tricks.sliding_window_view(framed, (48, 48, 3))
    assert (windows == crop).all(axis=(-3, -2, -1)).any()  # a window of the 53 px letterbox


def float_jitter(pixels, brightness, contrast, saturation):
    """The colour jitter's definition, in float (the original workflow's formula)."""
    weights = np.array([0.299, 0.587, 0.114], np.float32)
    image = pixels.astype(np.float32) * brightness
    mean = (image @ weights).mean()
    image = (image - mean) * contrast + mean
    grey = (image @ weights)[..., None]
    return np.clip((image - grey) * saturation + grey, 0, 255)


def test_uint8_colour_jitter_is_the_float_formula_within_rounding():
    pixels = np.random.default_rng(0).integers(60, 180, (40, 50, 3), dtype=np.uint8)
    for seed in range(5):
        factors = np.random.default_rng(seed).uniform(0.8, 1.2, size=3)
        jittered = colour_jitter(pixels, np.random.default_rng(seed), 0.2)
        assert jittered.dtype == np.uint8 and jittered.shape == pixels.shape
        assert np.abs(jittered - float_jitter(pixels, *factors)).max() <= 2


def epoch_batches(dataset, sampler, workers: int, epochs: int) -> list[np.ndarray]:
    loader = make_loader(dataset, 4, workers, CPU, sampler=sampler, persistent=True)
    batches = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        batches.append(np.concatenate([pixels.numpy() for pixels, _, _ in loader]))
    return batches


def test_augmentation_is_the_same_whatever_the_workers_and_differs_between_epochs(tmp_path):
    paths = sorted(write_dataset(tmp_path, {"a": 5, "b": 5}, size=(90, 60)).glob("*/*.jpg"))
    labels = [0] * 5 + [1] * 5
    dataset = ImageDataset(paths, labels, partial(augment, size=32), 32)

    def items():
        return SeededItems(EpochSampler(labels, balance=False, max_images=None, seed=3), seed=3)

    in_process = epoch_batches(dataset, items(), 0, 2)
    two_workers = epoch_batches(dataset, items(), 2, 2)
    assert all(np.array_equal(a, b) for a, b in zip(in_process, two_workers, strict=True))
    assert not np.array_equal(in_process[0], in_process[1])
    resumed = items()  # a run resumed at epoch 1 sees what the uninterrupted one saw
    resumed.set_epoch(1)
    again = np.concatenate(
        [p.numpy() for p, _, _ in make_loader(dataset, 4, 1, CPU, sampler=resumed)]
    )
    assert np.array_equal(again, in_process[1])


def _pixels_from_workers(paths):
    dataset = ImageDataset(paths, [0] * len(paths), partial(load_pixels, size=32), 32)
    return np.concatenate([p.numpy() for p, _, _ in make_loader(dataset, 2, 2, CPU)])


def test_loader_workers_start_inside_a_joblib_worker(tmp_path):
    # Hydra's joblib launcher runs a trial in a loky worker: DataLoader workers under loky's
    # start method fail ("'Process' object has no attribute 'env'"); on a GPU or with more
    # than 4 cores num_workers=auto starts some.
    from joblib import Parallel, delayed

    paths = sorted(write_dataset(tmp_path, {"a": 2, "b": 2}, size=(40, 30)).glob("*/*.jpg"))
    here = _pixels_from_workers(paths)
    there = Parallel(n_jobs=2, backend="loky")(delayed(_pixels_from_workers)(paths) for _ in "ab")
    assert all(np.array_equal(here, pixels) for pixels in there)
