"""Label issues: the images whose given label is likely wrong, most likely first.

Two kinds of evidence, over every image of every split:
- out of fold (src/classifiers/out_of_fold.py): confident learning (cleanlab's
  `find_label_issues`, pruning by the estimated noise rate of each pair of classes) flags an
  image when a model that never saw it puts it confidently in another class, counted against
  how confident that model is in each class on average;
- near-duplicates with different labels: the same picture cannot be two classes, whatever a
  model says. In a group (src/data/duplicates.py) the members off the group's most common
  label are issues; where labels tie, every member is.

Each issue has a score, the out-of-fold probability that the given label is wrong
(1 - p(given label)), and the list goes by falling score. The suggested label is the most
probable other class (for a duplicate, the group's label). Where the out-of-fold scores
carry no evidence (the calibration found no signal: a featurizer blind to these classes)
nothing is flagged out of fold, and `skipped` says why: confident learning would otherwise
flag about two images in three of a chance-level set, every one of them a guess.
"""

import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cleanlab.count import estimate_joint
from cleanlab.filter import find_label_issues

from src.atomic import written_atomically
from src.classifiers.out_of_fold import OutOfFold

COLUMNS = ("path", "given_label", "suggested_label", "score", "split", "reason")
OUT_OF_FOLD = "out-of-fold"  # `reason` of an issue confident learning flagged
DUPLICATE = "near-duplicate of {} ({})"  # `reason` of a duplicate-group conflict


@dataclass(frozen=True)
class LabelIssues:
    rows: list[dict]  # the CSV's rows (COLUMNS), most likely wrong first
    flagged: np.ndarray  # bool per image: listed (either kind of evidence)
    probabilities: np.ndarray  # out-of-fold, one row per image
    scores: np.ndarray  # per image: 1 - its out-of-fold p(given label), the rows' `score`
    suggested: np.ndarray  # per image: the class it is pointed at (unflagged: likeliest other)
    noise_share: dict[str, float]  # per class: estimated share of its images mislabelled
    skipped: str | None  # why nothing was flagged out of fold (None: it was looked for)


def label_issues(
    relpaths: list[str],
    splits: list[str],
    labels: np.ndarray,
    classes: list[str],
    scores: OutOfFold,
    duplicates: list[list[str]] = (),
) -> LabelIssues:
    """The issues among the images `relpaths` (given `labels`, out-of-fold `scores`)."""
    labels = np.asarray(labels)
    probs = scores.probabilities
    wrong = 1.0 - probs[np.arange(len(labels)), labels]
    others = np.where(np.eye(len(classes), dtype=bool)[labels], -np.inf, probs)
    suggested = others.argmax(axis=1)
    reasons: dict[int, tuple[int, str]] = {}  # image → (suggested class, reason)
    skipped = scores.calibration.fallback
    if skipped is None:
        found = find_label_issues(labels, probs, filter_by="prune_by_noise_rate", n_jobs=1)
        for i in np.flatnonzero(found):
            reasons[int(i)] = (int(suggested[i]), OUT_OF_FOLD)
        noise = noise_shares(labels, probs, classes)
    else:
        skipped = f"no evidence in the out-of-fold scores: {skipped}"
        noise = dict.fromkeys(classes, float("nan"))
    index = {relpath: i for i, relpath in enumerate(relpaths)}
    for group in duplicates:
        members = [index[r] for r in group if r in index]
        for i, label, keeper in duplicate_conflicts(members, labels, probs):
            reasons.setdefault(i, (label, DUPLICATE.format(relpaths[keeper], classes[label])))
    order = sorted(reasons, key=lambda i: (-wrong[i], relpaths[i]))
    rows = [
        {
            "path": relpaths[i],
            "given_label": classes[labels[i]],
            "suggested_label": classes[reasons[i][0]],
            "score": round(float(wrong[i]), 6),
            "split": splits[i],
            "reason": reasons[i][1],
        }
        for i in order
    ]
    flagged = np.zeros(len(labels), dtype=bool)
    flagged[list(reasons)] = True
    for i, (label, _) in reasons.items():
        suggested[i] = label
    return LabelIssues(rows, flagged, probs, wrong, suggested, noise, skipped)


def duplicate_conflicts(members: list[int], labels: np.ndarray, probs: np.ndarray):
    """(image, suggested class, the member whose label it is) for each member of one
    near-duplicate group that disagrees with the group; nothing when all agree."""
    counts = Counter(int(labels[i]) for i in members)
    if len(counts) < 2:
        return []
    top = max(counts.values())
    majority = [label for label, n in counts.items() if n == top]
    if len(majority) == 1:
        label = majority[0]
        keeper = next(i for i in members if labels[i] == label)
        return [(i, label, keeper) for i in members if labels[i] != label]
    # a tie: every member is in doubt; each is pointed at the likeliest of the others' labels
    found = []
    for i in members:
        others = [j for j in members if labels[j] != labels[i]]
        keeper = max(others, key=lambda j: (probs[i, labels[j]], -j))
        found.append((i, int(labels[keeper]), keeper))
    return found


def noise_shares(labels: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict[str, float]:
    """Per class, the estimated share of the images labelled so that belong elsewhere
    (1 - the confident joint's diagonal over its row, cleanlab's calibrated estimate)."""
    joint = estimate_joint(labels, probs)
    given = joint.sum(axis=1)
    return {
        name: float(1 - joint[k, k] / given[k]) if given[k] > 0 else float("nan")
        for k, name in enumerate(classes)
    }


def write_issues_csv(path: Path, issues: LabelIssues) -> Path:
    """The ranked list as CSV (written whole or not at all)."""
    with written_atomically(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(issues.rows)
    return Path(path)
