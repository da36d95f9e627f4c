"""The classifier modes (the original workflow's `classifier` setting), in one table.

  svm              linear SVM on the fixed (pretrained) network's pooled features
  dnn              the whole network refined with a new dropout → linear head
  svm_dnn_refined  refined as dnn, then the linear SVM on the refined network's features

Each row says whether the mode refines the network first (then it has checkpoints, resume,
`lr=auto` and torchrun), how it fits (its module's `fit`), whether its features depend on
the fixed backbone alone (then they are cached across runs). What a resume checks is the
same for every refining mode: its whole config, but for src/resume.py's `MAY_CHANGE`. A new
mode is a row here and its own module (plus its conf/classifier/NAME.yaml); a setting of
its own is a field of `ModeSettings`.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from src.classifiers.dnn import Refinement
from src.errors import UserError
from src.modes import dnn, svm, svm_dnn_refined
from src.modes.job import Fitted, Job, Network


@dataclass(frozen=True)
class ModeSettings:
    """The classifier config, typed: the mode and the settings of its parts."""

    name: str
    refinement: Refinement | None = None  # how to train the network (refining modes)
    dropout: float = 0.0
    C_values: tuple[float, ...] = ()  # the SVM's candidates, chosen on validation
    l2_normalize: bool = True
    lr_find: dict = field(default_factory=dict)  # the range test's (lr=auto, src.lr_find)


@dataclass(frozen=True)
class Mode:
    refines: bool  # trains the network before it fits
    fit: Callable[[Job, Network, ModeSettings], Fitted]
    cached_features: bool  # its features depend on the fixed backbone alone


MODES = {
    "svm": Mode(refines=False, fit=svm.fit, cached_features=True),
    "dnn": Mode(refines=True, fit=dnn.fit, cached_features=False),
    "svm_dnn_refined": Mode(refines=True, fit=svm_dnn_refined.fit, cached_features=False),
}


def mode_of(name: str) -> Mode:
    if name not in MODES:
        raise UserError(f"classifier={name} is not one of {', '.join(MODES)}")
    return MODES[name]
