"""A run's splits as MLflow datasets: digests that follow the images' contents, one input per
split with its context, and the final metrics tied to their split's dataset."""

import os
import shutil

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from src.data.folders import find_images
from src.data.prepare import SplitSettings, prepare_dataset
from src.tracking.datasets import file_digests, log_dataset_inputs, split_digest
from src.tracking.mlflow_run import experiment_id, tracked_run
from tests.conftest import fresh_store, image_bytes, write_dataset


def digest_of(root) -> str:
    _, files = find_images(root)
    return split_digest(files, file_digests(files))


def prepared(root):
    return prepare_dataset(root, SplitSettings(0.75, 0.2), 0, None, None, 1)


@pytest.fixture
def two_copies(tmp_path):
    first = write_dataset(tmp_path / "a" / "set", {"dotted": 4, "striped": 4})
    second = tmp_path / "b" / "elsewhere"
    shutil.copytree(first, second)
    return first, second


def test_the_same_images_elsewhere_have_the_same_digest(two_copies):
    first, second = two_copies
    for path in second.rglob("*.jpg"):
        os.utime(path, ns=(1, 1))  # other mtimes: the digest is of the contents
    assert digest_of(first) == digest_of(second)


def test_an_image_replaced_by_one_of_the_same_size_and_mtime_changes_the_digest(two_copies):
    first, second = two_copies
    target = second / "dotted" / "dotted_000.jpg"
    stat = target.stat()
    data = bytearray(target.read_bytes())
    data[-3] ^= 0xFF  # one byte of the compressed image, same length
    target.write_bytes(bytes(data))
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert digest_of(first) != digest_of(second)


def test_a_renamed_or_relabelled_image_changes_the_digest(two_copies):
    first, second = two_copies
    (second / "dotted" / "dotted_000.jpg").rename(second / "striped" / "moved.jpg")
    assert digest_of(first) != digest_of(second)
    (second / "dotted" / "extra.jpg").write_bytes(image_bytes(seed=99))
    assert digest_of(first) != digest_of(second)


def test_each_split_is_an_input_of_the_run_and_its_metrics_carry_its_dataset(tmp_path):
    root = write_dataset(tmp_path / "set", {"dotted": 6, "striped": 6})
    data = prepared(root)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    fresh_store(tmp_path / "mlflow.db")
    mlflow.set_tracking_uri(uri)
    with tracked_run(experiment_id(uri, "e"), "r") as run:
        datasets = log_dataset_inputs(data, "fabrics")
        log_dataset_inputs(data, "fabrics")  # a resumed run logs them again: no duplicates
        model_id = mlflow.create_external_model(name="model").model_id
        mlflow.log_metrics({"test/accuracy": 0.5}, dataset=datasets["test"], model_id=model_id)
    client = MlflowClient(uri)
    inputs = client.get_run(run.info.run_id).inputs.dataset_inputs
    assert len(inputs) == 3
    contexts = {i.dataset.name: [t.value for t in i.tags] for i in inputs}
    assert contexts == {
        "fabrics-train": ["train"],
        "fabrics-val": ["validation"],
        "fabrics-test": ["test"],
    }
    test = next(i.dataset for i in inputs if i.dataset.name == "fabrics-test")
    assert test.digest == split_digest(data.subset("test"), file_digests(data.files))
    assert test.source_type == "local" and str(root) in test.source
    assert '"images": ' in test.profile and test.digest != datasets["train"].digest
    (metric,) = client.get_logged_model(model_id).metrics
    assert (metric.dataset_name, metric.dataset_digest) == ("fabrics-test", test.digest)
