"""A labelled URL list from image-search queries, as the original workflow's part 3 built its
dataset: every item combined with every label ({blouse, ..., vest} x {striped, dotted,
leopard}), the top results of each query labelled with the query's label.

A URL found again under the same label is kept once; a URL found under two labels is
dropped, ambiguous by construction, and reported. The list is the downloader's format
(`label<TAB>url`); beside it, `<name>.provenance.tsv` keeps each URL's query, service,
licence and creator (the images are openly licensed, and their licences may ask for credit),
and `<name>.ambiguous.tsv` the dropped URLs.
"""

import csv
import io
import string
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from tqdm import tqdm

from src.atomic import written_atomically
from src.data.quarantine import SET_ASIDE
from src.data.search_providers import openverse, pexels, wikimedia
from src.data.search_providers.session import (
    ApiSession,
    ImageRecord,
    QueryFailed,
    ServiceUnreachable,
)
from src.data.url_list import normalized_url
from src.errors import UserError

PROVIDERS = {"openverse": openverse, "wikimedia": wikimedia, "pexels": pexels}
PROVENANCE_COLUMNS = [
    "label", "url", "query", "provider", "source", "license", "license_url", "creator",
    "landing_url",
]  # fmt: skip
SHOWN = 10  # ambiguous URLs and short queries named in the summary; the files list them all


@dataclass(frozen=True)
class Query:
    text: str
    label: str


@dataclass(frozen=True)
class FoundImage:
    label: str
    query: str
    record: ImageRecord


@dataclass
class SearchSummary:
    provider: str
    per_query: int
    queries: list[Query]
    kept: list[FoundImage] = field(default_factory=list)  # by label, then as found
    repeats: Counter = field(default_factory=Counter)  # label → URLs found again in it
    ambiguous: dict[str, list[FoundImage]] = field(default_factory=dict)  # URL → its finds
    failures: list[tuple[Query, str]] = field(default_factory=list)
    short: list[tuple[Query, int]] = field(default_factory=list)  # fewer results than asked
    requests: int = 0
    waited: float = 0.0  # s, backing off as the service asked

    def per_label(self) -> dict[str, int]:
        counts = Counter(found.label for found in self.kept)
        return {label: counts[label] for label in dict.fromkeys(q.label for q in self.queries)}

    def text(self, output: Path | None) -> str:
        """The summary; `output` None: nothing was written."""
        waited = f", {self.waited:.0f} s waiting when asked to" if self.waited else ""
        lines = [
            f"{len(self.queries) - len(self.failures)} of {len(self.queries)} queries answered "
            f"by {self.provider} ({self.requests} requests{waited})"
            + (f" → {output}" if output else ""),
        ]
        for label, count in self.per_label().items():
            again = (
                f"  ({self.repeats[label]} found again, kept once)" if self.repeats[label] else ""
            )
            lines.append(f"  {label:<20}{count:>5} URLs{again}")
        if self.ambiguous:
            listed = f" (all in {sidecar(output, 'ambiguous')})" if output else ""
            lines.append(f"dropped, found under two labels or more: {len(self.ambiguous)}{listed}")
            for url, finds in list(self.ambiguous.items())[:SHOWN]:
                lines.append(f"  {url}  ({', '.join(dict.fromkeys(f.label for f in finds))})")
        if self.short:
            named = ", ".join(f'"{q.text}" {n}' for q, n in self.short[:SHOWN])
            more = f", and {len(self.short) - SHOWN} more" if len(self.short) > SHOWN else ""
            lines.append(f"fewer than {self.per_query} results: {named}{more}")
        if self.failures:
            lines.append(f"failed queries: {len(self.failures)}")
            lines += [f'  "{query.text}": {reason}' for query, reason in self.failures]
        return "\n".join(lines)


def build_queries(labels: list[str], items: list[str] | None, template: str | None) -> list[Query]:
    """One query per item and label (per label alone without items), from `template`
    (`"{item} {label}"` with items, `"{label}"` without)."""
    labels, items = _names(labels, "labels"), _names(items or [], "items")
    if not labels:
        raise UserError("labels= names no label; give labels=striped,dotted,...")
    for label in labels:
        problem = _label_problem(label)
        if problem:
            raise UserError(f"label {label!r} {problem}")
    template = template or ("{item} {label}" if items else "{label}")
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as error:
        raise UserError(f"query_template {template!r} is malformed ({error})") from None
    wanted = {"label", "item"} if items else {"label"}
    if fields != wanted:
        named = " and ".join(sorted("{" + w + "}" for w in wanted))
        raise UserError(
            f"query_template {template!r} must use {named}"
            + (" (no items= given)" if not items else "")
            + f", and nothing else; found {', '.join(sorted(fields)) or 'no field'}"
        )
    pairs = [(item, label) for item in items for label in labels] if items else []
    queries = [Query(template.format(item=i, label=la), la) for i, la in pairs]
    return queries or [Query(template.format(label=label), label) for label in labels]


