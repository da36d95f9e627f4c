"""`python -m benchmarks.fuzz [--seconds N | --quick] [--targets images,requests] [--out DIR]`

Coverage-guided fuzzing (atheris, i.e. libFuzzer) of the image reader (`load_pixels`) and the
scoring request parser, for a fixed time per target (benchmarks/fuzz_targets.py says what
each target calls and what counts as a crash). Each target starts from the seed corpus kept
in tests/data/fuzz_corpus/ (small images of every format, and the inputs earlier fuzzing
found, as regression cases) and grows its own corpus under --out.

libFuzzer stops at the first crash, hang (an input over --hang-seconds) or input that takes
the process over --rss-limit-mb, and writes that input under <out>/<target>/findings/; the
fuzzer is then started again on the grown corpus until the time is up. An input over 10 s is
kept there too (libFuzzer's slow-unit) and counted, but is not a failure.

Reported per target: libFuzzer's own time (its clock starts with the target's imports: about
2 s for images, 10 s for requests), executions, executions/s, crashes, hangs, inputs over the
memory limit, the slowest input, and the peak resident memory of the fuzzing process (VmHWM:
the target's imports, about 85 MB for images and 950 MB for requests with torch and MLflow,
plus the largest decode). Findings make the command exit 1.
"""

import argparse
import base64
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "tests" / "data" / "fuzz_corpus"  # images/ and requests/ (see its README)
TARGETS = ("images", "requests")
DEFAULT_SECONDS = 900  # per target: issue 24's 30 minutes over the two
QUICK_SECONDS = 10  # per target, for `python -m benchmarks --quick` (a smoke test)
HANG_SECONDS = 60  # an input taking longer is a hang; 100 megapixels decode in 3-7 s, and
# a shared machine under `nice` can take several times that in wall-clock time
RSS_LIMIT_MB = 2048  # libFuzzer's default; decoding one image takes at most about 800 MB
FINDINGS = {"crash": "crashes", "timeout": "hangs", "oom": "over the memory limit"}
SLOW = "slow-unit"  # libFuzzer keeps an input over 10 s too: slow, reported, not a failure
STATS = re.compile(r"^stat::(\w+):\s+(\d+)", re.M)
DONE = re.compile(r"^Done \d+ runs in (\d+) second", re.M)
MAX_STARTS = 20  # findings after which a run stops: fix those first


def fuzz_target(
    target: str, seconds: float, out: Path, hang_seconds: int, rss_limit_mb: int
) -> dict:
    """Fuzz `target` for `seconds` of libFuzzer's own time; its figures."""
    from benchmarks.fuzz_targets import save_served_model

    workdir = out / target
    corpus, findings = workdir / "corpus", workdir / "findings"
    for folder in (corpus, findings):
        folder.mkdir(parents=True, exist_ok=True)
    seeds = seed_folders(target, workdir)
    if target == "requests":
        save_served_model(workdir)  # about 20 s, once, before the clock starts
    log = workdir / "fuzz.log"
    executions, slowest, peak_kb, starts, fuzzed = 0, 0, 0, 0, 0.0
    while seconds - fuzzed >= 1 and starts < MAX_STARTS:
        command = [
            sys.executable, "-m", "benchmarks.fuzz_targets", target, str(workdir),
            f"-max_total_time={int(seconds - fuzzed)}", f"-timeout={hang_seconds}",
            f"-rss_limit_mb={rss_limit_mb}", "-print_final_stats=1",
            f"-artifact_prefix={findings}/", str(corpus), *map(str, seeds),
        ]  # fmt: skip
        offset = log.stat().st_size if log.exists() else 0
        with log.open("a") as output:
            process = subprocess.Popen(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)
            peak_kb = max(peak_kb, wait_measuring_peak(process))
        starts += 1
        with log.open(errors="replace") as text:
            text.seek(offset)
            ended = text.read()
        stats = {k: int(v) for k, v in STATS.findall(ended)}
        if "number_of_executed_units" not in stats:
            raise RuntimeError(f"the {target} fuzzer did not start; see {log}")
        executions += stats["number_of_executed_units"]
        slowest = max(slowest, stats.get("slowest_unit_time_sec", 0))
        done = DONE.search(ended)  # printed only when the time is up
        rate = stats.get("average_exec_per_sec", 0)
        fuzzed += int(done[1]) if done else stats["number_of_executed_units"] / max(rate, 1)
        if process.returncode == 0:
            break
    found = sorted(p.name for p in findings.iterdir())
    row = {
        "target": target,
        "fuzzing s": round(fuzzed),
        "executions": executions,
        "executions/s": executions / max(fuzzed, 1),
        **{label: sum(n.startswith(f"{kind}-") for n in found) for kind, label in FINDINGS.items()},
        "inputs over 10 s": sum(n.startswith(f"{SLOW}-") for n in found),
        "slowest input s": slowest,
        "peak RSS MB": peak_kb / 1024,
        "corpus": sum(1 for _ in corpus.iterdir()),
        "starts": starts,
    }
    print(f"fuzz {target}: {row}", flush=True)
    return {**row, "findings": [str(findings / n) for n in found]}


