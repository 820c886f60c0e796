"""Hot reload, measured side by side in one run (printed, never asserted).

"Save to new code": from the moment a handler file is written to the first response computed by the
new code, through the real watcher (watchfiles, step 10 ms) and the runner. Invocations are sent back
to back from the write on, as a developer's requests would arrive: those that arrive before the
watcher has reported the change run the old code (its latency counts), and every invocation that
arrives after it runs the new code (it waits for the new generation's warm worker). The handler
imports boto3; each edit changes one constant, the file keeping its size (as a quick fix does).

Variants, interleaved edit by edit (the machine is shared and noisy):
  fork        workers forked from one warm forkserver that survives reloads (the default)
  fork/gen    a new forkserver for every generation, then a fork from it
  spawn       a fresh interpreter per worker (SubprocessLauncher)
  cold import `python -c "import app"` for the same handler module: what a fresh process pays

    python -m bench.reload
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.stats import pct

EDITS = 25  # measured edits per variant
WARMUP_EDITS = 3  # not measured: the forkserver learns what the handler imports
SETTLE_S = 0.05  # between edits: let the old generation's worker exit
TARGET_RATIO = 0.3

HANDLER = """
    import json
    import boto3

    VERSION = "v0000"

    def handler(event, context):
        return {"version": VERSION}
