"""The results viewer: one self-contained HTML page of a split's images and their scores.

Every test image as a thumbnail (embedded as base64: no external file, so the page opens from
the MLflow UI's artifact view, which shows HTML in a sandboxed frame) with its true and
predicted label and a bar per class score. Worst mistakes first: wrong predictions by
falling confidence, then right ones by rising confidence. Filters and sorting run in a few
lines of plain JavaScript; the page reads fine without it. Ticked images can be exported as
a `path,new_label` CSV for `python -m src.relabel`, with a new label or `-`, which sets
the image aside (into the dataset's quarantine folder).

With Grad-CAM maps (src/evaluation/gradcam.py), each card can lay the heat map of the
predicted class, and of the true class where it differs, over its thumbnail: a button per
image, and a switch for all. The overlays are embedded too, pre-blended JPEGs. Thumbnails
are made with the run's own preprocessing, so a map lies over the pixels the model saw.
"""

import base64
import html
from pathlib import Path

import cv2
import numpy as np

from src.data.folders import ImageFile
from src.data.images import ImageError
from src.data.presets import load_pixels
from src.evaluation.gradcam import ClassMaps

THUMBNAIL = 128  # px, letterboxed like the model's input
JPEG_QUALITY = 80
MAX_ENTRIES = 2000  # beyond this the page gets slow to open; the worst ones are kept
BARS = 5  # score bars per image: the top classes (and the true class, if not among them)
HEAT_ALPHA = 0.45  # share of the heat map's colour in an overlay (the rest: the thumbnail)


