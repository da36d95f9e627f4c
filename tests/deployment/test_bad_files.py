"""`src.predict` on files a decoder fails on (issue 24): one line, one error row each, and the
other files scored. The scoring server's 400 for them is in test_scoring_server.py."""

import csv
import shutil

from benchmarks.fuzz import regression_inputs
from src.predict import predict
from tests.conftest import image_bytes


def test_predict_gives_each_file_a_decoder_fails_on_an_error_row_and_scores_the_rest(
    trained, tmp_path, capsys
):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "good.jpg").write_bytes(image_bytes(size=(90, 60)))
    bad = regression_inputs()
    for path in bad:
        shutil.copyfile(path, folder / path.name)
    output = tmp_path / "predictions.csv"
    predict(
        [
            f"model=runs:/{trained.run_id}/model",
            f"input={folder}",
            f"output={output}",
            f"tracking_uri={trained.uri}",
            "num_workers=0",
        ]
    )
    assert capsys.readouterr().out.splitlines() == [
        f"1 image scored on cpu, {len(bad)} unreadable (see the error column): {output}"
    ]
    with output.open(newline="") as handle:
        rows = {row["path"]: row for row in csv.DictReader(handle)}
    assert rows.pop(str(folder / "good.jpg"))["error"] == ""
    assert sorted(rows) == sorted(str(folder / p.name) for p in bad)
    for row in rows.values():
        assert row["error"].startswith("corrupt or truncated ") and row["label"] == ""
