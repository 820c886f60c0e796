"""A/B of two commits in one sitting: `make bench`'s live latency, throughput and reload figures.

    python -m bench.ab A B [--rounds 5] [--samples 200] [--seconds 5] [--edits 10]

A and B are anything `git rev-parse` takes (a sha, HEAD~1, a branch). Each is checked out into a
temporary worktree (`git worktree add --detach`, removed at the end) and given a venv of its own by its
own Makefile (`make install-test`): this checkout's .venv holds an editable install of this checkout,
so its workers and forkservers would import this tree's code, not the commit's. Each commit runs its
own `bench.live` and `bench.reload` (they use the code's internals, which a step may move), with their
sample counts set smaller (the module constants SAMPLES, DURATION_S, EDITS) so that rounds are short
and many. Rounds interleave the commits, benchmark by benchmark, the order swapped every round, so
that a shared machine's drift hits both alike.

Per metric it prints each commit's median over the rounds (and their range), B/A of the medians, and
the median of the per-round B/A (robust to drift between rounds). The figures are read from what the
benchmarks print (the lines README quotes); a metric a commit does not print shows as "-". Every run's
output is kept in the log directory printed at the end.

Not a `main()`: `python -m bench` runs every module's `main`, and this one needs two commits.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from devserver.processes import stop_process

REPO = Path(__file__).resolve().parent.parent
RUN_TIMEOUT_S = 1800.0  # one benchmark run of one commit
INSTALL_TIMEOUT_S = 1800.0

# Run in a commit's worktree with its venv: import its bench module, set its constants, run it.
DRIVER = """
import importlib, json, sys
name, sizes = sys.argv[1], json.loads(sys.argv[2])
module = importlib.import_module("bench." + name)
for key, value in sizes.items():
    if not hasattr(module, key):
        sys.exit(f"bench.{name} has no {key} to set")
    setattr(module, key, value)
module.main()
"""


@dataclass(frozen=True)
class Metric:
    name: str
    bench: str  # the bench module that prints it
    pattern: str  # a regex over one line of its output; group 1 is the figure
    higher_is_better: bool = False

    def read(self, output: str) -> float | None:
        match = re.search(self.pattern, output, re.MULTILINE)
        return float(match.group(1)) if match else None


_NUM = r"(\d+(?:\.\d+)?)"
_LATENCY_ROW = r"^\s+{label}\s+{path}.*\s" + _NUM + r"\s+\d+(?:\.\d+)?\s*$"  # "<label> <path...> p50 p99"
METRICS = (
    Metric("latency live p50, ms", "live", _LATENCY_ROW.format(label="live", path="boto3 -> cloud -> stub")),
    Metric("latency live p99, ms", "live", r"^\s+live\s+boto3 -> cloud -> stub.*\s\d+\.\d+\s+(\d+\.\d+)\s*$"),
    Metric("latency live off p50, ms", "live", _LATENCY_ROW.format(label="live off", path="boto3")),
    Metric("latency relay p50, ms", "live", _LATENCY_ROW.format(label="relay", path="A -> websockets")),
    Metric("latency worker hop p50, ms", "live", _LATENCY_ROW.format(label="worker hop", path="Runtime API")),
    Metric("live / (off + relay + hop)", "live", r"worker hop p50\) = .* = " + _NUM),
    Metric("live / (off + relay)", "live", r"^\s+live p50 / \(live-off p50 \+ relay p50\) = .* = " + _NUM),
    Metric("throughput live, /s", "live", r"^\s+live\s+" + _NUM + r" invocations/s", higher_is_better=True),
    Metric("throughput live p50, ms", "live", r"^\s+live\s+\d+ invocations/s\s+p50\s+" + _NUM + " ms"),
    Metric("throughput relay, /s", "live", r"^\s+relay\s+" + _NUM + r" round trips/s", higher_is_better=True),
    Metric("idle dev server VmRSS, MB", "live", r"^\s+dev server \(idle\)\s+" + _NUM),
    Metric("reload fork p50, ms", "reload", r"^fork\s+" + _NUM + r"\s"),
    Metric("reload spawn p50, ms", "reload", r"^spawn\s+" + _NUM + r"\s"),
    Metric("reload / cold import", "reload", r"^reload p50 / cold import p50 = .* = " + _NUM + "x"),
)


@dataclass
class Side:
    label: str  # "A" or "B"
    commit: str  # the full sha
    subject: str
    tree: Path

    @property
    def python(self) -> Path:
        return self.tree / ".venv" / "bin" / "python"


def git(*args: str, repo: Path = REPO) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def clean_env() -> dict[str, str]:
    """Nothing that would point a commit's processes at another checkout or venv."""
    drop = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "MAKEFLAGS", "MAKELEVEL")
    ours = ("AWS_", "LIVELAMBDA_")
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith(ours)}


