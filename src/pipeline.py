"""One run of `python -m src.run`: its `RunSpec` in (src/run_spec.py), the objective out.

`pipeline` runs data → features → classifier → evaluation,
recording everything in one MLflow run, and returns the objective (validation
class-averaged accuracy) for sweepers to maximise. Under `torchrun` (several processes
refining one network) rank 0 runs `pipeline` and the others `follow` it: see
src/classifiers/distributed.py.
"""

import dataclasses
import logging
import math
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import mlflow
import optuna
import torch
from omegaconf import OmegaConf

from src.classifiers import distributed
from src.classifiers.calibration import decisions, probabilities
from src.classifiers.callbacks import EPOCH_METRICS
from src.classifiers.checkpoint import load_checkpoint
from src.classifiers.distributed import Ranks
from src.classifiers.dnn import Hooks
from src.classifiers.network import make_spec
from src.data.prepare import PreparedData, prepare_dataset
from src.data.presets import load_pixels
from src.data.split import SPLITS
from src.data.synthetic import ensure_synthetic_textures
from src.device import Compute, configure, pick_device, resolve_workers
from src.errors import UserError, exit_with_error
from src.evaluation.metrics import evaluate
from src.evaluation.results_page import write_results_page
from src.features.backbone import build_featurizer, check_model, describe, feature_size
from src.modes import mode_of
from src.modes.auto_lr import resolve_lr
from src.modes.job import Fitted, Job, Network
from src.modes.refining import train_with_new_head
from src.precision import detect_native_bf16, resolve_precision
from src.resume import (
    checkpoint_path,
    interrupted_message,
    remove_checkpoint,
    resume_state,
    what_is_kept,
)
from src.run_spec import DataSpec, RunSpec, TrialSpec
from src.tracking import mlflow_run
from src.tracking.datasets import log_dataset_inputs
from src.tracking.epochs import EpochLogger, log_missing_epochs
from src.tracking.grid_parent import grid_job, grid_parent
from src.tracking.label_issues import find_label_issues, log_label_issues
from src.tracking.pyfunc_model import MODEL_KEPT_TAG, NOT_BEST, encode_jpeg, log_model
from src.tracking.run_logging import (
    absent_class_lines,
    log_calibration,
    log_data,
    log_evaluation,
    log_svm_selection,
    log_test_predictions,
)
from src.tracking.run_names import unique_name
from src.tracking.runs_view import save_runs_view
from src.tuning.trial_link import TrialLink

log = logging.getLogger("imgsweep")


