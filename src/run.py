"""The main job: `python -m src.run [key=value ...]` (add -m for a sweep).

Hydra composes conf/ into one config; `pipeline` unpacks it and runs
data → features → classifier → evaluation, recording everything in one MLflow run, and
returns the objective (validation class-averaged accuracy) for sweepers to maximise.
"""

import logging
import os
import re
import sys
import tempfile
from pathlib import Path

import hydra
import mlflow
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from src.classifiers.network import make_spec
from src.classifiers.svm import fit_svm_classifier
from src.data.duplicates import write_groups_tsv
from src.data.overview import write_overview
from src.data.prepare import prepare_dataset
from src.data.presets import load_pixels
from src.data.split import write_split_csv
from src.data.synthetic import ensure_synthetic_textures
from src.device import configure, pick_device, resolve_workers
from src.errors import UserError
from src.evaluation.metrics import evaluate, flat_metrics
from src.evaluation.plots import c_selection_figure, confusion_figure, roc_figure
from src.evaluation.results_page import write_results_page
from src.features.backbone import build_featurizer
from src.features.cache import cached_features
from src.features.featurize import featurize
from src.tracking import mlflow_run
from src.tracking.pyfunc_model import encode_jpeg, log_model

log = logging.getLogger("imgsweep")
NUMERIC_GROUPS = ("resolution",)  # config groups whose options are named by numbers
SPLITS = ("train", "val", "test")


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    try:
        return pipeline(cfg)
    except UserError as error:
        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # the sweeper records the failed trial and goes on
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)


def pipeline(cfg: DictConfig) -> float:
    """One run; returns the validation class-averaged accuracy."""
    here = Path.cwd()
    uri = mlflow_run.resolve_uri(cfg.tracking.uri, here, os.environ.get("MLFLOW_TRACKING_URI"))
    mlflow_run.check_reachable(uri)  # before any heavy work
    mlflow.set_tracking_uri(uri)
    device = pick_device(cfg.device)
    configure(device)
    workers = resolve_workers(cfg.num_workers, device)
    torch.manual_seed(cfg.seed)
    root = dataset_root(cfg.dataset)
    experiment = cfg.tracking.experiment or cfg.dataset.name or root.name
    size, preprocessing = int(cfg.resolution.size), cfg.resolution.preprocessing
    run_name = cfg.tracking.run_name or f"{cfg.classifier.name}-{cfg.model.name}-{size}px"
    tags = {"classifier": cfg.classifier.name, "model": cfg.model.name, "dataset": experiment}
    if commit := mlflow_run.git_commit(Path(__file__).parent):
        tags["git_commit"] = commit

    with (
        mlflow_run.tracked_run(mlflow_run.experiment_id(uri, experiment), run_name, tags) as run,
        tempfile.TemporaryDirectory() as tmp,
    ):
        out = Path(tmp)
        config = OmegaConf.to_container(cfg, resolve=True)
        mlflow_run.log_config(config, OmegaConf.to_yaml(config))
        data = prepare_dataset(
            root,
            cfg.seed,
            cfg.dataset.max_images_per_class,
            cfg.dataset.split.train_ratio,
            cfg.dataset.split.val_ratio,
            cfg.dataset.split.by,
            cfg.dataset.split.test_list,
            Path(cfg.paths.cache_dir) / "image_checks",
            workers + 1,
            cfg.dataset.split.get("group_duplicates", False),
            cfg.dataset.split.get("duplicate_threshold", 0),
        )
        log_data(data, out)
        featurizer, weights = build_featurizer(cfg.model.name, cfg.model.weights)
        mlflow.set_tag("pretrained", str(weights.pretrained).lower())
        mlflow.log_param("model.weights_identity", weights.identity)

        files = {s: data.subset(s) for s in SPLITS}
        labels = {s: data.labels(files[s]) for s in SPLITS}
        featurizer_id = {
            "arch": cfg.model.name,
            "weights": weights.identity,
            "size": size,
            "preprocessing": preprocessing,
            # random weights differ per seed (torch.manual_seed above), so do their features
            "seed": None if weights.pretrained else cfg.seed,
        }
        features, hit = cached_features(
            Path(cfg.paths.cache_dir) / "features",
            featurizer_id,
            data.files,
            lambda: featurize(
                featurizer,
                [f.path for f in data.files],
                size,
                preprocessing,
                cfg.resolution.featurize_batch_size,
                workers,
                device,
            ),
        )
        if hit:
            log.info(
                f"features: found in the cache, featurisation skipped ({len(features)} images)"
            )
        row = {f.relpath: i for i, f in enumerate(data.files)}
        by_split = {s: features[[row[f.relpath] for f in files[s]]] for s in SPLITS}
        model, fit, logits = fit_svm_classifier(
            featurizer,
            by_split,
            labels,
            len(data.classes),
            cfg.classifier.C_values,
            cfg.classifier.l2_normalize,
            cfg.seed,
        )
        log_svm_selection(cfg.classifier.C_values, fit, out)

        reports = {s: evaluate(labels[s], softmax(logits[s]), data.classes) for s in SPLITS}
        log_evaluation(reports, data.classes, out)
        write_results_page(
            out / "evaluation" / "results_test.html",
            files["test"],
            labels["test"],
            softmax(logits["test"]),
            data.classes,
            data.root,
            f"{run_name}: test results",
        )
        spec = make_spec(model.cpu(), cfg.model.name, "svm", data.classes, size, preprocessing)
        example = encode_jpeg(load_pixels(files["test"][0].path.read_bytes(), size, preprocessing))
        log_model(spec, example)
        mlflow.log_artifacts(str(out))
    print_summary(cfg, weights, reports, fit, uri, run.info.experiment_id, run.info.run_id)
    return reports["val"]["class_avg_accuracy"]


