"""What one run of `python -m src.run` is, typed and frozen: `RunSpec`, and `describe_run`,
which reads it off the composed config.

`describe_run` is the only code that reads the config (src.run and src.lr_find call it); the
pipeline and everything below take the parts they need. Each value is resolved here once
(interpolations, `${oc.env:...}`, the experiment's default name) and type-checked, so inner
code never meets a `${...}`, and a mistyped classifier key is one line naming it.

`check_config` is the part that needs no torch: every value's type and range, and the
dataset folder as listed (its classes, a test list). src.run calls it on the command line's
config before torch, MLflow and Optuna load, so a mistake is one line within about a
second, before any experiment or run exists; `describe_run` calls it again for each job.
"""

from __future__ import annotations  # the modes' types below are imported where they are used

import dataclasses
import difflib
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException, ValidationError

from src.data.folders import check_classes, list_images
from src.data.prepare import SplitSettings
from src.data.presets import PREPROCESSING_MODES, ImageSpec
from src.data.split import TEST_LIST_CONFLICTS, one_side_only, read_test_list
from src.errors import UserError
from src.overrides import as_typed

if TYPE_CHECKING:  # torch behind them: imported in the functions that build them
    from src.classifiers.dnn import Refinement
    from src.modes import ModeSettings


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
    deadline: float | None = None  # a budgeted sweep's end (Unix time): no epoch ends past it


@dataclass(frozen=True)
class TrackingSpec:
    uri: str  # as configured (command line, then MLFLOW_TRACKING_URI, then the SQLite default)
    experiment: str
    run_name: str  # as run_name() says; a repeat's `-2` is added as the run starts
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
    label_issues: bool = False  # also rank the images whose label looks wrong (src.label_issues)


def describe_run(cfg: DictConfig) -> RunSpec:
    """The run the config asks for, every value resolved and typed."""
    from src.features.backbone import architecture
    from src.tuning.study import redact

    overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    check_config(cfg, overrides)
    c, d, r, t = cfg.classifier, cfg.dataset, cfg.resolution, cfg.trial
    root = Path(str(d.root)).expanduser().resolve()
    synthetic = d.get("synthetic")
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
            run_name=run_name(cfg, sweep_job),
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
        label_issues=bool(cfg.label_issues),
    )


def run_name(cfg: DictConfig, sweep_job: bool) -> str:
    """The run's name before a repeat's suffix (src/tracking/run_names.py): tracking.run_name
    as given, else `<classifier>-<model>-<size>px`; in a sweep, which job it is comes first
    and the values that job was given follow."""
    from src.tracking.run_names import IN_THE_BASE_NAME, base_name, sweep_job_name

    given, t = cfg.tracking.run_name, cfg.trial
    default = base_name(cfg.classifier.name, cfg.model.name, cfg.resolution.size)
    base = str(given) if given else default
    if t.study:  # the Optuna sweeper says which keys it draws
        job, keys = f"{t.study}#{t.number}", list(t.get("swept") or [])
    elif sweep_job:  # a plain grid: the keys its command line sweeps
        from src.tracking.grid_parent import swept_keys

        hydra = HydraConfig.get()
        job, keys = f"grid#{hydra.job.num}", swept_keys(Path(hydra.sweep.dir).resolve())
    else:
        return base
    shown = [k for k in keys if given or k.lstrip("+~") not in IN_THE_BASE_NAME]
    return sweep_job_name(job, base, {k.lstrip("+~"): chosen_value(cfg, k) for k in shown})


def chosen_value(cfg: DictConfig, key: str):
    """A key's value in this run: a config group's chosen option (`model` → resnet34)."""
    key = key.lstrip("+~")
    value = OmegaConf.select(cfg, key, default=None)
    if not isinstance(value, DictConfig):
        return value
    return HydraConfig.get().runtime.choices.get(key, "?") if HydraConfig.initialized() else "?"


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
        deadline=None if t.get("deadline") is None else float(t.deadline),
    )


def split_settings(split: DictConfig) -> SplitSettings:
    known = {f.name for f in dataclasses.fields(SplitSettings)}
    if unknown := sorted(set(split) - known):
        raise UserError(f"dataset.split.{unknown[0]} is not a split setting ({', '.join(known)})")
    return SplitSettings(**OmegaConf.to_container(split, resolve=True))


