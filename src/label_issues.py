"""`python -m src.label_issues [key=value ...]` finds the images whose label looks wrong.

    python -m src.label_issues dataset=folder dataset.root=data/images/fashionTexture

It takes the keys of `python -m src.run`, from the same Hydra config, and is that run with
`label_issues=true`: the classifier (`svm` unless told otherwise) is trained and recorded
as usual, and then every image of every split is scored out of fold on the run's features
and ranked by how likely its given label is wrong (src/tracking/label_issues.py). The run's
`label_issues/` artifacts hold the list (label_issues.csv: path, given_label,
suggested_label, score, split, reason), the review page that exports the relabel.csv
`python -m src.relabel` applies, and the picture per class; the last line printed says
where the list is. `classifier=dnn` ranks on the refined network's features instead.
"""

import sys

import hydra
from omegaconf import DictConfig

from src.run import run_config, start


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    return run_config(cfg)


if __name__ == "__main__":
    given = sys.argv[1:]
    asked = any(a.lstrip("+~").startswith("label_issues=") for a in given)
    sys.argv[1:] = start(given if asked else [*given, "label_issues=true"])
    main()
