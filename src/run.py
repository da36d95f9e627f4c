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

from src.classifiers.callbacks import EPOCH_METRICS
from src.classifiers.checkpoint import load_checkpoint
from src.classifiers.dnn import Refinement, refine
from src.classifiers.network import ImageClassifier, make_head, make_spec
from src.classifiers.svm import fit_svm_classifier
from src.data.prepare import PreparedData, prepare_dataset
from src.data.presets import load_pixels
from src.data.synthetic import ensure_synthetic_textures
from src.device import configure, pick_device, resolve_workers
from src.errors import UserError
from src.evaluation.metrics import evaluate
from src.features.backbone import build_featurizer, feature_size
from src.features.cache import cached_features
from src.features.featurize import featurize
from src.tracking import mlflow_run
from src.tracking.epochs import EpochLogger
from src.tracking.pyfunc_model import encode_jpeg, log_model
from src.tracking.run_logging import log_data, log_evaluation, log_svm_selection

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
    uri = mlflow_run.resolve_uri(
        cfg.tracking.uri, Path.cwd(), os.environ.get("MLFLOW_TRACKING_URI")
    )
    mlflow_run.check_reachable(uri)  # before any heavy work
    mlflow.set_tracking_uri(uri)
    device = pick_device(cfg.device)
    configure(device)
    workers = resolve_workers(cfg.num_workers, device)
    torch.manual_seed(cfg.seed)
    root = dataset_root(cfg.dataset)
    experiment = cfg.tracking.experiment or cfg.dataset.name or root.name
    size = int(cfg.resolution.size)
    run_name = cfg.tracking.run_name or f"{cfg.classifier.name}-{cfg.model.name}-{size}px"
    tags = {"classifier": cfg.classifier.name, "model": cfg.model.name, "dataset": experiment}
    if commit := mlflow_run.git_commit(Path(__file__).parent):
        tags["git_commit"] = commit

    # A resume is checked in full before its run is reopened: a refusal changes nothing.
    data = prepare(cfg, root, workers) if cfg.resume else None
    resume = resume_state(cfg, uri, data) if cfg.resume else None
    experiment_id = mlflow_run.experiment_id(uri, experiment)
    with (
        mlflow_run.tracked_run(experiment_id, run_name, tags, run_id=cfg.resume) as run,
        tempfile.TemporaryDirectory() as tmp,
    ):
        out = Path(tmp)
        config = OmegaConf.to_container(cfg, resolve=True)
        name = f"config_resumed_at_epoch_{resume['epoch'] + 1}.yaml" if resume else "config.yaml"
        mlflow_run.log_config(config, OmegaConf.to_yaml(config), name)
        data = data or prepare(cfg, root, workers)
        log_data(data, out)
        featurizer, weights = build_featurizer(cfg.model.name, cfg.model.weights)
        mlflow.set_tag("pretrained", str(weights.pretrained).lower())
        mlflow_run.log_params_once({"model.weights_identity": weights.identity})

        files = {s: data.subset(s) for s in SPLITS}
        labels = {s: data.labels(files[s]) for s in SPLITS}
        fit_mode = CLASSIFIER_MODES[cfg.classifier.name]
        model, head, logits, svm = fit_mode(
            cfg, data, files, labels, featurizer, weights, device, workers, run.info.run_id, resume
        )
        if svm is not None:
            log_svm_selection(list(cfg.classifier.C_values), svm, out)

        reports = {s: evaluate(labels[s], softmax(logits[s]), data.classes) for s in SPLITS}
        per_epoch = frozenset(EPOCH_METRICS) if cfg.classifier.name != "svm" else frozenset()
        log_evaluation(reports, data.classes, out, per_epoch)
        preprocessing = cfg.resolution.preprocessing
        spec = make_spec(
            model.cpu(),
            cfg.model.name,
            head,
            data.classes,
            size,
            preprocessing,
            cfg.classifier.get("dropout", 0.0),
        )
        example = encode_jpeg(load_pixels(files["test"][0].path.read_bytes(), size, preprocessing))
        log_model(spec, example)
        mlflow.log_artifacts(str(out))
    print_summary(cfg, weights, reports, svm, uri, run.info.experiment_id, run.info.run_id)
    return reports["val"]["class_avg_accuracy"]


def prepare(cfg: DictConfig, root: Path, workers: int) -> PreparedData:
    split = cfg.dataset.split
    return prepare_dataset(
        root,
        cfg.seed,
        cfg.dataset.max_images_per_class,
        split.train_ratio,
        split.val_ratio,
        split.by,
        split.test_list,
        Path(cfg.paths.cache_dir) / "image_checks",
        workers + 1,
    )


def fit_svm(cfg, data, files, labels, featurizer, weights, device, workers, run_id, resume):
    """Fixed featurizer (cached features) + linear SVM."""
    size, preprocessing = int(cfg.resolution.size), cfg.resolution.preprocessing
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
        log.info(f"features: found in the cache, featurisation skipped ({len(features)} images)")
    return svm_on_features(cfg, data, files, labels, featurizer, features)