@grid_job()  # in a plain Hydra grid (-m key=a,b): the grid's last job ends its parent run
def run_job(describe: Callable[[], RunSpec], sweeping: bool) -> float:
    """The run `describe()` gives, with what a user can cause said in one line: errors
    (exit 1), and Ctrl-C (exit 130) with the command that continues the run. In a sweep
    (`sweeping`) errors go to the sweeper, which records the failed trial and goes on."""
    ranks = distributed.SINGLE
    try:
        spec = describe()
        ranks, device = distributed.start(pick_device(spec.compute.device))
        return pipeline(spec, device, ranks) if ranks.main else follow(spec, device, ranks)
    except UserError as error:
        if sweeping:
            raise
        exit_with_error(error)
    except Interrupted as interrupted:
        print(interrupted, file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt:
        if sweeping or ranks.distributed:
            raise
        print("interrupted before the run started; nothing was recorded", file=sys.stderr)
        sys.exit(130)
    finally:
        distributed.stop(ranks)


class Interrupted(Exception):  # noqa: N818 - what the user did, not an error
    """Ctrl-C in a single run: its message is the line to print."""


def set_up(spec: RunSpec, device: torch.device, ranks: Ranks) -> tuple[int, str]:
    """What every process does first: threads, decoding processes, precision, seed."""
    configure(device, ranks.local_world_size)
    workers = resolve_workers(spec.compute.num_workers, device)
    precision = resolve_precision(spec.compute.precision, device)
    torch.manual_seed(spec.compute.seed)
    return workers, precision


def pipeline(spec: RunSpec, device: torch.device, ranks: Ranks = distributed.SINGLE) -> float:
    """One run; returns the validation class-averaged accuracy."""
    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # its start/stop lines
    t = spec.tracking
    uri = mlflow_run.resolve_uri(t.uri, Path.cwd())
    mlflow_run.configure_retries(t.retry_seconds)
    mlflow_run.check_reachable(uri)  # before any heavy work
    mlflow.set_tracking_uri(uri)
    workers, precision = set_up(spec, device, ranks)
    root = dataset_root(spec.data)
    experiment_id = mlflow_run.experiment_id(uri, t.experiment)
    tags = run_tags(spec, uri, experiment_id)
    name = None if spec.resume else unique_name(uri, experiment_id, t.run_name)  # None: kept
    check_model(spec.model.arch, spec.image.size)  # before any heavy work
    # A resume is checked in full before its run is reopened: a refusal changes nothing.
    data = prepare(spec, root, workers) if spec.resume else None
    resume = resume_state(spec, uri, data, precision) if spec.resume else None
    link = trial_link(spec.trial)
    run_id = None
    try:
        with (
            mlflow_run.tracked_run(
                experiment_id,
                name,
                tags,
                run_id=spec.resume,
                system_metrics=t.system_metrics,
                sampling_seconds=t.system_metrics_seconds,
            ) as run,
            tempfile.TemporaryDirectory() as tmp,
        ):
            out = Path(tmp)
            run_id = run.info.run_id
            started = time.perf_counter(), time.process_time()
            print(
                f"run {run_id} started: {run.info.run_name} (experiment {t.experiment})",
                flush=True,
            )
            if not resume:
                mlflow.set_tag("command", t.command)
            if link:
                link.record_run(run.info.run_id)
            # what ran; the tags say what was asked and why
            config = {**t.config, "precision": precision}
            mlflow.set_tags(
                {
                    "precision.requested": spec.compute.precision,
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
            data = data or prepare(spec, root, workers)
            if ranks.distributed and spec.mode.refinement:
                distributed.data_ready(ranks, resume["path"] if resume else None)
            log_data(data, out)
            datasets = log_dataset_inputs(data, spec.data.name)
            arch = spec.model.arch
            featurizer, weights = build_featurizer(arch, spec.model.weights, spec.image.size)
            mlflow.set_tag("pretrained", str(weights.pretrained).lower())
            mlflow_run.log_params_once(
                {"model.weights_identity": weights.identity, **describe(arch, featurizer)}
            )
            job = make_job(spec, data, device, workers, precision)
            cached = mode_of(spec.mode.name).cached_features
            network = Network(
                featurizer, cache_key=feature_cache_key(spec, job, weights) if cached else None
            )
            fitted = fit(spec, job, network, run_id=run_id, resume=resume, link=link, ranks=ranks)
            if link and link.pruned_at is not None:
                mlflow.set_tags({"optuna.state": "PRUNED", "optuna.pruned": "true"})
                if link.stopped_by_budget:
                    mlflow.set_tag("stopped_by", "budget")
                mlflow.log_artifacts(str(out))
            else:
                reports = finish(spec, job, data, fitted, out, datasets, link)
                if spec.label_issues:
                    issues_at = label_issues_step(spec, job, data, network, fitted, out)
                remove_checkpoint(spec.checkpoint_dir, run_id)  # FINISHED: nothing to resume
            log_cost(started)
    except mlflow_run.TrackingLost as lost:
        raise UserError(f"{lost}; {what_is_kept(spec, run_id, ranks)}") from None
    except KeyboardInterrupt:
        if spec.multirun or ranks.distributed or run_id is None:
            raise  # the sweeper (or torchrun) ends the rest
        raise Interrupted(interrupted_message(spec, run_id)) from None
    finally:
        if link:
            link.close()
    if link and link.pruned_at is not None:
        why = ": the budget ends before another epoch would" if link.stopped_by_budget else ""
        raise optuna.TrialPruned(f"at epoch {link.pruned_at}{why}")
    print_summary(spec, weights, reports, fitted, uri, run.info.experiment_id, run.info.run_id)
    if spec.label_issues:
        print(issues_at)
    return reports["val"]["class_avg_accuracy"]


def log_cost(started: tuple[float, float]) -> None:
    """What the run cost from its start (`started`: perf_counter, process_time): its wall
    seconds and this process's CPU seconds, every thread's (on 2 busy cores about twice the
    wall time), so a sweep's trials compare by what they cost as well as by their score."""
    wall, cpu = started
    mlflow.log_metrics(
        {
            "time/run_seconds": time.perf_counter() - wall,
            "time/cpu_seconds": time.process_time() - cpu,
        }
    )


def follow(spec: RunSpec, device: torch.device, ranks: Ranks) -> float:
    """A process other than rank 0 under torchrun: it refines alongside rank 0, on its share
    of every batch, and tracks, checkpoints and scores nothing (rank 0 does all that)."""
    if not spec.mode.refinement:
        return math.nan  # nothing to share out: rank 0 makes the whole run
    workers, precision = set_up(spec, device, ranks)
    resume_from = distributed.data_ready(ranks)  # once rank 0 has checked and prepared it
    data = prepare(spec, spec.data.root, workers)
    featurizer, _ = build_featurizer(spec.model.arch, spec.model.weights, spec.image.size)
    train_with_new_head(
        make_job(spec, data, device, workers, precision),
        featurizer,
        spec.mode,
        feature_size(spec.model.arch),
        hooks=Hooks(resume=load_checkpoint(resume_from) if resume_from else None, ranks=ranks),
    )
    return math.nan


def fit(spec: RunSpec, job: Job, network: Network, *, run_id, resume, link, ranks):
    """Run the classifier's mode on the fixed featurizer (`network`), refining it first for
    a refining mode; returns the mode's Fitted, or None for a pruned trial."""
    mode = mode_of(spec.mode.name)
    if not mode.refines:
        return mode.fit(job, network, spec.mode)
    checkpoint = checkpoint_path(spec.checkpoint_dir, run_id)
    mlflow.set_tag("checkpoint", str(checkpoint))
    size = feature_size(spec.model.arch)
    settings = dataclasses.replace(  # classifier.lr=auto: the lr range test first, in this run
        spec.mode,
        refinement=resolve_lr(
            job, network.model, spec.mode.refinement, spec.mode.dropout, size, spec.mode.lr_find
        ),
    )
    hooks = Hooks(
        callbacks=(EpochLogger(resume["history"] if resume else ()), *([link] if link else [])),
        checkpoint=checkpoint,
        resume=resume,
        ranks=ranks,
    )
    trained = train_with_new_head(job, network.model, settings, size, hooks=hooks)
    result = trained.training
    mlflow.log_metrics(
        {"refine/best_epoch": result.best_epoch, "refine/epochs_run": len(result.history)}
    )
    if result.stopped_by:
        mlflow.set_tag("stopped_by", result.stopped_by)
    if trained.refit is not None:
        log_refit(trained.refit, len(job.paths("train")) + len(job.paths("val")))
    if link and link.pruned_at is not None:
        remove_checkpoint(spec.checkpoint_dir, run_id)  # a pruned trial is done: no resume
        return None  # a pruned trial: its network is not scored, nor an SVM fitted on it
    return mode.fit(job, trained, settings)


def log_refit(history: list[dict[str, float]], images: int) -> None:
    """Say that the served network was retrained on train + validation, and how it went."""
    mlflow.set_tag(
        "final_model",
        f"retrained on train + validation ({images} images) for {len(history)} epochs, the "
        "count validation chose; val/ metrics score the network trained without validation",
    )
    mlflow.log_metric("refit/epochs", len(history))
    for epoch, metrics in enumerate(history):
        mlflow.log_metrics(
            {f"refit/{k.removeprefix('train/')}": metrics[k] for k in REFIT_METRICS}, step=epoch
        )


REFIT_METRICS = ("train/loss", "train/accuracy", "time/train_images_per_second")


def feature_cache_key(spec: RunSpec, job: Job, weights) -> dict:
    """Everything a fixed featurizer's outputs depend on (the feature cache's key)."""
    return {
        "arch": spec.model.arch,
        "weights": weights.identity,
        "size": job.image.size,
        "preprocessing": job.image.preprocessing,
        "seed": None if weights.pretrained else job.compute.seed,  # random weights differ per seed
        "precision": job.compute.precision,  # bf16 features differ from fp32 ones in the 3rd digit
    }


def finish(
    spec: RunSpec,
    job: Job,
    data: PreparedData,
    fitted: Fitted,
    out: Path,
    datasets,
    link: TrialLink | None = None,
):
    """Evaluate every split, log the figures and the served model; returns the reports. A
    sweep trial (`link`) logs its model only while it is its study's best: the sweep keeps
    one model per study, and src.register logs any other trial's on demand."""
    if fitted.svm is not None:
        log_svm_selection(list(spec.mode.C_values), fitted.svm, out)
    if fitted.featurize_images_per_second is not None:
        mlflow.log_metric("time/featurize_images_per_second", fitted.featurize_images_per_second)
    served = make_spec(
        fitted.model.cpu(),
        spec.model.arch,
        fitted.head,
        data.classes,
        job.image.size,
        job.image.preprocessing,
        spec.mode.dropout,
    )
    # the precision every reported number was computed in: the served model computes in it too
    served["precision"] = job.compute.precision
    first_test = job.files["test"][0].path.read_bytes()
    # the logged model's own decisions (argmax of its logits) and calibrated scores
    scores = {s: probabilities(fitted.logits[s], fitted.calibration.temperature) for s in SPLITS}
    reports = {
        s: evaluate(job.labels[s], scores[s], data.classes, decisions(fitted.logits[s]))
        for s in SPLITS
    }
    # The model before its metrics: MLflow links the metrics logged after it to the model,
    # each with its split's dataset (a run's own metrics keep no dataset)
    if link is None or link.is_best_so_far(reports["val"]["class_avg_accuracy"]):
        example = load_pixels(first_test, job.image.size, job.image.preprocessing)
        log_model(served, encode_jpeg(example))
    else:
        mlflow.set_tag(MODEL_KEPT_TAG, NOT_BEST)
    log_calibration(fitted.calibration)
    log_evaluation(
        reports,
        data.classes,
        out,
        frozenset(EPOCH_METRICS) if fitted.training else frozenset(),
        datasets,
    )
    write_results_page(
        out / "evaluation" / "results_test.html",
        job.files["test"],
        job.labels["test"],
        scores["test"],
        data.classes,
        data.root,
        title=f"{spec.mode.name}, {spec.model.name}, {job.image.size} px: test results",
        maps=fitted.maps,
        preprocessing=job.image.preprocessing,
    )
    log_test_predictions(job.files["test"], job.labels["test"], scores["test"], data.classes)
    mlflow.log_artifacts(str(out))
    return reports


def label_issues_step(
    spec: RunSpec, job: Job, data: PreparedData, network: Network, fitted: Fitted, out: Path
) -> str:
    """Find and log the run's label issues (src/tracking/label_issues.py); returns the line
    that says what was found and where the list is."""
    refines = mode_of(spec.mode.name).refines
    issues, why_not = find_label_issues(
        job, network, fitted, refines, data.classes, data.duplicates, spec.mode
    )
    title = f"label issues: {spec.model.name}, {job.image.size} px, {spec.mode.name} features"
    csv = log_label_issues(issues, why_not, job, data.classes, data.root, out, title)
    if issues is None:
        return f"label issues: not looked for, {why_not}"
    images = len(issues.flagged)
    found = f"label issues: {len(issues.rows)} of {images} images flagged"
    if issues.skipped:
        found += f" ({issues.skipped})"
    return f"{found}; list: {csv or 'label_issues/label_issues.csv in the run'}"


def make_job(spec: RunSpec, data: PreparedData, device, workers: int, precision: str) -> Job:
    files = {s: data.subset(s) for s in SPLITS}
    return Job(
        files=files,
        labels={s: data.labels(files[s]) for s in SPLITS},
        num_classes=len(data.classes),
        image=spec.image,
        compute=Compute(device, precision, workers, spec.compute.seed),
        batch_size=featurize_batch_size(
            spec.compute.featurize_batch_size,
            spec.compute.featurize_batch_size_cpu,
            device,
            precision,
        ),
        cache_dir=spec.cache_dir / "features",
    )


def featurize_batch_size(gpu: int, cpu: int | None, device: torch.device, precision: str) -> int:
    """Images per forward pass: the CPU's own, smaller, size where it has one, doubled in
    bf16, whose activations take half the bytes of the caches the CPU size was set by
    (2 cores, 224 px, bf16: resnet18 166 img/s at 16 against 102 at 8 and 134 at 32;
    resnet50 40 against 38 and 33; BENCHMARKS.md)."""
    if device.type == "cpu" and cpu:
        return cpu * (2 if precision == "bf16" else 1)
    return gpu


def prepare(spec: RunSpec, root: Path, workers: int) -> PreparedData:
    return prepare_dataset(
        root,
        spec.data.split,
        spec.compute.seed,
        spec.data.max_images_per_class,
        spec.cache_dir / "image_checks",
        workers + 1,
    )


def run_tags(spec: RunSpec, uri: str, experiment_id: str) -> dict:
    """Tags of the run, and its parent when it is one job of a sweep."""
    tags = {
        "classifier": spec.mode.name,
        "model": spec.model.name,
        "dataset": spec.tracking.experiment,
    }
    if commit := mlflow_run.git_commit(Path(__file__).parent):
        tags["git_commit"] = commit
    if trial := spec.trial:  # a trial of the Optuna sweeper
        tags.update(
            {
                "mlflow.parentRunId": trial.parent_run_id,
                "optuna.study": trial.study,
                "optuna.trial": str(trial.number),
                "sweep.name": trial.study,
            }
        )
    elif folder := spec.grid_folder:  # a job of a plain Hydra grid (-m key=a,b)
        parent = grid_parent(uri, experiment_id, folder)
        tags.update(
            {"mlflow.parentRunId": parent, "sweep.name": Path(folder).name, "sweep.kind": "grid"}
        )
    return tags


def trial_link(trial: TrialSpec | None) -> TrialLink | None:
    """This job's Optuna trial, when the sweeper launched it."""
    if trial is None:
        return None
    return TrialLink(
        trial.study,
        trial.storage,
        trial.number,
        trial.pruner,
        trial.heartbeat_interval,
        trial.grace_period,
        trial.deadline,
    )


def dataset_root(data: DataSpec) -> Path:
    """The dataset's folder; the synthetic default is generated on first use."""
    if data.download and not data.root.exists():
        raise UserError(f"{data.root} does not exist; download it with: {data.download}")
    if data.synthetic:
        ensure_synthetic_textures(data.root, *data.synthetic)
    return data.root


def print_summary(spec: RunSpec, weights, reports, fitted, uri, experiment_id, run_id) -> None:
    test = reports["test"]
    lines = [
        "",
        f"run {run_id} finished: {spec.mode.name}, {spec.model.name}, "
        f"{spec.image.size} px, {'pretrained' if weights.pretrained else 'random'} weights",
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
        + (f"; best epoch {fitted.training.best_epoch}" if fitted.training else "")
        + (", retrained on train + val" if fitted.refit else "")
    )
    if why := fitted.calibration.fallback:
        lines.append(f"  calibration: temperature 1 kept: {why}")
    lines += absent_class_lines(reports)
    if spec.trial is None:  # a sweep prints its links once, at its end (src/tuning/sweep_loop.py)
        view = save_runs_view(uri, experiment_id, refined=fitted.training is not None)
        if command := mlflow_run.ui_command(uri):
            lines.append(f"compare runs: {command}")
        lines.append(f"  runs table: {mlflow_run.runs_url(uri, experiment_id, view=view)}")
        lines.append(f"  this run:   {mlflow_run.runs_url(uri, experiment_id, run_id)}")
    print("\n".join(lines))
