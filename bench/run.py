"""``python -m bench.run [--smoke]``: measure monolith against its ceiling and the seed stack.

Each round starts every system in turn (the order rotates between rounds so no system always
runs on a warmer or cooler machine), measures each case it supports, and stops it. Per HTTP
case: a warm-up, a saturating run (the maximum), then a run paced at half that maximum (the
latency a user sees on a busy but healthy server). Memory is sampled over the workers.

Writes ``bench/results/<profile>.json`` and ``.png`` (or under ``--out``), prints a Markdown
table, and exits non-zero when any measured request failed (``--smoke`` exists to check that
every case runs cleanly, not how fast).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import report, scale, wrk
from bench.cases import ORDER, PRODUCT_CREATE, SCALE, Case, build, fill
from bench.monolith_system import Monolith
from bench.peers.seed.system import Seed
from bench.procs import RssSampler, Server, ServerFailed, cpu_seconds
from bench.system import Ceiling, Hello, NotAvailable, RunContext, System

RESULTS = Path(__file__).parent / "results"
_T0 = time.monotonic()


def say(message: str) -> None:
    """Progress on stderr, with seconds since the start (stdout is the table)."""
    print(f"bench [{time.monotonic() - _T0:5.0f}s] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Profile:
    name: str
    rounds: int
    warmup: float  # seconds, discarded
    seconds: float  # saturating run
    paced: float  # run at half of the maximum
    connections: int
    jobs: int  # no-op jobs per measurement


FULL = Profile("bench", rounds=3, warmup=2, seconds=5, paced=4, connections=64, jobs=20_000)
SMOKE = Profile("smoke", rounds=1, warmup=1, seconds=1, paced=1, connections=16, jobs=300)


def measure_http(
    system: System, server: Server, case: Case, p: Profile, ctx: RunContext, wrk_bin: str
) -> dict[str, Any]:
    pool = ctx.workdir / f"{system.key}-{case.key}.pool"
    wrk.write_pool(pool, [(w, fill(r, server.params)) for w, r in case.mix], ctx.products)
    with RssSampler(server.rss_roots()) as rss:
        warm = None
        if p.warmup:
            warm = wrk.run(wrk_bin, server.url, pool, p.warmup, p.connections, workdir=ctx.workdir)
        roots = [pid for pids in server.rss_roots().values() for pid in pids]
        cpu_before = cpu_seconds(roots)
        best = wrk.run(wrk_bin, server.url, pool, p.seconds, p.connections, workdir=ctx.workdir)
        cpu = cpu_seconds(roots) - cpu_before
        rate = max(best.rps / 2, 1.0)
        paced = wrk.run(wrk_bin, server.url, pool, p.paced, 0, rate=rate, workdir=ctx.workdir)
    server.check_alive()
    return {
        "max": best.as_dict(),
        "paced": {**paced.as_dict(), "target_rate": round(rate, 1)},
        "errors": (warm.error_count if warm else 0) + best.error_count + paced.error_count,
        # CPU of the system's own processes per request: steadier than req/s on a shared
        # machine, but it leaves out PostgreSQL and Redis (the seed stack's servers).
        "cpu_us_per_req": round(cpu / best.requests * 1e6, 1) if best.requests else None,
        "rss_mb": rss.peak_mb("web"),
        "rss_jobs_mb": rss.peak_mb("jobs"),
    }


def measure_jobs(system: System, server: Server, p: Profile) -> dict[str, Any]:
    system.jobs_per_second(server, max(p.jobs // 10, 50))  # warm-up
    with RssSampler(server.rss_roots()) as rss:
        rate = system.jobs_per_second(server, p.jobs)
    server.check_alive()
    return {"jobs_per_s": round(rate, 1), "errors": 0, "rss_mb": rss.peak_mb("web"),
            "rss_jobs_mb": rss.peak_mb("jobs")}  # fmt: skip


def measure_scale(p: Profile) -> dict[str, Any]:
    """The data-scale case: in-process, on databases of its own (``bench.scale``)."""
    say("data scale: filling and measuring both sizes")
    try:
        return {"scale": scale.measure(smoke=p.name == SMOKE.name)}
    except (RuntimeError, subprocess.SubprocessError) as exc:
        return {"na": f"failed: {str(exc).splitlines()[0]}", "failed": True}


def why_not(system: System, case: Case) -> str | None:
    if case.is_jobs and not system.has_jobs:
        return "no job queue"
    if isinstance(system, Monolith):
        return system.missing.get(case.key)
    return None


def run_round(
    rnd: int, systems: list[System], cases: list[Case], p: Profile, ctx: RunContext, wrk_bin: str
) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    order = systems[rnd % len(systems) :] + systems[: rnd % len(systems)]
    for system in order:
        todo: dict[str, list[Case]] = {}
        for case in cases:
            if system.key not in case.systems:
                continue
            reason = why_not(system, case)
            if reason:
                runs.append({"round": rnd, "system": system.key, "case": case.key, "na": reason})
                continue
            variant = case.variant if case.variant in system.variants else "default"
            todo.setdefault(variant, []).append(case)
        for variant, group in todo.items():
            say(f"starting {system.key} ({variant})")
            try:
                server = system.start(variant, ctx)
            except (ServerFailed, NotAvailable) as exc:
                for case in group:
                    runs.append({"round": rnd, "system": system.key, "case": case.key,
                                 "na": f"did not start: {str(exc).splitlines()[0]}"})  # fmt: skip
                continue
            try:
                for case in group:
                    say(f"round {rnd + 1}/{p.rounds}: {system.key} {case.key}")
                    entry: dict[str, Any] = {"round": rnd, "system": system.key, "case": case.key}
                    try:
                        if case.is_jobs:
                            entry |= measure_jobs(system, server, p)
                        else:
                            entry |= measure_http(system, server, case, p, ctx, wrk_bin)
                    except (wrk.WrkFailed, ServerFailed, NotAvailable) as exc:
                        entry |= {"na": f"failed: {str(exc).splitlines()[0]}", "failed": True}
                    runs.append(entry)
            finally:
                server.stop()
    return runs


def versions() -> dict[str, str]:
    names = [
        "litestar",
        "granian",
        "fastapi",
        "uvicorn",
        "sqlalchemy",
        "asyncpg",
        "redis",
        "arq",
        "uvloop",
    ]
    found = {"python": platform.python_version()}
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--smoke", action="store_true", help="a few seconds per case; checks it runs"
    )
    parser.add_argument("--rounds", type=int, help="repeats of every case (default 3; smoke 1)")
    parser.add_argument("--seconds", type=float, help="length of each measured run")
    parser.add_argument("--systems", help="comma-separated subset of ceiling,hello,monolith,seed")
    parser.add_argument("--cases", help="comma-separated subset of the case keys")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON and PNG go")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (server logs)")
    args = parser.parse_args(argv)

    p = SMOKE if args.smoke else FULL
    if args.rounds:
        p = replace(p, rounds=args.rounds)
    if args.seconds:
        p = replace(p, seconds=args.seconds, paced=args.seconds)
    wrk_bin = wrk.ensure_wrk()
    ctx = RunContext(Path(tempfile.mkdtemp(prefix="monolith-bench-")), workers=2)
    all_systems: list[System] = [Monolith(), Seed(), Hello(), Ceiling()]
    if args.systems:
        all_systems = [s for s in all_systems if s.key in args.systems.split(",")]
    started = time.time()
    load_before = os.getloadavg()
    if not args.smoke and load_before[0] > 1.0:
        say(f"the machine is busy (load {load_before[0]:.1f}); numbers will be noisy")

    unavailable: dict[str, str] = {}
    runs: list[dict[str, Any]] = []
    systems: list[System] = []
    monolith = next((s for s in all_systems if isinstance(s, Monolith)), None)
    try:
        for system in all_systems:
            say(f"setting up {system.key}")
            try:
                system.setup(ctx)
                systems.append(system)
            except (NotAvailable, ServerFailed) as exc:
                unavailable[system.key] = str(exc).splitlines()[0]
                say(f"{system.key} not available: {unavailable[system.key]}")
        orders = monolith is None or "monolith" in unavailable or monolith.orders
        cases = build(ORDER if orders else PRODUCT_CREATE)
        if args.cases:
            cases = [c for c in cases if c.key in args.cases.split(",")]
        for key, reason in unavailable.items():
            runs += [{"round": 0, "system": key, "case": c.key, "na": reason} for c in cases]
        for rnd in range(p.rounds):
            runs += run_round(rnd, systems, cases, p, ctx, wrk_bin)
    finally:
        for system in all_systems:
            try:
                system.teardown()
            except Exception:
                traceback.print_exc()
        if args.keep:
            say(f"logs kept in {ctx.workdir}")
        else:
            shutil.rmtree(ctx.workdir, ignore_errors=True)

    summary = report.summarize(cases, runs)
    scaled = None
    if not args.cases or SCALE in args.cases.split(","):
        scaled = measure_scale(p)
        summary.append(report.scale_entry(scaled))
    meta = {
        "profile": asdict(p),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "seconds": round(time.time() - started, 1),
        "cpus": os.cpu_count(),
        "workers": ctx.workers,
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "machine": platform.platform(),
        "versions": versions(),
        "unavailable": unavailable,
    }
    json_path = args.out / f"{p.name}.json"
    report.write_json(json_path, meta, runs, summary)
    report.chart(
        args.out / f"{p.name}.png", summary, f"monolith bench ({p.name}), {meta['started']}"
    )
    print(report.markdown(summary))
    print(
        f"\nbench: {meta['seconds']:.0f} s; wrote {json_path} and {json_path.with_suffix('.png')}"
    )
    failed = [r for r in runs if r.get("failed") or r.get("errors")]
    if scaled is not None and scaled.get("failed"):
        failed.append({"system": "monolith", "case": SCALE, "round": 0, **scaled})
    for r in failed:
        what = r.get("na") or f"{r['errors']} failed requests"
        say(f"FAILED: {r['system']} {r['case']} round {r['round'] + 1}: {what}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