def checkout(label: str, ref: str, root: Path) -> Side:
    """`ref` in a new worktree under `root` (detached: A and B may be the same commit)."""
    commit = git("rev-parse", "--verify", f"{ref}^{{commit}}").strip()
    subject = git("log", "-1", "--format=%s", commit).strip()
    tree = root / label
    git("worktree", "add", "--detach", str(tree), commit)
    print(f"{label} = {commit[:12]} {subject[:70]}\n    worktree {tree}", flush=True)
    return Side(label, commit, subject, tree)


def install(side: Side, python: str, log: Path) -> None:
    """The commit's own venv, made by its own Makefile."""
    started = time.monotonic()
    with log.open("wb") as out:
        make = ["make", "-C", str(side.tree), "install-test", f"PYTHON={python}"]
        done = subprocess.run(
            make, stdout=out, stderr=subprocess.STDOUT, env=clean_env(), timeout=INSTALL_TIMEOUT_S
        )
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"make install-test failed for {side.label}:\n{tail}")
    print(f"    {side.label}: make install-test {time.monotonic() - started:.0f} s (log: {log})", flush=True)


def remove(side: Side) -> None:
    try:
        git("worktree", "remove", "--force", str(side.tree))
    except subprocess.CalledProcessError:
        shutil.rmtree(side.tree, ignore_errors=True)
        git("worktree", "prune")


def run_bench(side: Side, bench: str, sizes: dict[str, float], log: Path) -> str:
    """One benchmark of one commit, in its worktree with its venv; what it printed."""
    with log.open("wb") as out:
        proc = subprocess.Popen([str(side.python), "-c", DRIVER, bench, json.dumps(sizes)], cwd=side.tree,
                                stdout=out, stderr=subprocess.STDOUT, env=clean_env(),
                                start_new_session=True)  # fmt: skip
        try:
            code = proc.wait(timeout=RUN_TIMEOUT_S)
        finally:  # interrupted or timed out: the benchmark stops its servers on SIGINT, as on Ctrl+C
            stop_process(proc, signal.SIGINT, 30.0, group=True)
    output = log.read_text(errors="replace")
    if code != 0:
        raise RuntimeError(f"{side.label}: bench.{bench} exited {code}:\n{output[-3000:]}")
    return output


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}" if abs(value) < 1000 else f"{value:.0f}"


Figures = dict[str, dict[str, list[float | None]]]  # side -> metric -> its figure in each round


def measure(side: Side, bench: str, sizes: dict[str, float], log: Path, figures: Figures) -> str:
    """Run one benchmark of one commit and keep its figures; a line saying how it went."""
    started = time.monotonic()
    output = run_bench(side, bench, sizes, log)
    for metric in METRICS:
        if metric.bench == bench:
            figures[side.label][metric.name].append(metric.read(output))
    key = {"live": "latency live p50, ms", "reload": "reload fork p50, ms"}[bench]
    took = time.monotonic() - started
    return f"{side.label} bench.{bench} {took:4.0f} s ({key} {fmt(figures[side.label][key][-1])})"


