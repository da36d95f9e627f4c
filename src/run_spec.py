"""What one run of `python -m src.run` is, typed and frozen: `RunSpec`, and `describe_run`,
which reads it off the composed config.

`describe_run` is the only code that reads the config (src.run and src.lr_find call it); the
pipeline and everything below take the parts they need. Each value is resolved here once
(interpolations, `${oc.env:...}`, the experiment's default name) and type-checked, so inner
code never meets a `${...}`, and a mistyped classifier key is one line naming it.
"""

import dataclasses
import difflib
import json
from dataclasses import dataclass
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ValidationError

from src.classifiers.dnn import Refinement
from src.data.prepare import SplitSettings
from src.data.presets import ImageSpec
from src.errors import UserError
from src.features.backbone import architecture
from src.modes import ModeSettings, mode_of
from src.overrides import as_typed
from src.tuning.study import redact


@dataclass(frozen=True)
class DataSpec:
    root: Path  # the folder of class folders (absolute)
    name: str  # the dataset's name: the experiment's, unless tracking.experiment says otherwise
    split: SplitSettings
    max_images_per_class: int | None
    synthetic: tuple[int, int, int] | None  # generate first: (images per class, side, seed)
    download: str | None  # the command that fetches the dataset, said when the root is missing


@dataclass(frozen=True)
class ModelSpec:
    name: str  # as the user chose it (model=...)
    arch: str  # what the backbone code builds: the name, or timm:NAME
    weights: str  # auto | imagenet | none | PATH


@dataclass(frozen=True)
class ComputeSpec:
    """Where and how the networks run, as asked (src/device.py resolves `auto`)."""

    device: str  # auto | cpu | cuda | cuda:N | mps
    precision: str  # auto | fp32 | bf16 | fp16
    num_workers: str | int  # auto | N decoding processes
    seed: int
    featurize_batch_size: int  # images per forward pass on a GPU
    featurize_batch_size_cpu: int | None  # on the CPU (None: the GPU's)


@dataclass(frozen=True)
class TrialSpec:
    """The Optuna trial this job is, when the project's sweeper launched it."""

    study: str
    storage: str
    number: int
    parent_run_id: str
    pruner: dict | None
    heartbeat_interval: int
    grace_period: int


@dataclass(frozen=True)
class TrackingSpec:
    uri: str  # as configured (command line, then MLFLOW_TRACKING_URI, then the SQLite default)
    experiment: str
    run_name: str
    retry_seconds: float
    system_metrics: bool
    system_metrics_seconds: float
    command: str  # the run's command-line overrides (JSON): what `resume=<run id>` repeats
    where: tuple[str, ...]  # the overrides that say where the store is (for printed commands)
    config: dict  # the resolved config, as logged (no database password)


@dataclass(frozen=True)
class RunSpec:
    data: DataSpec
    image: ImageSpec  # the square the network sees, and how images are fitted into it
    model: ModelSpec
    mode: ModeSettings  # the classifier (src/modes/)
    compute: ComputeSpec
    tracking: TrackingSpec
    cache_dir: Path  # image checks and features
    checkpoint_dir: Path  # refinement checkpoints, one folder per run
    resume: str | None  # the run id whose refinement goes on
    trial: TrialSpec | None
    multirun: bool  # one job of a sweep: errors go to the sweeper, which goes on
    grid_folder: str | None  # a plain Hydra grid's sweep folder (its jobs share a parent run)