def wait_measuring_peak(process: subprocess.Popen) -> int:
    """Wait for `process`; its peak resident memory in kB (VmHWM, read every 0.2 s).

    Not getrusage's ru_maxrss (wait4's, or libFuzzer's peak_rss_mb): Linux carries the
    parent's peak over into a child's across exec, so under the benchmark suite (torch
    loaded) every target would show the suite's memory. VmHWM belongs to the child's own
    address space, made at exec."""
    status, peak = Path(f"/proc/{process.pid}/status"), 0
    while True:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except (OSError, ValueError):  # exiting, or no /proc
            pass
        try:
            process.wait(timeout=0.2)
            return peak
        except subprocess.TimeoutExpired:
            continue


def seed_images() -> list[Path]:
    """The seed corpus's usable images: one of each format and kind the reader handles."""
    return sorted((SEEDS / "images").glob("seed-*"))


def regression_inputs() -> list[Path]:
    """The inputs fuzzing found: the image seeds that are not `seed-*` images."""
    return sorted(p for p in (SEEDS / "images").iterdir() if not p.name.startswith("seed-"))


def seed_folders(target: str, workdir: Path) -> list[Path]:
    """The seed corpus of `target`; the requests target also gets every image seed sent as
    an image in a request (fuzz_targets.REQUEST_KINDS 2 and 3)."""
    if target == "images":
        return [SEEDS / "images"]
    wrapped = workdir / "wrapped-images"
    wrapped.mkdir(exist_ok=True)
    for image in (SEEDS / "images").iterdir():
        for kind in (2, 3):
            (wrapped / f"{kind}-{image.name}").write_bytes(bytes([kind]) + image.read_bytes())
    return [SEEDS / "requests", wrapped]


def machine() -> dict:
    from benchmarks.common import cpu_model
    from src.precision import cpu_flags

    flags = cpu_flags()
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "avx512_bf16": "avx512_bf16" in flags,
        "python": sys.version.split()[0],
        "atheris": _version("atheris"),
        "pillow": _version("pillow"),
        "opencv": _version("opencv-python-headless"),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def run(
    targets, seconds: float, out: Path, hang_seconds=HANG_SECONDS, rss_limit_mb=RSS_LIMIT_MB
) -> list[dict]:
    """Each target in turn (one process at a time: the machine's other core stays free).
    Call it from a small process: a child's peak memory as libFuzzer sees it (for
    -rss_limit_mb) starts at this process's (see `wait_measuring_peak`)."""
    return [fuzz_target(t, seconds, out, hang_seconds, rss_limit_mb) for t in targets]


def run_separately(seconds: float, out: Path) -> dict:
    """`python -m benchmarks.fuzz` in a process of its own, for the suite, which has torch
    loaded and featurised; the report it wrote (findings make it exit 1, not fail here)."""
    command = [sys.executable, "-m", "benchmarks.fuzz", "--seconds", str(seconds)]
    subprocess.run([*command, "--out", str(out)], cwd=ROOT, check=False)
    return json.loads((out / "fuzz.json").read_text())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fuzz", description=__doc__)
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="per target")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_SECONDS} s per target")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated")
    parser.add_argument("--out", default=None, help="working folder (default: a fresh one)")
    parser.add_argument("--hang-seconds", type=int, default=HANG_SECONDS)
    parser.add_argument("--rss-limit-mb", type=int, default=RSS_LIMIT_MB)
    args = parser.parse_args(argv)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if unknown := sorted(set(targets) - set(TARGETS)):
        parser.error(f"unknown target(s) {unknown}; expected some of {', '.join(TARGETS)}")
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="imgsweep-fuzz-"))
    if out.exists() and any(out.iterdir()):
        parser.error(f"--out {out} is not empty: each run starts from the seed corpus")
    seconds = QUICK_SECONDS if args.quick else args.seconds
    rows = run(targets, seconds, out, args.hang_seconds, args.rss_limit_mb)
    from benchmarks.common import markdown_table  # torch: only once the fuzzing is done

    report = {"machine": machine(), "seconds_per_target": seconds, "rows": rows}
    (out / "fuzz.json").write_text(json.dumps(report, indent=2))
    print(f"\nMachine: {report['machine']}\n")
    print(markdown_table([{k: v for k, v in r.items() if k != "findings"} for r in rows]))
    for row in rows:
        for path in row["findings"]:
            data = Path(path).read_bytes()
            print(f"finding ({row['target']}): {path} ({len(data)} bytes)")
            print(f"  base64: {base64.b64encode(data[:96]).decode()}")
    print(f"\n(written to {out / 'fuzz.json'}; logs in {out}/<target>/fuzz.log)")
    if any(not Path(p).name.startswith(SLOW) for row in rows for p in row["findings"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