def fit_dnn(cfg, data, files, labels, featurizer, weights, device, workers, run_id, resume):
    """The whole network refined with a new dropout → linear head."""
    model = refined_network(cfg, data, files, labels, featurizer, device, workers, run_id, resume)
    batch = cfg.resolution.featurize_batch_size
    logits = {
        s: featurize(
            model,
            [f.path for f in files[s]],
            int(cfg.resolution.size),
            cfg.resolution.preprocessing,
            batch,
            workers,
            device,
            desc=f"scoring {s}",
        )
        for s in SPLITS
    }
    return model, "dnn", logits, None


def fit_svm_dnn_refined(
    cfg, data, files, labels, featurizer, weights, device, workers, run_id, resume
):
    """Refine as `dnn`, then the linear SVM on the refined network's features."""
    model = refined_network(cfg, data, files, labels, featurizer, device, workers, run_id, resume)
    features = featurize(
        model.featurizer,
        [f.path for f in data.files],
        int(cfg.resolution.size),
        cfg.resolution.preprocessing,
        cfg.resolution.featurize_batch_size,
        workers,
        device,
        desc="featurising (refined)",
    )
    return svm_on_features(cfg, data, files, labels, model.featurizer, features)


def svm_on_features(cfg, data, files, labels, featurizer, features):
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
    return model, "svm", logits, fit


def refined_network(cfg, data, files, labels, featurizer, device, workers, run_id, resume):
    c = cfg.classifier
    settings = Refinement(
        epochs=c.epochs,
        lr=c.lr,
        momentum=c.momentum,
        weight_decay=c.weight_decay,
        batch_size=c.batch_size,
        schedule=c.schedule,
        milestones=list(c.milestones),
        patience=c.patience,
        freeze_backbone=c.freeze_backbone,
        balance_classes=c.balance_classes,
        max_train_images=c.max_train_images,
        augment=c.augment,
        crop=c.crop,
        jitter=c.jitter,
        hflip=c.hflip,
        amp=c.amp,
        compile=c.compile,
    )
    head = make_head("dnn", feature_size(cfg.model.name), len(data.classes), c.dropout)
    model = ImageClassifier(featurizer, head, l2_normalize=False)
    checkpoint = Path(cfg.paths.checkpoint_dir).resolve() / run_id / "last.pt"
    mlflow.set_tag("checkpoint", str(checkpoint))
    split = {s: ([f.path for f in files[s]], labels[s]) for s in ("train", "val")}
    callbacks = [EpochLogger(resume["history"] if resume else ())]
    refined = refine(
        model,
        split["train"],
        split["val"],
        settings,
        int(cfg.resolution.size),
        cfg.resolution.preprocessing,
        device,
        workers,
        cfg.seed,
        callbacks,
        checkpoint,
        resume,
    )
    mlflow.log_metrics(
        {"refine/best_epoch": refined.best_epoch, "refine/epochs_run": len(refined.history)}
    )
    if refined.stopped_by:
        mlflow.set_tag("stopped_by", refined.stopped_by)
    return model


CLASSIFIER_MODES = {"svm": fit_svm, "dnn": fit_dnn, "svm_dnn_refined": fit_svm_dnn_refined}


def resume_state(cfg: DictConfig, uri: str, data: PreparedData) -> dict:
    """The checkpoint to continue from, after checking the run matches this command."""
    run = mlflow_run.find_run(uri, cfg.resume)
    params, tags = run.data.params, run.data.tags
    if cfg.classifier.name not in ("dnn", "svm_dnn_refined"):
        raise UserError(
            f"resume= continues a refinement; classifier={cfg.classifier.name} has none"
        )
    expected = {
        "classifier.name": cfg.classifier.name,
        "model.name": cfg.model.name,
        "resolution.size": str(cfg.resolution.size),
        "seed": str(cfg.seed),
        "data.classes": ",".join(data.classes),
        "data.fingerprint": data.fingerprint,
    }
    differences = [
        f"{k}: the run has {params.get(k)!r}, this command {v!r}"
        for k, v in expected.items()
        if params.get(k) != v
    ]
    if differences:
        raise UserError(f"resume={cfg.resume} refused, the run differs: " + "; ".join(differences))
    checkpoint = Path(tags.get("checkpoint", ""))
    if not checkpoint.is_file():
        raise UserError(f"resume={cfg.resume}: its checkpoint {checkpoint} is not there")
    state = load_checkpoint(checkpoint)
    log.info(f"resuming run {cfg.resume} after epoch {state['epoch']}")
    return state


def dataset_root(dataset: DictConfig) -> Path:
    """The dataset's folder; the synthetic default is generated on first use."""
    if dataset.get("root") in (None, ""):
        raise UserError("dataset=folder needs dataset.root=PATH (a folder of class folders)")
    root = Path(str(dataset.root)).expanduser().resolve()
    if "synthetic" in dataset:
        synthetic = dataset.synthetic
        ensure_synthetic_textures(
            root, synthetic.images_per_class, synthetic.image_size, synthetic.seed
        )
    return root


def print_summary(cfg, weights, reports, svm, uri, experiment_id, run_id) -> None:
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
        + (f"; SVM C = {svm.C:g}" if svm is not None else "")
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
