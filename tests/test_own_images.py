"""End to end on a folder of one's own images: the leakage check, the dataset overview and the
results page, as a user finds them in MLflow; and the original dataset's missing-folder hint."""

import csv
import io
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient

from src.errors import UserError
from src.pipeline import dataset_root
from src.run_spec import describe_run
from tests.conftest import ROOT, run_cli, write_dataset


def only_run(tmp):
    client = MlflowClient(f"sqlite:///{tmp}/mlruns/mlflow.db")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return client, run


def all_artifacts(client, run_id, path=None) -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= all_artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return found


class Items(HTMLParser):
    def __init__(self):
        super().__init__()
        self.items = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "div" and "item" in attrs.get("class", "").split():
            self.items.append(attrs)


@pytest.mark.slow  # a run
def test_a_run_logs_leaky_duplicates_the_dataset_overview_and_the_results_page(tmp_path):
    root = write_dataset(tmp_path / "pics", {"cat": 8, "dog": 8})
    copies = [("cat/cat_000.jpg", "cat/cat_000 copy.jpg"), ("dog/dog_001.jpg", "dog/again.jpg")]
    copies += [(f"cat/cat_00{i}.jpg", f"cat/twin_{i}.jpg") for i in range(2, 6)]
    for original, copy in copies:
        shutil.copy(root / original, root / copy)
    result = run_cli("dataset=folder", f"dataset.root={root}", tmp=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    client, run = only_run(tmp_path)
    run_id = run.info.run_id
    artifacts = all_artifacts(client, run_id)
    assert artifacts >= {
        "data/leaky_duplicates.tsv",
        "data/class_counts.png",
        "data/image_sizes.png",
        "data/thumbnails/00_cat.png",
        "data/thumbnails/01_dog.png",
        "evaluation/results_test.html",
    }

    def artifact(path: str) -> str:
        return Path(client.download_artifacts(run_id, path, str(tmp_path))).read_text("utf-8")

    split = {row["path"]: row for row in csv.DictReader(io.StringIO(artifact("data/split.csv")))}
    leaks = [pair for pair in copies if split[pair[0]]["split"] != split[pair[1]]["split"]]
    assert leaks, "the planted copies should straddle the split with this seed"
    assert run.data.params["data.leaky_duplicates"] == str(len(leaks))
    assert run.data.params["data.duplicate_groups"] == str(len(copies))
    listed = csv.DictReader(io.StringIO(artifact("data/leaky_duplicates.tsv")), delimiter="\t")
    assert {row["path"] for row in listed} == {path for pair in leaks for path in pair}
    assert f"{len(leaks)} group(s) of duplicate images straddle train/val/test" in result.stdout

    page = Items()
    page.feed(artifact("evaluation/results_test.html"))
    test = {path: row["label"] for path, row in split.items() if row["split"] == "test"}
    assert {item["data-path"]: item["data-true"] for item in page.items} == test
    wrong = ["wrong" in item["class"] for item in page.items]
    assert wrong == sorted(wrong, reverse=True)  # mistakes first


def test_the_original_dataset_not_yet_downloaded_says_how_to_get_it(tmp_path):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", ["dataset=fashion_texture", f"paths.data_dir={tmp_path}"])
    assert cfg.dataset.split.group_duplicates is False
    with pytest.raises(UserError) as error:
        dataset_root(describe_run(cfg).data)
    assert str(error.value) == (
        f"{tmp_path}/images/fashionTexture does not exist; download it with: python -m "
        f"src.download urls=fashionTextureUrls.tsv name=fashionTexture data_dir={tmp_path}"
    )
