"""One run of `python -m src.run`: the composed config in, the objective out.

`pipeline` unpacks the config and runs data → features → classifier → evaluation,
recording everything in one MLflow run, and returns the objective (validation
class-averaged accuracy) for sweepers to maximise. Under `torchrun` (several processes
refining one network) rank 0 runs `pipeline` and the others `follow` it: see
src/classifiers/distributed.py.
"""

import dataclasses
import difflib
import json
import logging
import math
import sys
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import optuna
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ValidationError

from src.classifiers import distributed
from src.classifiers.auto_lr import resolve_lr
from src.classifiers.callbacks import EPOCH_METRICS
from src.classifiers.checkpoint import load_checkpoint
from src.classifiers.distributed import Ranks
from src.classifiers.dnn import Refinement
from src.classifiers.modes import (
    SPLITS,
    Fitted,
    Job,
    fit_dnn,
    fit_svm,
    fit_svm_dnn_refined,
    refine_network,
)
from src.classifiers.network import make_spec
from src.data.prepare import PreparedData, prepare_dataset
from src.data.presets import load_pixels
from src.data.synthetic import ensure_synthetic_textures
from src.device import configure, pick_device, resolve_workers
from src.errors import UserError
from src.evaluation.metrics import evaluate
from src.evaluation.results_page import write_results_page
from src.features.backbone import (
    architecture,
    build_featurizer,
    check_model,
    describe,
    feature_size,
)
from src.features.cache import cached_features
from src.precision import detect_native_bf16, resolve_precision
from src.resume import checkpoint_path, interrupted_message, resume_state, what_is_kept
from src.tracking import mlflow_run
from src.tracking.datasets import log_dataset_inputs
from src.tracking.epochs import EpochLogger, log_missing_epochs
from src.tracking.parent_runs import find_or_create_parent
from src.tracking.pyfunc_model import encode_jpeg, log_model
from src.tracking.run_logging import (
    absent_class_lines,
    log_data,
    log_evaluation,
    log_svm_selection,
    log_test_predictions,
)
from src.tuning.study import redact
from src.tuning.trial_link import TrialLink

log = logging.getLogger("imgsweep")


