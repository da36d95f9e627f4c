"""The figures of a run: ROC curves, reliability diagram, confusion matrix, the SVM's C
selection."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def roc_figure(report: dict, path: Path, title: str = "ROC, one vs rest (test)") -> Path:
    fig, ax = plt.subplots(figsize=(6, 5.5))
    for name, (fpr, tpr, auc) in report["roc"].items():
        ax.plot(fpr, tpr, lw=1.8, label=f"{name} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    ax.set(
        xlabel="false positive rate",
        ylabel="true positive rate",
        xlim=(0, 1),
        ylim=(0, 1.02),
        title=f"{title}\nmicro AUC {report['auc_micro']:.3f}, macro AUC {report['auc_macro']:.3f}",
    )
    ax.legend(loc="lower right", fontsize="small")
    return _save(fig, path)


def reliability_figure(reports: dict, path: Path, splits=("val", "test")) -> Path:
    """Accuracy against the top score, per confidence bin (src.evaluation.metrics.calibration):
    on the diagonal, a score of 0.8 is right 80 % of the time. Marker area: the bin's images."""
    fig, ax = plt.subplots(figsize=(6, 5.5))
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="calibrated")
    for split in splits:
        table = reports[split]["reliability"]
        if not table:
            continue
        score, accuracy, count = (np.array(column) for column in zip(*table, strict=True))
        line = ax.plot(score, accuracy, lw=1.5, label=f"{split} (ECE {reports[split]['ece']:.3f})")
        ax.scatter(score, accuracy, s=20 + 200 * count / count.max(), color=line[0].get_color())
    ax.set(
        xlabel="top score (mean per bin)",
        ylabel="accuracy in the bin",
        xlim=(0, 1.02),
        ylim=(0, 1.02),
        title="reliability: do the scores mean what they say?",
    )
    ax.legend(loc="upper left", fontsize="small")
    return _save(fig, path)


def confusion_figure(report: dict, classes: list[str], path: Path, title: str = "test") -> Path:
    """Counts and row-normalised rates side by side: rows are true classes."""
    size = max(4.0, 0.6 * len(classes) + 2.5)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size + 1, size))
    for ax, matrix, fmt, label in (
        (axes[0], report["confusion"], "d", "counts"),
        (axes[1], report["confusion_normalized"], ".2f", "share of the true class"),
    ):
        ax.imshow(report["confusion_normalized"], cmap="Blues", vmin=0, vmax=1)
        for (i, j), value in np.ndenumerate(matrix):
            dark = report["confusion_normalized"][i, j] > 0.5
            ax.text(
                j,
                i,
                format(value, fmt),
                ha="center",
                va="center",
                color="white" if dark else "black",
                fontsize="small",
            )
        ticks = np.arange(len(classes))
        ax.set_xticks(ticks, classes, rotation=45, ha="right")
        ax.set_yticks(ticks, classes)
        ax.set(xlabel="predicted", ylabel="true", title=f"confusion matrix, {label} ({title})")
    return _save(fig, path)


def c_selection_figure(
    C_values: list[float], scores: list[float], chosen: float, path: Path
) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogx(C_values, scores, marker="o")
    ax.axvline(chosen, color="tab:red", ls="--", label=f"chosen C = {chosen:g}")
    ax.set(
        xlabel="C",
        ylabel="class-averaged accuracy",
        ylim=(0, 1.02),
        title="linear SVM: validation accuracy per C",
    )
    ax.legend()
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def training_curve_figure(history: list[dict[str, float]], path: Path) -> Path:
    """Error and loss per epoch, training vs validation (the original's training plot)."""
    epochs = list(range(len(history)))
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for split, style in (("train", "-o"), ("val", "-s")):
        left.plot(epochs, [1 - h[f"{split}/accuracy"] for h in history], style, label=split)
        right.plot(epochs, [h[f"{split}/loss"] for h in history], style, label=split)
    left.set(xlabel="epoch", ylabel="error (1 - accuracy)", ylim=(0, 1), title="error")
    right.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    for ax in (left, right):
        ax.legend()
        ax.grid(alpha=0.3)
    return _save(fig, path)


def label_issues_figure(
    classes: list[str], flagged: list[int], sizes: list[int], noise_share: dict, path: Path
) -> Path:
    """Per class (by its given label): the share of its images flagged as label issues,
    beside the share confident learning estimates to be mislabelled."""
    fig, ax = plt.subplots(figsize=(max(5, 0.7 * len(classes) + 2), 4))
    at = np.arange(len(classes))
    shares = [n / max(s, 1) for n, s in zip(flagged, sizes, strict=True)]
    bars = ax.bar(at - 0.2, shares, 0.4, label="flagged")
    estimated = [noise_share[c] for c in classes]  # NaN where the scores had no evidence
    ax.bar(at + 0.2, estimated, 0.4, label="estimated mislabelled")
    for bar, n, s in zip(bars, flagged, sizes, strict=True):
        ax.annotate(
            f"{n}/{s}",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize="small",
        )
    crowded = sum(len(c) for c in classes) > 6 * len(classes)  # names wider than their bars
    ax.set_xticks(at, classes, rotation=25 if crowded else 0, ha="right" if crowded else "center")
    highest = max([*shares, *(e for e in estimated if e == e), 0.05])
    ax.set(
        ylabel="share of the class's images",
        ylim=(0, highest * 1.25 + 0.02),
        title="label issues per given class",
    )
    ax.legend(fontsize="small")
    return _save(fig, path)