def dataset_root(dataset: DictConfig) -> Path:
    """The dataset's folder; the synthetic default is generated on first use."""
    if dataset.get("root") in (None, ""):
        raise UserError("dataset=folder needs dataset.root=PATH (a folder of class folders)")
    root = Path(str(dataset.root)).expanduser().resolve()
    if dataset.get("download") and not root.exists():
        raise UserError(f"{root} does not exist; download it with: {dataset.download}")
    if "synthetic" in dataset:
        synthetic = dataset.synthetic
        ensure_synthetic_textures(
            root, synthetic.images_per_class, synthetic.image_size, synthetic.seed
        )
    return root


def log_data(data, out: Path) -> None:
    counts = data.counts()
    log.info(
        f"dataset {data.root}: {len(data.classes)} classes, "
        + ", ".join(f"{n} {s}" for s, n in counts.items())
        + (f", {len(data.skipped)} skipped" if data.skipped else "")
    )
    mlflow.log_params(
        {
            "data.fingerprint": data.fingerprint,
            "data.root": str(data.root),
            "data.classes": ",".join(data.classes),
        }
    )
    leaks = data.leaky_duplicates()
    mlflow.log_metrics(
        {
            "data/skipped_files": len(data.skipped),
            "data/duplicate_groups": len(data.duplicates),
            "data/leaky_duplicates": len(leaks),
            **{f"data/{s}_images": n for s, n in counts.items()},
        }
    )
    (out / "data").mkdir()
    write_split_csv(
        out / "data" / "split.csv", data.split, {f.relpath: f.label for f in data.files}
    )
    skipped = "path\treason\n" + "".join(f"{p}\t{r}\n" for p, r in data.skipped)
    (out / "data" / "skipped_files.tsv").write_text(skipped, encoding="utf-8")
    labels = {f.relpath: f.label for f in data.files}
    write_groups_tsv(out / "data" / "leaky_duplicates.tsv", leaks, labels, data.split)
    sizes = {relpath: (check.width, check.height) for relpath, check in data.checks.items()}
    write_overview(out / "data", data.classes, data.files, data.split, sizes)


def log_svm_selection(C_values, fit, out: Path) -> None:
    for step, score in enumerate(fit.val_scores):
        mlflow.log_metric("val/svm_C_class_avg_accuracy", score, step=step)
    mlflow.log_params({"classifier.chosen_C": fit.C, "classifier.temperature": fit.temperature})
    (out / "classifier").mkdir()
    c_selection_figure(
        list(C_values), fit.val_scores, fit.C, out / "classifier" / "svm_C_selection.png"
    )


def log_evaluation(reports: dict, classes: list[str], out: Path) -> None:
    for split, report in reports.items():
        mlflow.log_metrics(flat_metrics(report, split))
    (out / "evaluation").mkdir()
    roc_figure(reports["test"], out / "evaluation" / "roc_test.png")
    confusion_figure(reports["test"], classes, out / "evaluation" / "confusion_test.png")


def print_summary(cfg, weights, reports, fit, uri, experiment_id, run_id) -> None:
    test = reports["test"]
    lines = [
        "",
        f"run {run_id} finished: {cfg.classifier.name}, {cfg.model.name}, "
        f"{cfg.resolution.size} px, {'pretrained' if weights.pretrained else 'random'} weights",
        f"  {'split':<6} {'images':>7} {'accuracy':>9} {'class-avg':>10}",
    ]
    for split, report in reports.items():
        support = sum(c["support"] for c in report["per_class"].values())
        lines.append(
            f"  {split:<6} {support:>7} {report['accuracy']:>9.3f} "
            f"{report['class_avg_accuracy']:>10.3f}"
        )
    lines.append(
        f"  test AUC: micro {test['auc_micro']:.3f}, macro {test['auc_macro']:.3f}"
        + (f"; SVM C = {fit.C:g}" if fit is not None else "")
    )
    if command := mlflow_run.ui_command(uri):
        lines.append(f"compare runs: {command}")
    lines.append(f"  then open {mlflow_run.runs_url(uri, experiment_id, run_id)}")
    print("\n".join(lines))


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def prepare_overrides(args: list[str]) -> list[str]:
    """Make two natural command lines valid Hydra overrides:
    - `resolution=448`: Hydra parses 448 as a number, and a group option must be a name, so
      numeric choices are quoted (`resolution='448'`, lists like `resolution=224,448` too);
    - `dataset.root=~/pics`: the shell does not expand `~` after `key=`, and Hydra's grammar
      rejects it, so a leading `~` in a value is expanded here."""
    numeric = re.compile(rf"^([+~]?(?:{'|'.join(NUMERIC_GROUPS)}))=(\d+(?:,\d+)*)$")
    home = re.compile(r"^([+]{0,2}[\w.]+)=(~[^,]*)$")
    prepared = []
    for arg in args:
        if match := numeric.match(arg):
            arg = f"{match.group(1)}=" + ",".join(f"'{n}'" for n in match.group(2).split(","))
        elif match := home.match(arg):
            arg = f"{match.group(1)}={os.path.expanduser(match.group(2))}"
        prepared.append(arg)
    return prepared


if __name__ == "__main__":
    sys.argv[1:] = prepare_overrides(sys.argv[1:])
    main()
