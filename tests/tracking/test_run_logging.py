"""What a run logs about its evaluation: the test predictions as an MLflow table."""

import mlflow
import numpy as np
from mlflow.tracking import MlflowClient

from src.data.folders import find_images
from src.tracking.mlflow_run import experiment_id, tracked_run
from src.tracking.run_logging import PREDICTIONS_TABLE, log_test_predictions, predictions_table
from tests.conftest import fresh_store, write_dataset

CLASSES = ["dotted", "leopard", "striped"]
SCORES = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3]])


def test_the_table_has_a_row_per_image_with_labels_scores_and_correctness(tmp_path):
    _, files = find_images(write_dataset(tmp_path / "set", {"dotted": 2, "leopard": 1}))
    table = predictions_table(files, [0, 0, 1], SCORES, CLASSES)
    assert list(table.columns) == [
        "path",
        "true_label",
        "predicted_label",
        "score",
        "p_dotted",
        "p_leopard",
        "p_striped",
        "correct",
    ]
    assert table.to_dict("records")[1] == {
        "path": "dotted/dotted_001.jpg",
        "true_label": "dotted",
        "predicted_label": "striped",
        "score": 0.6,
        "p_dotted": 0.1,
        "p_leopard": 0.3,
        "p_striped": 0.6,
        "correct": False,
    }
    assert table["correct"].tolist() == [True, False, True]


def test_the_predictions_are_a_table_artifact_of_the_run(tmp_path):
    _, files = find_images(write_dataset(tmp_path / "set", {"dotted": 2, "leopard": 1}))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    fresh_store(tmp_path / "mlflow.db")
    mlflow.set_tracking_uri(uri)
    experiment = experiment_id(uri, "e")
    with tracked_run(experiment, "r") as run:
        log_test_predictions(files, [0, 0, 1], SCORES, CLASSES)
    client = MlflowClient(uri)
    assert '"type": "table"' in client.get_run(run.info.run_id).data.tags["mlflow.loggedArtifacts"]
    table = client.load_table(experiment, PREDICTIONS_TABLE, [run.info.run_id])
    assert table["path"].tolist() == [f.relpath for f in files]
    assert table["correct"].tolist() == [True, False, True]