"""

VARIANTS = {
    "fork": {"launcher": "fork", "forkserver": "reuse"},
    "fork/gen": {"launcher": "fork", "forkserver": "per_generation"},
    "spawn": {"launcher": "spawn"},
}


@dataclass
class Variant:
    name: str
    root: Path
    options: dict[str, Any]  # Runner keyword arguments
    runner: Any = None  # a Runner, a Watcher: imported when the bench starts, not with this module
    watcher: Any = None
    task: asyncio.Task[None] | None = None
    edits: int = 0
    seen_at: float | None = None  # when the watcher reported the last edit
    save_to_new: list[float] = field(default_factory=list)  # ms
    watcher_ms: list[float] = field(default_factory=list)
    stale: list[float] = field(default_factory=list)  # old-code answers per edit
    init_ms: list[float] = field(default_factory=list)  # the new worker's init
    kinds: set[str] = field(default_factory=set)

    @property
    def source(self) -> Path:
        return self.root / "src"

    def write(self, version: str) -> None:
        text = textwrap.dedent(HANDLER).replace("v0000", version)
        (self.source / "app.py").write_text(text)


async def start(variant: Variant) -> None:
    from devserver.config import load_config
    from devserver.reload.generations import Runner
    from devserver.reload.watcher import Watcher

    variant.source.mkdir(parents=True)
    variant.write("v0000")
    (variant.root / "livelambda.toml").write_text(
        '[functions.bench]\nhandler = "app.handler"\nsource = "src"\ntimeout = 30\n'
    )
    app = load_config(variant.root)
    runner = Runner(app, **variant.options)

    async def on_change(functions: set[str], config_changed: bool) -> None:
        variant.seen_at = time.perf_counter()
        for name in functions:
            await runner.reload_function(name, "bench edit")

    watcher = Watcher(app, on_change=on_change)
    variant.runner, variant.watcher = runner, watcher
    await runner.start()
    variant.task = asyncio.ensure_future(watcher.run())
    await watcher.wait_watching()
    await invoke(variant)


async def invoke(variant: Variant) -> tuple[str, Any]:
    from devserver.runtime.invocation import InvocationRequest

    outcome = await variant.runner.invoke("bench", InvocationRequest(payload=b"{}"))
    if outcome.status != "ok":
        raise RuntimeError(f"{variant.name}: {outcome.status} {outcome.payload[:300]!r}\n{outcome.logs}")
    return json.loads(outcome.payload)["version"], outcome


async def edit(variant: Variant, measure: bool) -> None:
    variant.edits += 1
    version = f"v{variant.edits:04d}"
    variant.seen_at = None
    started = time.perf_counter()
    variant.write(version)
    stale = 0
    while True:
        got, outcome = await invoke(variant)
        if got == version:
            break
        stale += 1
        if time.perf_counter() - started > 30:
            raise RuntimeError(f"{variant.name}: the new code never answered (still {got})")
    done = time.perf_counter()
    if measure:
        variant.save_to_new.append((done - started) * 1000)
        if variant.seen_at is not None:
            variant.watcher_ms.append((variant.seen_at - started) * 1000)
        variant.stale.append(stale)
        if outcome.init_duration_ms is not None:
            variant.init_ms.append(outcome.init_duration_ms)
        variant.kinds.add(outcome.launcher)
    await variant.runner.functions["bench"].wait_loaded(30)
    await asyncio.sleep(SETTLE_S)


async def stop(variant: Variant) -> None:
    if variant.watcher is not None:
        await variant.watcher.close()
    if variant.task is not None:
        await asyncio.wait_for(variant.task, 10)
    if variant.runner is not None:
        await variant.runner.close()


def cold_import(source: Path) -> float:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import app"], cwd=source, env=env, check=True)
    return (time.perf_counter() - started) * 1000


async def run(root: Path) -> dict[str, Variant]:
    variants = {
        name: Variant(name, root / name.replace("/", "-"), dict(opts)) for name, opts in VARIANTS.items()
    }
    cold: list[float] = []
    try:
        await asyncio.gather(*(start(v) for v in variants.values()))
        for _ in range(WARMUP_EDITS):
            for variant in variants.values():
                await edit(variant, measure=False)
        for _ in range(EDITS):
            for variant in variants.values():
                await edit(variant, measure=True)
            cold.append(await asyncio.to_thread(cold_import, variants["fork"].source))
    finally:
        await asyncio.gather(*(stop(v) for v in variants.values()), return_exceptions=True)
    variants["cold import"] = Variant("cold import", root, {}, save_to_new=cold)
    return variants


def report(variants: dict[str, Variant]) -> None:
    cold = statistics.median(variants["cold import"].save_to_new)
    print(
        f"save to new code: file write -> first response from the new code, via watcher + runner; "
        f"handler imports boto3; {EDITS} edits per variant, interleaved; ms"
    )
    # These rows and the ratio below: bench/ab.py reads them.
    print(f"{'variant':<12} {'p50':>8} {'p99':>8} {'watcher p50':>12} {'init p50':>9} {'x cold import':>14}")
    for name, variant in variants.items():
        values = variant.save_to_new
        watcher = f"{statistics.median(variant.watcher_ms):.1f}" if variant.watcher_ms else "-"
        init = f"{statistics.median(variant.init_ms):.1f}" if variant.init_ms else "-"
        ratio = statistics.median(values) / cold
        print(
            f"{name:<12} {statistics.median(values):8.1f} {pct(values, 0.99):8.1f} {watcher:>12} "
            f"{init:>9} {ratio:13.2f}x"
        )
    fork = statistics.median(variants["fork"].save_to_new)
    spawn = statistics.median(variants["spawn"].save_to_new)
    per_gen = statistics.median(variants["fork/gen"].save_to_new)
    ratio = fork / cold
    verdict = "meets" if ratio <= TARGET_RATIO else "MISSES"
    print(
        f"reload p50 / cold import p50 = {fork:.1f} / {cold:.1f} ms = {ratio:.2f}x "
        f"({verdict} the target <= {TARGET_RATIO}x)"
    )
    print(f"fork vs spawn launcher: {fork:.1f} vs {spawn:.1f} ms p50 = {fork / spawn:.2f}x")
    print(f"forkserver surviving reloads vs one per generation: {fork:.1f} vs {per_gen:.1f} ms p50")
    stale = variants["fork"].stale
    print(
        f"old-code answers between the write and the new code (fork): "
        f"p50 {statistics.median(stale):.0f}, max {max(stale):.0f}"
    )
    kinds = {name: sorted(v.kinds) for name, v in variants.items() if v.kinds}
    print(f"workers that served the new code: {kinds}")


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="livelambda-bench-reload-"))
    started = time.monotonic()
    try:
        variants = asyncio.run(run(root))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report(variants)
    print(f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