def mode_spec(c: DictConfig) -> ModeSettings:
    """The classifier config as its mode's typed settings: Refinement's fields go to
    `refinement` (refining modes), the rest to ModeSettings' own fields."""
    from src.modes import ModeSettings, mode_of

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
    from src.classifiers.dnn import Refinement
    from src.modes import ModeSettings

    fields = {f.name for f in dataclasses.fields(Refinement)}
    fields |= {f.name for f in dataclasses.fields(ModeSettings)} - {"refinement"}
    if unknown := sorted(set(c) - fields):
        close = difflib.get_close_matches(unknown[0], sorted(fields), n=1)
        hint = f" (did you mean classifier.{close[0]}?)" if close else ""
        raise UserError(f"classifier.{unknown[0]} is not a classifier setting{hint}")


def refinement(c: DictConfig) -> Refinement:
    """The refinement settings of a classifier config, resolved and type-checked."""
    from src.classifiers.dnn import Refinement

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


def check_config(cfg: DictConfig, given: Iterable[str] = ()) -> None:
    """Every value a run reads, and its dataset folder, checked without torch: the first
    mistake is one UserError naming the value and what is expected. `given`: the command
    line's overrides (a `dataset.root=` given to the synthetic set is refused)."""
    for key in RULES:
        try:
            value = OmegaConf.select(cfg, key, default=_ABSENT)
        except OmegaConfBaseException as error:  # an interpolation that does not resolve
            raise UserError(f"{key}: {str(error).splitlines()[0]}") from None
        if isinstance(value, DictConfig | ListConfig):
            value = OmegaConf.to_container(value, resolve=True)
        if value is not _ABSENT:
            check_value(key, value)
    split_settings(cfg.dataset.split)  # a split key of no meaning
    check_dataset(cfg.dataset, given)


def check_value(key: str, value) -> None:
    """One value against what RULES says `key` may be (a key without a rule passes)."""
    expected, valid = RULES.get(key, ("", lambda _: True))
    if not valid(value):
        raise UserError(f"{key}={_shown(value)}: expected {expected}")


def check_dataset(d: DictConfig, given: Iterable[str] = ()) -> None:
    """The dataset as far as it can be known before a run: its root is given, and is a
    folder of two or more class folders with images (listed, not opened), and its test and
    validation lists read and share no image. The synthetic set is generated later, into a
    folder of its own."""
    root = d.get("root")
    if root in (None, ""):
        raise UserError("dataset=folder needs dataset.root=PATH (a folder of class folders)")
    root = Path(str(root)).expanduser().resolve()
    if d.get("synthetic"):
        # ensure_synthetic_textures' marker of a complete set
        if _given(given, "dataset.root") and not (root / ".complete").exists():
            if root.is_dir() and any(root.iterdir()):
                raise UserError(
                    f"dataset.root={root} holds files but not the generated synthetic set; "
                    "to train on your own images add dataset=folder (nothing was changed)"
                )
            raise UserError(
                f"dataset.root={root} does not exist, and is given without dataset=folder: "
                "add dataset=folder to train on a folder of your own images (the synthetic "
                "set is made under paths.data_dir; nothing was generated)"
            )
        return
    if d.get("download") and not root.exists():
        raise UserError(f"{root} does not exist; download it with: {d.download}")
    classes, relpaths = list_images(root)
    check_classes(classes, {r.split("/", 1)[0] for r in relpaths}, root)
    test = read_test_list(d.split.test_list, set(relpaths)) if d.split.test_list else None
    if d.split.get("val_list"):
        val = read_test_list(d.split.val_list, set(relpaths), "dataset.split.val_list")
        if test is not None:
            one_side_only(test, val)


def _given(overrides: Iterable[str], key: str) -> bool:
    return any(o.split("=", 1)[0].lstrip("+~") == key for o in overrides)


