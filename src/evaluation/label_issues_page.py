"""The label issues page: one self-contained HTML page to review the images whose given
label is likely wrong (src/evaluation/label_issues.py), and to fix them.

It is the results page's twin (src/evaluation/results_page.py: same look, thumbnails made
with the run's preprocessing and embedded, so it opens in the MLflow UI's sandboxed frame):
the flagged images first, most likely wrong first, then the others by falling doubt, each
card with its given and suggested label, the out-of-fold class probabilities and why it was
flagged. Ticking a card offers its suggested label; the ticked ones export as the
`path,new_label` CSV that `python -m src.relabel` applies (`-`: set the image aside).
"""

from pathlib import Path

import numpy as np

from src.data.folders import ImageFile
from src.evaluation.label_issues import OUT_OF_FOLD, LabelIssues
from src.evaluation.results_page import (
    CARDS_SCRIPT,
    MAX_ENTRIES,
    PAGE,
    STYLE,
    THUMBNAIL,
    _bars,
    _e,
    _jpeg,
    _thumbnail_pixels,
)

NOT_FLAGGED = "not flagged"  # the reason shown on a card no evidence pointed at


def review_order(issues: LabelIssues, relpaths: list[str]) -> np.ndarray:
    """The images in the page's order: the flagged ones in the order of `issues.rows`, then
    the rest by falling score 1 - p(given label)."""
    index = {relpath: i for i, relpath in enumerate(relpaths)}
    flagged = [index[row["path"]] for row in issues.rows]
    rest = [i for i in np.argsort(-issues.scores, kind="stable") if not issues.flagged[i]]
    return np.array(flagged + rest, dtype=int)


def write_label_issues_page(
    path: Path,
    issues: LabelIssues,
    files: list[ImageFile],
    labels,
    splits: list[str],
    classes: list[str],
    dataset_root: Path,
    *,
    title: str = "label issues",
    preprocessing: str = "letterbox",
) -> Path:
    labels = np.asarray(labels)
    relpaths = [f.relpath for f in files]
    shown = review_order(issues, relpaths)[:MAX_ENTRIES]
    reasons = {row["path"]: row["reason"] for row in issues.rows}
    cards = []
    for rank, i in enumerate(shown):
        cards.append(
            _card(
                rank,
                files[i],
                int(labels[i]),
                int(issues.suggested[i]),
                float(issues.scores[i]),
                splits[i],
                reasons.get(relpaths[i], NOT_FLAGGED),
                issues.probabilities[i],
                classes,
                preprocessing,
            )
        )
    options = "".join(f'<option value="{_e(c)}">{_e(c)}</option>' for c in classes)
    split_options = "".join(
        f'<option value="{_e(s)}">{_e(s)}</option>' for s in dict.fromkeys(splits)
    )
    page = PAGE.format(
        controls=CONTROLS.format(options=options, splits=split_options),
        title=_e(title),
        summary=summary(issues, len(files), len(files) - len(shown)),
        entries="\n".join(cards),
        root=_e(str(dataset_root)),
        total=len(shown),
        script=SCRIPT,
        style=STYLE + ISSUES_STYLE,
    )
    Path(path).write_text(page, encoding="utf-8")
    return Path(path)


def summary(issues: LabelIssues, total: int, left_out: int) -> str:
    """The page's summary line, as HTML; a skipped search is said loudly, since an empty
    list then means "not looked for", not "no issues"."""
    out_of_fold = sum(row["reason"] == OUT_OF_FOLD for row in issues.rows)
    text = (
        f"{total} images, {len(issues.rows)} flagged as label issues ({out_of_fold} out of "
        f"fold, {len(issues.rows) - out_of_fold} near-duplicate conflicts)."
    )
    if left_out:
        text += f" The {left_out} least doubtful unflagged ones are left out."
    line = _e(text)
    if issues.skipped:
        line += (
            '<strong class="skipped" id="skipped">Nothing was flagged out of fold: '
            f"{_e(issues.skipped)}</strong>"
        )
    return line


def _card(
    rank: int,
    f: ImageFile,
    given: int,
    suggested: int,
    score: float,
    split: str,
    reason: str,
    probabilities: np.ndarray,
    classes: list[str],
    preprocessing: str,
) -> str:
    flagged = reason != NOT_FLAGGED
    return (
        f'<div class="item {"flagged" if flagged else "unflagged"}" '
        f'data-path="{_e(f.relpath)}" data-true="{_e(classes[given])}" '
        f'data-pred="{_e(classes[suggested])}" data-split="{_e(split)}" '
        f'data-score="{score:.6f}" data-rank="{rank}">'
        f'<img alt="{_e(f.relpath)}" width="{THUMBNAIL}" height="{THUMBNAIL}" '
        f'src="{_jpeg(_thumbnail_pixels(f.path, preprocessing))}">'
        f'<div class="path" title="{_e(f.relpath)}">{_e(f.relpath)}</div>'
        f'<div class="verdict">{_e(classes[given])} &rarr; <b>{_e(classes[suggested])}</b> '
        f'<span class="was">score {score:.2f}, {_e(split)}</span></div>'
        f'<div class="reason">{_e(reason)}</div>'
        f'<div class="bars">{_bars(probabilities, classes, given, suggested)}</div>'
        f'<label class="pick"><input type="checkbox" class="tick"> relabel or set aside</label>'
        "</div>"
    )


ISSUES_STYLE = """
.item.flagged { border-left-color: #d33; } .item.unflagged { border-left-color: #aaa; }
.reason { font-size: 11px; color: #666; margin-bottom: 3px; }
.skipped { display: block; margin-top: 4px; padding: 4px 8px; background: #fde8e8;
           border: 1px solid #d33; border-radius: 4px; color: #a11; }
"""

CONTROLS = """<label>show <select id="show"><option value="flagged">flagged</option>
<option value="all">all</option><option value="unflagged">not flagged</option></select></label>
<label>given class <select id="given"><option value="">any</option>{options}</select></label>
<label>suggested <select id="suggested"><option value="">any</option>{options}</select></label>
<label>split <select id="split"><option value="">any</option>{splits}</select></label>
<label>order <select id="sort"><option value="likely">most likely wrong first</option>
<option value="path">by path</option></select></label>"""

SCRIPT = (
    CARDS_SCRIPT
    + """
(function () {
  const grid = get('grid');
  const items = Array.from(grid.querySelectorAll('.item'));
  const classes = Array.from(get('given').options).slice(1).map((o) => o.value);
  const orders = {
    likely: (a, b) => a.dataset.rank - b.dataset.rank,
    path: (a, b) => (a.dataset.path < b.dataset.path ? -1 : 1),
  };
  const ids = ['show', 'given', 'suggested', 'split', 'sort'];
  function update() {
    const show = get('show').value, g = get('given').value, s = get('suggested').value;
    const split = get('split').value;
    arrange(grid, items, orders[get('sort').value] || orders.likely, (el) => {
      const flagged = el.classList.contains('flagged');
      return (show === 'flagged' && !flagged) || (show === 'unflagged' && flagged) ||
             (g && el.dataset.true !== g) || (s && el.dataset.pred !== s) ||
             (split && el.dataset.split !== split);
    });
    saveToHash(ids);
  }
  restoreFromHash(ids, update);
  tickToExport(grid, items, classes);
  update();
})();
"""
)