def run_job(cfg: DictConfig) -> float:
    """The run, with what a user can cause said in one line: errors (exit 1), and Ctrl-C
    (exit 130) with the command that continues the run."""
    ranks = distributed.SINGLE
    try:
        ranks, device = distributed.start(pick_device(cfg.device))
        return pipeline(cfg, device, ranks) if ranks.main else follow(cfg, device, ranks)
    except UserError as error:
        if multirun():
            raise  # the sweeper records the failed trial and goes on
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except Interrupted as interrupted:
        print(interrupted, file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt:
        if multirun() or ranks.distributed:
            raise
        print("interrupted before the run started; nothing was recorded", file=sys.stderr)
        sys.exit(130)
    finally:
        distributed.stop(ranks)


class Interrupted(Exception):  # noqa: N818 - what the user did, not an error
    """Ctrl-C in a single run: its message is the line to print."""


def pipeline(cfg: DictConfig, device: torch.device, ranks: Ranks = distributed.SINGLE) -> float:
    """One run; returns the validation class-averaged accuracy."""
    check_classifier_keys(cfg.classifier)
    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # its start/stop lines
    uri = mlflow_run.resolve_uri(cfg.tracking.uri, Path.cwd())
    mlflow_run.configure_retries(cfg.tracking.retry_seconds)
    mlflow_run.check_reachable(uri)  # before any heavy work
    mlflow.set_tracking_uri(uri)
    configure(device, ranks.local_world_size)
    workers = resolve_workers(cfg.num_workers, device)
    precision = resolve_precision(cfg.precision, device)
    torch.manual_seed(cfg.seed)
    root = dataset_root(cfg.dataset)
    experiment = cfg.tracking.experiment or cfg.dataset.name or root.name
    experiment_id = mlflow_run.experiment_id(uri, experiment)
    tags = run_tags(cfg, uri, experiment, experiment_id)
    run_name = cfg.tracking.run_name or (
        f"{cfg.classifier.name}-{cfg.model.name}-{cfg.resolution.size}px"
        + (f"-trial{cfg.trial.number}" if cfg.trial.study else "")
    )
    check_model(architecture(cfg.model), int(cfg.resolution.size))  # before any heavy work
    # A resume is checked in full before its run is reopened: a refusal changes nothing.
    data = prepare(cfg, root, workers) if cfg.resume else None
    resume = resume_state(cfg, uri, data) if cfg.resume else None
    link = trial_link(cfg)
    run_id = None
    try:
        with (
            mlflow_run.tracked_run(
                experiment_id,
                run_name,
                tags,
                run_id=cfg.resume,
                system_metrics=cfg.tracking.system_metrics,
                sampling_seconds=cfg.tracking.system_metrics_seconds,
            ) as run,
            tempfile.TemporaryDirectory() as tmp,
        ):
            out = Path(tmp)
            run_id = run.info.run_id
            print(f"run {run_id} started: {run_name} (experiment {experiment})", flush=True)
            if not resume:
                mlflow.set_tag("command", command_tag())
            if link:
                link.record_run(run.info.run_id)
            config = OmegaConf.to_container(cfg, resolve=True)
            if config["trial"]["storage"]:  # no database password in the run's params
                config["trial"]["storage"] = redact(config["trial"]["storage"])
            config["precision"] = precision  # what ran; the tags say what was asked and why
            mlflow.set_tags(
                {
                    "precision.requested": cfg.precision,
                    "precision.native_bf16": str(detect_native_bf16(device)).lower(),
                }
            )
            name = (
                f"config_resumed_at_epoch_{resume['epoch'] + 1}.yaml" if resume else "config.yaml"
            )
            mlflow_run.log_config(config, OmegaConf.to_yaml(config), name)
            if resume:
                log_missing_epochs(run.info.run_id, resume["history"])
            if ranks.distributed:
                mlflow.set_tag("distributed.processes", str(ranks.world_size))
            data = data or prepare(cfg, root, workers)
            if ranks.distributed and cfg.classifier.name != "svm":
                ranks.broadcast(resume["path"] if resume else None)  # the others start now
            log_data(data, out)
            datasets = log_dataset_inputs(data, cfg.dataset.name or root.name)
            arch = architecture(cfg.model)
            featurizer, weights = build_featurizer(arch, cfg.model.weights, cfg.resolution.size)
            mlflow.set_tag("pretrained", str(weights.pretrained).lower())
            mlflow_run.log_params_once(
                {"model.weights_identity": weights.identity, **describe(arch, featurizer)}
            )
            job = make_job(cfg, data, device, workers, precision)
            fitted = fit(cfg, job, featurizer, weights, run.info.run_id, resume, link, ranks)
            if link and link.pruned_at is not None:
                mlflow.set_tags({"optuna.state": "PRUNED", "optuna.pruned": "true"})
                mlflow.log_artifacts(str(out))
            else:
                reports = finish(cfg, job, data, fitted, out, datasets)
    except mlflow_run.TrackingLost as lost:
        raise UserError(f"{lost}; {what_is_kept(cfg, run_id, ranks)}") from None
    except KeyboardInterrupt:
        if multirun() or ranks.distributed or run_id is None:
            raise  # the sweeper (or torchrun) ends the rest
        raise Interrupted(interrupted_message(cfg, run_id)) from None
    finally:
        if link:
            link.close()
        if tags.get("sweep.kind") == "grid":  # the grid's last job leaves its parent FINISHED
            mlflow_run.finish_parent(uri, tags["mlflow.parentRunId"])
    if link and link.pruned_at is not None:
        raise optuna.TrialPruned(f"at epoch {link.pruned_at}")
    print_summary(cfg, weights, reports, fitted, uri, run.info.experiment_id, run.info.run_id)
    return reports["val"]["class_avg_accuracy"]


def follow(cfg: DictConfig, device: torch.device, ranks: Ranks) -> float:
    """A process other than rank 0 under torchrun: it refines alongside rank 0, on its share
    of every batch, and tracks, checkpoints and scores nothing (rank 0 does all that)."""
    if cfg.classifier.name == "svm":
        return math.nan  # nothing to share out: rank 0 makes the whole run
    configure(device, ranks.local_world_size)
    workers = resolve_workers(cfg.num_workers, device)
    precision = resolve_precision(cfg.precision, device)
    torch.manual_seed(cfg.seed)
    resume_from = ranks.broadcast(None)  # once rank 0 has checked and prepared the data
    data = prepare(cfg, dataset_root(cfg.dataset), workers)
    arch = architecture(cfg.model)
    featurizer, _ = build_featurizer(arch, cfg.model.weights, cfg.resolution.size)
    c = cfg.classifier
    refine_network(
        make_job(cfg, data, device, workers, precision),
        featurizer,
        refinement(c),
        c.dropout,
        feature_size(arch),
        [],
        None,
        load_checkpoint(resume_from) if resume_from else None,
        ranks,
    )
    return math.nan


def fit(cfg, job: Job, featurizer, weights, run_id: str, resume, link, ranks) -> Fitted | None:
    """Unpack the classifier's config and run its mode; None for a pruned trial."""
    c = cfg.classifier
    if c.name == "svm":
        identity = {  # everything the fixed features depend on
            "arch": architecture(cfg.model),
            "weights": weights.identity,
            "size": job.size,
            "preprocessing": job.preprocessing,
            "seed": None if weights.pretrained else cfg.seed,  # random weights differ per seed
            "precision": job.precision,  # bf16 features differ from fp32 ones in the 3rd digit
        }
        files = [f for s in SPLITS for f in job.files[s]]
        rates = []  # filled when the features are computed, not found

        def compute():
            features, rate = job.timed_outputs(featurizer, job.all_paths(), "featurising")
            rates.append(rate)
            return features

        features, hit = cached_features(
            Path(cfg.paths.cache_dir) / "features",
            identity,
            files,
            compute,
            job.device.type,
            job.precision,
        )
        if hit:
            log.info(f"features: found in the cache, featurisation skipped ({len(files)} images)")
        fitted = fit_svm(job, featurizer, features, list(c.C_values), c.l2_normalize)
        fitted.featurize_images_per_second = rates[0] if rates else None
        return fitted

    if c.name not in ("dnn", "svm_dnn_refined"):
        raise UserError(f"classifier={c.name} is not one of svm, dnn, svm_dnn_refined")
    checkpoint = checkpoint_path(cfg, run_id)
    mlflow.set_tag("checkpoint", str(checkpoint))
    callbacks = [EpochLogger(resume["history"] if resume else ()), *([link] if link else [])]
    settings = resolve_lr(  # classifier.lr=auto: the lr range test first, in this run
        job,
        featurizer,
        refinement(c),
        c.dropout,
        feature_size(architecture(cfg.model)),
        c.get("lr_find"),
    )
    model, refined = refine_network(
        job,
        featurizer,
        settings,
        c.dropout,
        feature_size(architecture(cfg.model)),
        callbacks,
        checkpoint,
        resume,
        ranks,
    )
    mlflow.log_metrics(
        {"refine/best_epoch": refined.best_epoch, "refine/epochs_run": len(refined.history)}
    )
    if refined.stopped_by:
        mlflow.set_tag("stopped_by", refined.stopped_by)
    if link and link.pruned_at is not None:
        return None  # a pruned trial: its network is not scored, nor an SVM fitted on it
    if c.name == "dnn":
        return fit_dnn(job, model, refined)
    return fit_svm_dnn_refined(job, model, refined, list(c.C_values), c.l2_normalize)


# the keys a classifier config may have beside Refinement's fields
CLASSIFIER_KEYS = {"name", "dropout", "C_values", "l2_normalize", "lr_find"}


def check_classifier_keys(c: DictConfig) -> None:
    """A key of the classifier config that no mode reads is a mistake: say which."""
    fields = {f.name for f in dataclasses.fields(Refinement)}
    if unknown := sorted(set(c) - fields - CLASSIFIER_KEYS):
        close = difflib.get_close_matches(unknown[0], sorted(fields | CLASSIFIER_KEYS), n=1)
        hint = f" (did you mean classifier.{close[0]}?)" if close else ""
        raise UserError(f"classifier.{unknown[0]} is not a classifier setting{hint}")


def refinement(c: DictConfig) -> Refinement:
    """The refinement settings of a classifier config, resolved and type-checked."""
    check_classifier_keys(c)
    settings = OmegaConf.to_container(c, resolve=True)
    fields = {f.name for f in dataclasses.fields(Refinement)}
    chosen = {k: v for k, v in settings.items() if k in fields}
    auto_lr = (
        chosen.get("lr") == "auto"
    )  # the lr range test decides it (src/classifiers/auto_lr.py)
    if auto_lr:
        chosen.pop("lr")
    try:
        typed = OmegaConf.merge(OmegaConf.structured(Refinement), chosen)
    except ValidationError as error:
        key = getattr(error, "full_key", "") or "?"
        raise UserError(
            f"classifier.{key}={getattr(error, 'value', '?')!r}: {error.msg.splitlines()[0]}"
        ) from None
    return Refinement(**{**OmegaConf.to_container(typed), **({"lr": "auto"} if auto_lr else {})})


def command_tag() -> str:
    """The run's command-line overrides as a JSON list: `resume=<run id>` alone repeats them."""
    typed = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    kept = [o for o in typed if not o.startswith(("resume=", "trial."))]
    return json.dumps(kept)


def finish(cfg, job: Job, data: PreparedData, fitted: Fitted, out: Path, datasets) -> dict:
    """Evaluate every split, log the figures and the served model; returns the reports."""
    if fitted.svm is not None:
        log_svm_selection(list(cfg.classifier.C_values), fitted.svm, out)
    if fitted.featurize_images_per_second is not None:
        mlflow.log_metric("time/featurize_images_per_second", fitted.featurize_images_per_second)
    spec = make_spec(
        fitted.model.cpu(),
        architecture(cfg.model),
        fitted.head,
        data.classes,
        job.size,
        job.preprocessing,
        cfg.classifier.get("dropout", 0.0),
    )
    spec["precision"] = job.precision  # trained in; the served model picks its own (auto)
    first_test = job.files["test"][0].path.read_bytes()
    # The model before its metrics: MLflow links the metrics logged after it to the model,
    # each with its split's dataset (a run's own metrics keep no dataset)
    log_model(spec, encode_jpeg(load_pixels(first_test, job.size, job.preprocessing)))
    reports = {s: evaluate(job.labels[s], softmax(fitted.logits[s]), data.classes) for s in SPLITS}
    log_evaluation(
        reports,
        data.classes,
        out,
        frozenset(EPOCH_METRICS) if fitted.refined else frozenset(),
        datasets,
    )
    write_results_page(
        out / "evaluation" / "results_test.html",
        job.files["test"],
        job.labels["test"],
        softmax(fitted.logits["test"]),
        data.classes,
        data.root,
        f"{cfg.classifier.name}, {cfg.model.name}, {job.size} px: test results",
        maps=fitted.maps,
        preprocessing=job.preprocessing,
    )
    log_test_predictions(
        job.files["test"], job.labels["test"], softmax(fitted.logits["test"]), data.classes
    )
    mlflow.log_artifacts(str(out))
    return reports


def make_job(cfg, data: PreparedData, device, workers: int, precision: str) -> Job:
    files = {s: data.subset(s) for s in SPLITS}
    return Job(
        files=files,
        labels={s: data.labels(files[s]) for s in SPLITS},
        num_classes=len(data.classes),
        size=int(cfg.resolution.size),
        preprocessing=cfg.resolution.preprocessing,
        batch_size=featurize_batch_size(cfg.resolution, device, precision),
        device=device,
        workers=workers,
        seed=cfg.seed,
        precision=precision,
    )


def featurize_batch_size(
    resolution: DictConfig, device: torch.device, precision: str = "fp32"
) -> int:
    """Images per forward pass: the CPU's own, smaller, size where it has one, doubled in
    bf16, whose activations take half the bytes of the caches the CPU size was set by
    (2 cores, 224 px, bf16: resnet18 166 img/s at 16 against 102 at 8 and 134 at 32;
    resnet50 40 against 38 and 33; BENCHMARKS.md)."""
    if device.type == "cpu" and resolution.get("featurize_batch_size_cpu"):
        return resolution.featurize_batch_size_cpu * (2 if precision == "bf16" else 1)
    return resolution.featurize_batch_size


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
        split.get("group_duplicates", False),
        split.get("duplicate_threshold", 0),
        split.get("test_list_conflicts", "refuse"),
    )