def _integer(value, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _one_of(*options) -> tuple[str, Callable]:
    return f"{', '.join(options[:-1])} or {options[-1]}", lambda v: v in options


_ABSENT = object()
INTEGER = ("an integer", lambda v: _integer(v, -math.inf))
SHARE = ("a number between 0 and 1 (not 0 or 1)", lambda v: _number(v) and 0 < v < 1)
FRACTION = ("a number from 0 up to (not including) 1", lambda v: _number(v) and 0 <= v < 1)
COUNT = ("a whole number, 1 or more", lambda v: _integer(v, 1))
COUNT_OR_NULL = ("a whole number, 1 or more, or null", lambda v: v is None or _integer(v, 1))
NOT_NEGATIVE = ("a number, 0 or more", lambda v: _number(v) and v >= 0)
SWITCH = ("true or false", lambda v: isinstance(v, bool))
# What each value may be: the types of SplitSettings, ModeSettings and Refinement (the last
# two import torch, so their types are said again here), and the ranges outside which the
# code fails or trains on nonsense. A key the config has not (classifier.lr under
# classifier=svm) is not checked; tests/test_config.py checks that each names a real key.
RULES: dict[str, tuple[str, Callable[[object], bool]]] = {
    "seed": INTEGER,
    "label_issues": SWITCH,
    "dataset.max_images_per_class": COUNT_OR_NULL,
    "dataset.synthetic.images_per_class": COUNT,
    "dataset.synthetic.image_size": COUNT,
    "dataset.synthetic.seed": INTEGER,
    "dataset.split.train_ratio": SHARE,
    "dataset.split.val_ratio": SHARE,
    "dataset.split.by": _one_of("filename", "subdir"),
    "dataset.split.test_list": (
        "a file's path, or null",
        lambda v: v is None or isinstance(v, str),
    ),
    "dataset.split.test_list_conflicts": _one_of(*TEST_LIST_CONFLICTS),
    "dataset.split.val_list": (
        "a file's path, or null",
        lambda v: v is None or isinstance(v, str),
    ),
    "dataset.split.group_duplicates": SWITCH,
    "dataset.split.duplicate_threshold": (
        "a whole number of bits, 0 or more",
        lambda v: _integer(v, 0),
    ),
    "resolution.size": ("a whole number of pixels, 1 or more", lambda v: _integer(v, 1)),
    "resolution.preprocessing": _one_of(*PREPROCESSING_MODES),
    "resolution.featurize_batch_size": COUNT,
    "resolution.featurize_batch_size_cpu": COUNT_OR_NULL,
    "num_workers": ("auto, or a whole number, 0 or more", lambda v: v == "auto" or _integer(v, 0)),
    "classifier.C_values": (
        "a non-empty list of positive numbers",
        lambda v: isinstance(v, list) and v != [] and all(_number(c) and c > 0 for c in v),
    ),
    "classifier.l2_normalize": SWITCH,
    "classifier.dropout": FRACTION,
    "classifier.epochs": COUNT,
    "classifier.lr": ("a positive number, or auto", lambda v: v == "auto" or _number(v) and v > 0),
    "classifier.momentum": FRACTION,
    "classifier.weight_decay": NOT_NEGATIVE,
    "classifier.batch_size": COUNT,
    "classifier.schedule": _one_of("step", "cosine", "onecycle"),
    "classifier.milestones": (
        "a list of epochs (whole numbers, 0 or more)",
        lambda v: isinstance(v, list) and all(_integer(e, 0) for e in v),
    ),
    "classifier.patience": ("a whole number of epochs, 0 or more", lambda v: _integer(v, 0)),
    "classifier.freeze_backbone": SWITCH,
    "classifier.balance_classes": SWITCH,
    "classifier.max_train_images": COUNT_OR_NULL,
    "classifier.augment": SWITCH,
    "classifier.crop": ("a number above 0, up to 1", lambda v: _number(v) and 0 < v <= 1),
    "classifier.jitter": NOT_NEGATIVE,
    "classifier.hflip": SWITCH,
    "classifier.scale": (
        "null, or [low, high] with 0 < low <= high <= 1",
        lambda v: (
            v is None
            or isinstance(v, list)
            and len(v) == 2
            and all(_number(x) for x in v)
            and 0 < v[0] <= v[1] <= 1
        ),
    ),
    "classifier.label_smoothing": FRACTION,
    "classifier.warmup_epochs": NOT_NEGATIVE,
    "classifier.ema": FRACTION,
    "classifier.optimizer": _one_of("sgd", "adamw"),
    "classifier.refit": SWITCH,
    "classifier.backbone_lr": ("a number above 0", lambda v: _number(v) and v > 0),
    "classifier.compile": SWITCH,
    "classifier.sync_batchnorm": SWITCH,
    "tracking.retry_seconds": NOT_NEGATIVE,
    "tracking.system_metrics": SWITCH,
    "tracking.system_metrics_seconds": (
        "a number of seconds above 0",
        lambda v: _number(v) and v > 0,
    ),
}


def _shown(value) -> str:
    """A value as it is typed on the command line: `abc`, `[]`, `null`, `true`."""
    if isinstance(value, list):
        return "[" + ",".join(_shown(v) for v in value) + "]"
    return json.dumps(value) if value is None or isinstance(value, bool) else str(value)