def describe_run(cfg: DictConfig) -> RunSpec:
    """The run the config asks for, every value resolved and typed."""
    c, d, r, t = cfg.classifier, cfg.dataset, cfg.resolution, cfg.trial
    root = d.get("root")
    if root in (None, ""):
        raise UserError("dataset=folder needs dataset.root=PATH (a folder of class folders)")
    root = Path(str(root)).expanduser().resolve()
    synthetic = d.get("synthetic")
    overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    config = OmegaConf.to_container(cfg, resolve=True)
    if config["trial"]["storage"]:  # no database password in the run's params
        config["trial"]["storage"] = redact(config["trial"]["storage"])
    sweep_job = is_sweep_job()
    return RunSpec(
        data=DataSpec(
            root=root,
            name=d.name or root.name,
            split=split_settings(d.split),
            max_images_per_class=d.max_images_per_class,
            synthetic=(synthetic.images_per_class, synthetic.image_size, synthetic.seed)
            if synthetic
            else None,
            download=d.get("download"),
        ),
        image=ImageSpec(int(r.size), str(r.preprocessing)),
        model=ModelSpec(str(cfg.model.name), architecture(cfg.model), str(cfg.model.weights)),
        mode=mode_spec(c),
        compute=ComputeSpec(
            device=str(cfg.device),
            precision=str(cfg.precision),
            num_workers=cfg.num_workers,
            seed=int(cfg.seed),
            featurize_batch_size=int(r.featurize_batch_size),
            featurize_batch_size_cpu=r.get("featurize_batch_size_cpu"),
        ),
        tracking=TrackingSpec(
            uri=str(cfg.tracking.uri),
            experiment=cfg.tracking.experiment or d.name or root.name,
            run_name=cfg.tracking.run_name
            or f"{c.name}-{cfg.model.name}-{r.size}px" + (f"-trial{t.number}" if t.study else ""),
            retry_seconds=float(cfg.tracking.retry_seconds),
            system_metrics=bool(cfg.tracking.system_metrics),
            system_metrics_seconds=float(cfg.tracking.system_metrics_seconds),
            command=json.dumps([o for o in overrides if not o.startswith(("resume=", "trial."))]),
            where=tuple(
                as_typed(o)
                for o in overrides
                if o.startswith(("tracking.uri=", "paths.mlruns_dir="))
            ),
            config=config,
        ),
        cache_dir=Path(cfg.paths.cache_dir),
        checkpoint_dir=Path(cfg.paths.checkpoint_dir).resolve(),
        resume=cfg.resume,
        trial=trial_spec(t) if t.study else None,
        multirun=sweep_job,
        grid_folder=str(Path(HydraConfig.get().sweep.dir).resolve())
        if sweep_job and not t.study
        else None,
    )


def is_sweep_job() -> bool:
    """One job of a sweep (Hydra's -m): its errors go to the sweeper, which goes on."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def trial_spec(t: DictConfig) -> TrialSpec:
    sweeper = HydraConfig.get().sweeper if HydraConfig.initialized() else {}
    return TrialSpec(
        study=str(t.study),
        storage=str(t.storage),
        number=int(t.number),
        parent_run_id=str(t.parent_run_id),
        pruner=OmegaConf.to_container(sweeper.pruner) if "pruner" in sweeper else None,
        heartbeat_interval=sweeper.get("heartbeat_interval", 10),
        grace_period=sweeper.get("grace_period", 60),
    )


def split_settings(split: DictConfig) -> SplitSettings:
    known = {f.name for f in dataclasses.fields(SplitSettings)}
    if unknown := sorted(set(split) - known):
        raise UserError(f"dataset.split.{unknown[0]} is not a split setting ({', '.join(known)})")
    return SplitSettings(**OmegaConf.to_container(split, resolve=True))


def mode_spec(c: DictConfig) -> ModeSettings:
    """The classifier config as its mode's typed settings: Refinement's fields go to
    `refinement` (refining modes), the rest to ModeSettings' own fields."""
    check_classifier_keys(c)
    own = {f.name for f in dataclasses.fields(ModeSettings)} - {"name", "refinement"}
    values = OmegaConf.to_container(c, resolve=True)
    return ModeSettings(
        name=str(c.name),
        refinement=refinement(c) if mode_of(str(c.name)).refines else None,
        **{k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in own},
    )


def check_classifier_keys(c: DictConfig) -> None:
    """A key of the classifier config that no mode reads is a mistake: say which."""
    fields = {f.name for f in dataclasses.fields(Refinement)}
    fields |= {f.name for f in dataclasses.fields(ModeSettings)} - {"refinement"}
    if unknown := sorted(set(c) - fields):
        close = difflib.get_close_matches(unknown[0], sorted(fields), n=1)
        hint = f" (did you mean classifier.{close[0]}?)" if close else ""
        raise UserError(f"classifier.{unknown[0]} is not a classifier setting{hint}")


def refinement(c: DictConfig) -> Refinement:
    """The refinement settings of a classifier config, resolved and type-checked."""
    check_classifier_keys(c)
    settings = OmegaConf.to_container(c, resolve=True)
    fields = {f.name for f in dataclasses.fields(Refinement)}
    chosen = {k: v for k, v in settings.items() if k in fields}
    auto_lr = chosen.get("lr") == "auto"  # the lr range test decides it (src/modes/auto_lr.py)
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