def search_images(
    queries: list[Query],
    provider: str,
    per_query: int,
    *,
    base_url: str | None = None,
    timeout: float = 20.0,
    retries: int = 3,
    backoff: float = 1.0,
    max_wait: float = 60.0,
) -> SearchSummary:
    """Run every query on `provider`; returns what to keep, what was dropped and why."""
    if provider not in PROVIDERS:
        retired = " (Bing's Search APIs were retired in August 2025)" * (provider == "bing")
        raise UserError(
            f"unknown provider {provider!r}{retired}; expected one of: {', '.join(PROVIDERS)}"
        )
    if per_query < 1:
        raise UserError(f"per_query must be at least 1, got {per_query}")
    if timeout <= 0 or retries < 0 or backoff < 0 or max_wait < 0:
        raise UserError("timeout must be positive; retries, backoff and max_wait 0 or more")
    module = PROVIDERS[provider]
    base_url = base_url or module.DEFAULT_BASE_URL
    if urlsplit(base_url).scheme not in ("http", "https"):
        raise UserError(f"base_url must be an http(s) address, got {base_url!r}")
    session = ApiSession(f"{provider} ({base_url})", timeout, retries, backoff, max_wait)
    if hasattr(module, "prepare"):
        module.prepare(session)
    summary = SearchSummary(provider, per_query, queries)
    by_label: dict[str, dict[str, FoundImage]] = {}  # label → normalized URL → first find
    # delay: a service that fails at once (offline) leaves its one error line, no empty bar
    with tqdm(queries, desc=f"searching {provider}", unit="query", delay=1) as progress:
        for query in progress:
            try:
                records = module.search(query.text, per_query, base_url, session)
            except QueryFailed as error:
                summary.failures.append((query, str(error)))
                continue
            except ServiceUnreachable as error:
                raise UserError(f"{error}; nothing was written") from None
            finally:
                summary.requests, summary.waited = session.requests, session.waited
            if len(records) < per_query:
                summary.short.append((query, len(records)))
            found = by_label.setdefault(query.label, {})
            for record in records:
                if not _usable(record.url):
                    continue
                url = normalized_url(record.url)
                if url in found:
                    summary.repeats[query.label] += 1
                else:
                    found[url] = FoundImage(query.label, query.text, record)
            progress.set_postfix(urls=sum(map(len, by_label.values())))
    labels_of = Counter(url for found in by_label.values() for url in found)
    for label in dict.fromkeys(q.label for q in queries):
        for url, image in by_label.get(label, {}).items():
            if labels_of[url] > 1:
                summary.ambiguous.setdefault(url, []).append(image)
            else:
                summary.kept.append(image)
    return summary


def write_search_results(output: Path, summary: SearchSummary) -> list[Path]:
    """The URL list at `output` and its provenance (and ambiguous) file beside it, each
    written whole or not at all; returns the paths written."""
    output = Path(output).expanduser()
    header = [
        f"# python -m src.search provider={summary.provider}: label<TAB>url; queries,",
        f"# licences and creators in {sidecar(output, 'provenance').name}",
    ]
    rows = [[found.label, found.record.url] for found in summary.kept]
    written = [_write_tsv(output, rows, header)]
    provenance = [_provenance_row(found, summary.provider) for found in summary.kept]
    written.append(_write_tsv(sidecar(output, "provenance"), [PROVENANCE_COLUMNS, *provenance]))
    ambiguous_file = sidecar(output, "ambiguous")
    if summary.ambiguous:
        rows = [
            _provenance_row(f, summary.provider)
            for finds in summary.ambiguous.values()
            for f in finds
        ]
        written.append(_write_tsv(ambiguous_file, [PROVENANCE_COLUMNS, *rows]))
    else:
        ambiguous_file.unlink(missing_ok=True)  # an earlier run's, no longer true
    return written


def sidecar(output: Path, kind: str) -> Path:
    """`fashion_urls.tsv` → `fashion_urls.<kind>.tsv`."""
    output = Path(output)
    return output.with_name(f"{output.stem}.{kind}.tsv")


def _provenance_row(found: FoundImage, provider: str) -> list[str]:
    r = found.record
    row = [found.label, r.url, found.query, provider, r.source, r.license, r.license_url]
    return [*row, r.creator, r.landing_url]


def _write_tsv(path: Path, rows: list[list[str]], comments: list[str] = ()) -> Path:
    buffer = io.StringIO()
    buffer.writelines(f"{line}\n" for line in comments)
    writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
    writer.writerows([" ".join(str(cell).split()) for cell in row] for row in rows)
    with written_atomically(path) as tmp:
        tmp.write_text(buffer.getvalue(), encoding="utf-8")
    return Path(path)


def _names(values: list[str], key: str) -> list[str]:
    names = [v.strip() for v in values if v.strip()]
    repeated = [name for name, n in Counter(names).items() if n > 1]
    if repeated:
        raise UserError(f"{key}= names {repeated[0]!r} twice")
    return list(names)


def _label_problem(label: str) -> str | None:
    if label == SET_ASIDE:
        return "is reserved: '-' sets an image aside (src.relabel)"
    if label.startswith(".") or any(c in label for c in '/\\:*?"<>|\t'):
        return "cannot be a folder name"
    return None


def _usable(url: str) -> bool:
    """An http(s) address on one line: what the downloader's list can hold."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and url.isprintable()
