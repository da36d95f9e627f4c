"""`python -m src.search labels=...` writes a labelled URL list from image-search queries.

    python -m src.search labels=striped,dotted,leopard \\
        items=blouse,hoodie,pullover,sweater,shirt,t-shirt,vest per_query=50 \\
        provider=openverse output=fashion_urls.tsv
    → fashion_urls.tsv (label<TAB>url, for src.download), fashion_urls.provenance.tsv

Keys: `labels` (required), `items` (optional: without them, one query per label),
`query_template` (`"{item} {label}"`, or `"{label}"` without items), `per_query` (50, the
original's), `provider` (openverse, wikimedia: no key; pexels: PEXELS_API_KEY), `base_url`
(the provider's own), `output` (`image_urls.tsv`), `timeout` (20 s), `retries` (3),
`backoff` (1 s), `max_wait` (60 s: the longest Retry-After honoured).
"""

import sys
from pathlib import Path

from src.command_line import REQUIRED, at_least, parse_arguments, run_command
from src.data.image_search import build_queries, search_images, sidecar, write_search_results

DEFAULTS = {
    "labels": REQUIRED,
    "items": None,
    "query_template": None,  # "{item} {label}" with items, "{label}" without
    "per_query": 50,  # URLs per query: the original took the top 50 of each Bing search
    "provider": "openverse",
    "base_url": None,  # the provider's public API; a test points it at a loopback server
    "output": "image_urls.tsv",
    "timeout": 20.0,  # s without an answer, per request; twice the downloader's 10 s
    "retries": 3,  # further tries after a 429, a 5xx, a timeout or a dropped connection
    "backoff": 1.0,  # s before the first retry when the service names no wait, doubled after
    # s: the longest Retry-After waited out. Openverse throttles per minute (burst) and per
    # day (sustained): a longer wait means the day's quota is spent, so that query fails
    "max_wait": 60.0,
}


def search(argv: list[str]) -> int:
    options = parse_arguments(argv, DEFAULTS)
    queries = build_queries(
        options["labels"].split(","),
        options["items"].split(",") if options["items"] else None,
        options["query_template"],
    )
    output = Path(options["output"]).expanduser()
    summary = search_images(
        queries,
        options["provider"],
        at_least(options, "per_query", 1),
        base_url=options["base_url"],
        timeout=options["timeout"],
        retries=options["retries"],
        backoff=options["backoff"],
        max_wait=options["max_wait"],
    )
    if not summary.kept:
        print(summary.text(None))
        print("error: no URL to keep (reasons above); nothing was written", file=sys.stderr)
        return 1
    write_search_results(output, summary)
    print(summary.text(output))
    print(f"licences, creators and queries: {sidecar(output, 'provenance')}")
    print(f"next: python -m src.download urls={output}")
    return 0


if __name__ == "__main__":
    run_command(search)