def report(figures: Figures, rounds: int) -> None:
    print(f"\nper metric: median of {rounds} rounds [min .. max]; B/A of the medians; "
          f"paired: the median of the rounds' B/A")  # fmt: skip
    print(f"{'metric':<30} {'A median':>9} {'[range]':<20} {'B median':>9} {'[range]':<20} {'B/A':>6} "
          f"{'paired':>7}  better")  # fmt: skip
    for metric in METRICS:
        cells, medians = [], []
        for side in ("A", "B"):
            values = [v for v in figures[side][metric.name] if v is not None]
            medians.append(statistics.median(values) if values else None)
            spread = f"[{fmt(min(values))} .. {fmt(max(values))}]" if values else ""
            cells.append(f"{fmt(medians[-1]):>9} {spread:<20}")
        ma, mb = medians
        pairs = zip(figures["A"][metric.name], figures["B"][metric.name], strict=False)
        ratios = [b / a for a, b in pairs if a and b is not None]
        ratio = f"{mb / ma:.3f}" if ma and mb is not None else "-"
        per_round = f"{statistics.median(ratios):.3f}" if ratios else "-"
        better = "higher" if metric.higher_is_better else "lower"
        print(f"{metric.name:<30} {cells[0]} {cells[1]} {ratio:>6} {per_round:>7}  {better}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.split("\n\n")[0])
    parser.add_argument("a", help="commit A (the before), anything git rev-parse takes")
    parser.add_argument("b", help="commit B (the after)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, each running both commits (5)")
    parser.add_argument("--samples", type=int, default=200, help="bench.live's latency samples a path (200)")
    parser.add_argument("--seconds", type=float, default=5.0, help="bench.live's throughput window, s (5)")
    parser.add_argument("--edits", type=int, default=10, help="bench.reload's measured edits a variant (10)")
    parser.add_argument("--only", choices=("live", "reload"), action="append",
                        help="run only this benchmark (repeatable; default both)")  # fmt: skip
    parser.add_argument("--python", default=os.path.realpath(sys.executable),
                        help="the interpreter the venvs are made from (default: this one's)")  # fmt: skip
    parser.add_argument("--logs", type=Path, help="where to keep every run's output (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.samples < 10 or args.samples % 10:
        parser.error("--samples: a multiple of 10 (bench.live measures in batches of 10)")
    if args.rounds < 1 or args.edits < 1 or args.seconds <= 0:
        parser.error("--rounds, --edits and --seconds must be positive")
    return args


def cli(argv: list[str]) -> int:
    args = parse_args(argv)
    benches = {
        "live": {"SAMPLES": args.samples, "DURATION_S": args.seconds},
        "reload": {"EDITS": args.edits},
    }
    benches = {k: v for k, v in benches.items() if not args.only or k in args.only}
    logs = args.logs or Path(tempfile.mkdtemp(prefix="livelambda-ab-logs-"))
    logs.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="livelambda-ab-"))
    started = time.monotonic()
    sides: list[Side] = []
    figures: Figures = {side: {m.name: [] for m in METRICS} for side in ("A", "B")}
    try:
        for label, ref in (("A", args.a), ("B", args.b)):
            sides.append(checkout(label, ref, root))
            install(sides[-1], args.python, logs / f"install-{label}.log")
        sizes = "; ".join(
            f"bench.{k} {', '.join(f'{n}={v}' for n, v in s.items())}" for k, s in benches.items()
        )
        print(f"{args.rounds} rounds of: {sizes}; commits interleaved, order swapped every round", flush=True)
        for r in range(args.rounds):
            for bench, bench_sizes in benches.items():
                for side in sides if r % 2 == 0 else sides[::-1]:
                    log = logs / f"round{r + 1}-{side.label}-{bench}.log"
                    said = measure(side, bench, bench_sizes, log, figures)
                    print(f"round {r + 1}/{args.rounds}: {said}", flush=True)
    finally:
        for side in sides:
            remove(side)
        shutil.rmtree(root, ignore_errors=True)
    report(figures, args.rounds)
    print(f"A = {sides[0].commit[:12]}, B = {sides[1].commit[:12]}; logs in {logs}; "
          f"{time.monotonic() - started:.0f} s in all")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
