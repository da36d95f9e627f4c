"""`python -m src.download urls=fashionTextureUrls.tsv name=fashionTexture` downloads a
labelled URL list into a dataset folder: data/images/fashionTexture/<label>/<name>.<ext>.

Keys: `urls` (required), `name` (default: the list's file name), `data_dir` (`data`; the
images go to `<data_dir>/images/<name>`) or `root` (the dataset folder itself), `max_size`
(1000 px, the original's), `threads` (8), `timeout` (10 s), `retries` (2), `backoff` (1 s),
`max_mb` (20). What is checked and written: src/data/download.py.
"""

import sys
from pathlib import Path

from src.command_line import REQUIRED, parse_arguments, run_command
from src.data.download import download_images

DEFAULTS = {
    "urls": REQUIRED,
    "name": None,
    "data_dir": "data",
    "root": None,
    "max_size": 1000,  # px, longer side; the original downloader's
    "threads": 8,
    "timeout": 10.0,  # s without an answer, per request
    "retries": 2,  # further tries after a transient failure (timeout, 5xx, cut connection)
    "backoff": 1.0,  # s before the first retry, doubled for each further one
    "max_mb": 20.0,  # bigger answers are refused unread
}


def download(argv: list[str]) -> int:
    options = parse_arguments(argv, DEFAULTS, aliases={"paths.data_dir": "data_dir"})
    urls = Path(options["urls"]).expanduser()
    name = options["name"] or urls.stem
    root = options["root"] or Path(options["data_dir"]) / "images" / name
    summary = download_images(
        urls,
        root,
        max_size=options["max_size"],
        threads=options["threads"],
        timeout=options["timeout"],
        retries=options["retries"],
        backoff=options["backoff"],
        max_bytes=round(options["max_mb"] * 1_000_000),
    )
    print(summary.text())
    if not summary.downloaded and not summary.present:
        print("error: no image could be downloaded (reasons above)", file=sys.stderr)
        return 1
    print(f"next: python -m src.dedup root={summary.root}")
    print(f"then: python -m src.run dataset=folder dataset.root={summary.root}")
    return 0


if __name__ == "__main__":
    run_command(download)