def worst_first(y_true: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Indices in the page's default order: mistakes by falling confidence in the wrong
    answer, then correct predictions by rising confidence."""
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    wrong = predicted != y_true
    # lexsort sorts by the last key first: wrong before right, then the signed confidence
    return np.lexsort((np.where(wrong, -confidence, confidence), ~wrong))


def write_results_page(
    path: Path,
    files: list[ImageFile],
    y_true,
    probabilities: np.ndarray,
    classes: list[str],
    dataset_root: Path,
    *,
    title: str = "test results",
    maps: ClassMaps | None = None,
    preprocessing: str = "letterbox",
) -> Path:
    y_true, probabilities = np.asarray(y_true), np.asarray(probabilities, dtype=float)
    order = worst_first(y_true, probabilities)
    shown = order[:MAX_ENTRIES]
    predicted = probabilities.argmax(axis=1)
    correct = int((predicted == y_true).sum())
    entries = "\n".join(
        _entry(
            rank,
            files[i],
            int(y_true[i]),
            probabilities[i],
            classes,
            preprocessing,
            None if maps is None else (maps.predicted[i], maps.true[i]),
        )
        for rank, i in enumerate(shown)
    )
    options = "".join(f'<option value="{_e(c)}">{_e(c)}</option>' for c in classes)
    note = (
        f" The {len(files) - len(shown)} most confident correct ones are left out."
        if len(shown) < len(files)
        else ""
    )
    page = PAGE.format(
        controls=CONTROLS.format(options=options, heat=HEAT_SWITCH if maps is not None else ""),
        title=_e(title),
        summary=_e(
            f"{len(files)} images, {len(files) - correct} mistakes, accuracy "
            f"{correct / max(len(files), 1):.3f}.{note}"
        ),
        entries=entries,
        root=_e(str(dataset_root)),
        total=len(shown),
        script=SCRIPT,
        style=STYLE,
    )
    Path(path).write_text(page, encoding="utf-8")
    return Path(path)


def _entry(
    rank: int,
    f: ImageFile,
    true: int,
    scores: np.ndarray,
    classes: list[str],
    preprocessing: str = "letterbox",
    maps: tuple[np.ndarray, np.ndarray] | None = None,
) -> str:
    pred = int(scores.argmax())
    ok = pred == true
    verdict = (
        f'<span class="ok">&#10003;</span> {_e(classes[true])}'
        if ok
        else f'<span class="no">&#10007;</span> {_e(classes[pred])} '
        f'<span class="was">(true: {_e(classes[true])})</span>'
    )
    pixels = _thumbnail_pixels(f.path, preprocessing)
    heat, button = "", ""
    if maps is not None:
        heat = f' data-heat-pred="{_jpeg(overlay(pixels, maps[0]))}"'
        if not ok:
            heat += f' data-heat-true="{_jpeg(overlay(pixels, maps[1]))}"'
        button = '<button type="button" class="heat">heat map: off</button>'
    return (
        f'<div class="item {"right" if ok else "wrong"}" data-path="{_e(f.relpath)}" '
        f'data-true="{_e(classes[true])}" data-pred="{_e(classes[pred])}" '
        f'data-score="{scores[pred]:.6f}" data-rank="{rank}">'
        f'<img alt="{_e(f.relpath)}" width="{THUMBNAIL}" height="{THUMBNAIL}" '
        f'src="{_jpeg(pixels)}"{heat}>'
        f"{button}"
        f'<div class="path" title="{_e(f.relpath)}">{_e(f.relpath)}</div>'
        f'<div class="verdict">{verdict} <b>{scores[pred]:.2f}</b></div>'
        f'<div class="bars">{_bars(scores, classes, true, pred)}</div>'
        f'<label class="pick"><input type="checkbox" class="tick"> relabel or set aside</label>'
        "</div>"
    )


def _bars(scores: np.ndarray, classes: list[str], true: int, pred: int) -> str:
    """A bar per class score: the top BARS classes, and the true class if not among them;
    `pred` is drawn red, `true` green."""
    top = list(np.argsort(-scores, kind="stable")[:BARS])
    if true not in top:
        top.append(true)
    return "".join(
        f'<div class="bar{" is-pred" if k == pred else ""}{" is-true" if k == true else ""}">'
        f'<span class="name">{_e(classes[k])}</span><span class="track"><i style="width:'
        f'{100 * scores[k]:.1f}%"></i></span><span class="p">{scores[k]:.2f}</span></div>'
        for k in top
    )


def overlay(pixels: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """The thumbnail with a map in [0, 1] over it, blue (none) to red (strongest)."""
    side = pixels.shape[0]
    big = cv2.resize(cam.astype(np.float32), (side, side), interpolation=cv2.INTER_LINEAR)
    colour = cv2.applyColorMap(np.uint8(np.clip(big, 0, 1) * 255), cv2.COLORMAP_JET)
    colour = cv2.cvtColor(colour, cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(pixels, 1 - HEAT_ALPHA, colour, HEAT_ALPHA, 0)


def _thumbnail_pixels(path: Path, preprocessing: str = "letterbox") -> np.ndarray:
    try:
        return load_pixels(Path(path).read_bytes(), THUMBNAIL, preprocessing)
    except (OSError, ImageError):
        return np.full((THUMBNAIL, THUMBNAIL, 3), 200, np.uint8)  # gone since the run began


def _thumbnail(path: Path) -> str:
    return _jpeg(_thumbnail_pixels(path))


def _jpeg(pixels: np.ndarray) -> str:
    ok, encoded = cv2.imencode(
        ".jpg", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    )
    assert ok, "OpenCV failed to encode a thumbnail"
    return "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)


STYLE = """
body { font: 13px/1.35 system-ui, sans-serif; margin: 0; color: #222; background: #f6f6f4; }
header { position: sticky; top: 0; background: #fff; border-bottom: 1px solid #ddd;
         padding: 8px 14px; z-index: 1; }
h1 { font-size: 17px; margin: 0 0 4px; }
.controls { display: flex; flex-wrap: wrap; gap: 6px 16px; align-items: center; }
.controls label { white-space: nowrap; }
#count { font-weight: 600; }
#export-box { display: none; margin-top: 6px; }
#export-box textarea { width: 100%; height: 90px; font: 12px monospace; }
#grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(220px, 1fr));
        gap: 10px; padding: 12px 14px; }
.item { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 8px;
        border-left: 5px solid #3a3; }
.item.wrong { border-left-color: #d33; }
.item[hidden] { display: none; }
.item img { display: block; margin: 0 auto 4px; border-radius: 3px; }
.path { font: 11px monospace; color: #555; overflow: hidden; text-overflow: ellipsis;
        white-space: nowrap; }
.verdict { margin: 3px 0; }
.ok { color: #2a2; font-weight: 700; } .no { color: #d22; font-weight: 700; }
.was { color: #666; }
.bar { display: grid; grid-template-columns: 72px 1fr 34px; gap: 4px; align-items: center;
       font-size: 11px; }
.bar .name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.track { background: #eee; height: 8px; border-radius: 4px; overflow: hidden; }
.track i { display: block; height: 100%; background: #99a; }
.bar.is-pred .track i { background: #d33; } .bar.is-true .track i { background: #3a3; }
.bar.is-true .name { font-weight: 700; }
.p { text-align: right; font-variant-numeric: tabular-nums; }
.pick { display: block; margin-top: 4px; font-size: 12px; }
.pick select { margin-left: 4px; }
.heat { display: block; margin: 0 auto 4px; font-size: 11px; }
"""

CONTROLS = """<label>show <select id="show"><option value="all">all</option>
<option value="mistakes">mistakes</option><option value="correct">correct</option></select></label>
<label>true class <select id="true"><option value="">any</option>{options}</select></label>
<label>predicted <select id="pred"><option value="">any</option>{options}</select></label>
<label>order <select id="sort"><option value="worst">worst mistakes first</option>
<option value="unsure">least confident first</option>
<option value="sure">most confident first</option><option value="path">by path</option>
</select></label>
{heat}"""

HEAT_SWITCH = """<label>heat maps <select id="heat"><option value="off">off</option>
<option value="pred">predicted class</option><option value="true">true class</option>
</select></label>"""

CARDS_SCRIPT = """
// Shared by the pages of cards (this one, label_issues_page.py): each card is an `.item` in
// #grid with data-path, data-true (the label it has) and data-pred (the label a tick offers).
const get = (id) => document.getElementById(id);
function arrange(grid, items, compare, hidden) {
  let visible = 0;
  for (const el of items.slice().sort(compare)) {
    grid.appendChild(el);
    el.hidden = hidden(el);
    if (!el.hidden) visible++;
  }
  get('count').textContent = 'showing ' + visible + ' of ' + items.length + ' images';
}
// the filters live in the address's hash, so that a view can be linked to
function restoreFromHash(ids, update) {
  const state = new URLSearchParams(location.hash.slice(1));
  for (const id of ids) {
    const select = get(id);
    if (state.has(id) && Array.from(select.options).some((o) => o.value === state.get(id))) {
      select.value = state.get(id);
    }
    select.addEventListener('change', update);
  }
  return state;
}
function saveToHash(ids) {
  const state = new URLSearchParams();
  for (const id of ids) if (get(id)) state.set(id, get(id).value);
  try { history.replaceState(null, '', '#' + state); } catch (e) { /* sandboxed frame */ }
}
function tickToExport(grid, items, classes) {
  grid.addEventListener('change', (event) => {
    if (!event.target.classList.contains('tick')) return;
    const item = event.target.closest('.item');
    let select = item.querySelector('select');
    if (event.target.checked && !select) {
      select = document.createElement('select');
      for (const c of classes) select.add(new Option(c, c));
      select.add(new Option('- (set aside)', '-'));  // relabel moves it to the quarantine
      const other = classes.find((c) => c !== item.dataset.true);
      select.value = item.dataset.pred !== item.dataset.true ? item.dataset.pred : other;
      event.target.parentElement.appendChild(select);
    }
    if (select) select.disabled = !event.target.checked;
  });
  const quote = (s) => (/[",\\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s);
  get('export').addEventListener('click', () => {
    const moved = (el) => el.querySelector('.tick').checked &&
                          el.querySelector('select').value !== el.dataset.true;
    const rows = items.filter(moved)
      .map((el) => [el.dataset.path, el.querySelector('select').value]);
    const csv = 'path,new_label\\n' + rows.map((r) => r.map(quote).join(',') + '\\n').join('');
    get('export-box').style.display = 'block';
    get('export-text').value = csv;
    get('export-count').textContent = rows.length + ' image(s)';
    try {  // blocked inside the MLflow UI's sandboxed frame: copy the text there instead
      const link = document.createElement('a');
      link.href = URL.createObjectURL(new Blob([csv], {type: 'text/csv'}));
      link.download = 'relabel.csv';
      document.body.appendChild(link);
      link.click();
      link.remove();
    } catch (e) { /* the text box has it */ }
  });
}
"""

SCRIPT = (
    CARDS_SCRIPT
    + """
(function () {
  const grid = get('grid');
  const items = Array.from(grid.querySelectorAll('.item'));
  const classes = Array.from(get('true').options).slice(1).map((o) => o.value);
  const orders = {
    worst: (a, b) => a.dataset.rank - b.dataset.rank,
    unsure: (a, b) => a.dataset.score - b.dataset.score,
    sure: (a, b) => b.dataset.score - a.dataset.score,
    path: (a, b) => (a.dataset.path < b.dataset.path ? -1 : 1),
  };
  function update() {
    const show = get('show').value, t = get('true').value, p = get('pred').value;
    arrange(grid, items, orders[get('sort').value] || orders.worst, (el) => {
      const wrong = el.classList.contains('wrong');
      return (show === 'mistakes' && !wrong) || (show === 'correct' && wrong) ||
             (t && el.dataset.true !== t) || (p && el.dataset.pred !== p);
    });
    saveToHash(['show', 'true', 'pred', 'sort', 'heat']);
  }
  const state = restoreFromHash(['show', 'true', 'pred', 'sort'], update);
  tickToExport(grid, items, classes);
  // Grad-CAM overlays: off → predicted class → true class (where it differs) → off
  const views = ['off', 'pred', 'true'];
  const label = {off: 'heat map: off', pred: 'heat map: predicted', true: 'heat map: true class'};
  function heat(el, view) {
    const img = el.querySelector('img');
    if (!img.dataset.heatPred) return;
    if (!img.dataset.plain) img.dataset.plain = img.src;
    if (view === 'true' && !img.dataset.heatTrue) view = 'pred';  // right: one class to show
    img.src = view === 'off' ? img.dataset.plain : (view === 'true' ? img.dataset.heatTrue
                                                                     : img.dataset.heatPred);
    el.dataset.heat = view;
    el.querySelector('.heat').textContent = label[view];
  }
  grid.addEventListener('click', (event) => {
    if (!event.target.classList.contains('heat')) return;
    const el = event.target.closest('.item');
    const now = views.indexOf(el.dataset.heat || 'off');
    let next = views[(now + 1) % views.length];
    if (next === 'true' && !el.querySelector('img').dataset.heatTrue) next = 'off';
    heat(el, next);
  });
  if (get('heat')) {
    if (state.has('heat')) get('heat').value = state.get('heat');
    const all = () => { for (const el of items) heat(el, get('heat').value); };
    get('heat').addEventListener('change', () => { all(); update(); });
    if (get('heat').value !== 'off') all();
  }
  update();
})();
"""
)

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
<header>
<h1>{title}</h1>
<p id="summary">{summary}</p>
<div class="controls">
{controls}
<span id="count">{total} images</span>
<button id="export" type="button">export ticked as CSV</button>
</div>
<div id="export-box"><span id="export-count"></span>: save as <code>relabel.csv</code>
(inside the MLflow UI, copy this text; downloads are blocked there), then
<code>python -m src.relabel moves=relabel.csv root={root}</code> shows what would move,
and <code>apply=true</code> moves the files (<code>-</code>: set aside, into the dataset's
quarantine folder; nothing is deleted, and the undo file it writes brings them back).
<textarea id="export-text" readonly></textarea></div>
</header>
<main id="grid">
{entries}
</main>
<script>{script}</script>
</body>
</html>
"""