def run_tags(cfg: DictConfig, uri: str, experiment: str, experiment_id: str) -> dict:
    """Tags of the run, and its parent when it is one job of a sweep."""
    tags = {"classifier": cfg.classifier.name, "model": cfg.model.name, "dataset": experiment}
    if commit := mlflow_run.git_commit(Path(__file__).parent):
        tags["git_commit"] = commit
    if cfg.trial.study:  # a trial of the Optuna sweeper
        tags.update(
            {
                "mlflow.parentRunId": cfg.trial.parent_run_id,
                "optuna.study": cfg.trial.study,
                "optuna.trial": str(cfg.trial.number),
                "sweep.name": cfg.trial.study,
            }
        )
    elif multirun():  # a job of a plain Hydra grid (-m key=a,b): grouped by its sweep folder
        folder = str(Path(HydraConfig.get().sweep.dir).resolve())
        parent = find_or_create_parent(
            uri,
            experiment_id,
            f"grid:{folder}",
            f"grid {Path(folder).name}",
            {"sweep.kind": "grid"},
        )
        tags.update(
            {"mlflow.parentRunId": parent, "sweep.name": Path(folder).name, "sweep.kind": "grid"}
        )
    return tags


def trial_link(cfg: DictConfig) -> TrialLink | None:
    """This job's Optuna trial, when the sweeper launched it."""
    if not cfg.trial.study:
        return None
    sweeper = HydraConfig.get().sweeper if HydraConfig.initialized() else {}
    pruner = OmegaConf.to_container(sweeper.pruner) if "pruner" in sweeper else None
    return TrialLink(
        cfg.trial.study,
        cfg.trial.storage,
        int(cfg.trial.number),
        pruner,
        sweeper.get("heartbeat_interval", 10),
        sweeper.get("grace_period", 60),
    )


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


def print_summary(cfg, weights, reports, fitted, uri, experiment_id, run_id) -> None:
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
        + (f"; SVM C = {fitted.svm.C:g}" if fitted.svm is not None else "")
        + (f"; best epoch {fitted.refined.best_epoch}" if fitted.refined else "")
    )
    lines += absent_class_lines(reports)
    if command := mlflow_run.ui_command(uri):
        lines.append(f"compare runs: {command}")
    lines.append(f"  runs table: {mlflow_run.runs_url(uri, experiment_id)}")
    lines.append(f"  this run:   {mlflow_run.runs_url(uri, experiment_id, run_id)}")
    print("\n".join(lines))


def multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)
