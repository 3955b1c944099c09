"""``monolith jobs ...``: inspect and repair the job queue, and enqueue jobs by name.

These commands never run jobs (``serve`` or ``monolith worker`` do); they read and change the
queue table through the same interface the app uses.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from monolith.cli.common import add_json_flag, emit, fail, run, settings_from_env, started_services
from monolith.jobqueue.base import STATES, Job
from monolith.jobs import Jobs


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("jobs", help="inspect and repair the job queue", description=__doc__)
    jobs = p.add_subparsers(dest="jobs_command", metavar="SUBCOMMAND", required=True)

    ls = jobs.add_parser("list", help="list jobs, newest first")
    ls.add_argument("--state", choices=STATES, help="only jobs in this state")
    ls.add_argument("--queue", help="only jobs of this queue")
    ls.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    add_json_flag(ls)
    ls.set_defaults(func=cmd_list)

    st = jobs.add_parser("stats", help="jobs per state, runners, and whether jobs progress")
    add_json_flag(st)
    st.set_defaults(func=cmd_stats)

    for name, verb, func in (
        ("retry", "run a failed, cancelled or waiting job again now", cmd_retry),
        ("discard", "delete a job that is not running", cmd_discard),
        ("cancel", "cancel a queued job, or tell a running one to stop", cmd_cancel),
    ):
        c = jobs.add_parser(name, help=verb)
        c.add_argument("id", type=int, metavar="ID")
        add_json_flag(c)
        c.set_defaults(func=func)

    qs = jobs.add_parser("queues", help="queues: paused or not, their limit, jobs per state")
    add_json_flag(qs)
    qs.set_defaults(func=cmd_queues)

    for name, verb, func in (
        ("pause", "stop handing out jobs of a queue, on every runner, until resumed", cmd_pause),
        ("resume", "hand out jobs of a paused queue again", cmd_resume),
    ):
        c = jobs.add_parser(name, help=verb)
        c.add_argument("queue", metavar="QUEUE")
        add_json_flag(c)
        c.set_defaults(func=func)

    enq = jobs.add_parser("enqueue", help="enqueue jobs by name (ops.ping checks the runner)")
    enq.add_argument("name", metavar="NAME")
    enq.add_argument("--payload", default="null", help="the payload as JSON (default null)")
    enq.add_argument("--count", type=int, default=1, help="how many jobs (default 1)")
    enq.add_argument("--delay", type=float, default=0.0, help="seconds before they are due")
    enq.add_argument("--priority", type=int, default=0, help="higher runs first (default 0)")
    enq.add_argument(
        "--unique-key", help="skip a job whose key is held (queued, running, or kept after success)"
    )
    add_json_flag(enq)
    enq.set_defaults(func=cmd_enqueue)


def _with_jobs(action: Callable[[Jobs[Any]], Awaitable[Any]]) -> Any:
    settings = settings_from_env()

    async def go() -> Any:
        async with started_services(settings) as svc:
            return await action(svc.jobs)

    return run(go())


def _ago(ts: float | None, now: float) -> str:
    if ts is None:
        return "-"
    delta = ts - now
    return f"in {delta:.0f}s" if delta > 0 else f"{-delta:.0f}s ago"


def _table(jobs: list[dict[str, Any]]) -> str:
    if not jobs:
        return "no jobs"
    now = time.time()
    lines = [f"{'ID':>8}  {'STATE':<9} {'TRIES':>5}  {'DUE':>10}  {'QUEUE':<10} NAME / LAST ERROR"]
    for j in jobs:
        error = f"  {j['last_error'][:80]}" if j["last_error"] else ""
        lines.append(
            f"{j['id']:>8}  {j['state']:<9} {j['attempts']:>2}/{j['max_attempts']:<2}  "
            f"{_ago(j['run_at'], now):>10}  {j['queue']:<10} {j['name']}{error}"
        )
    return "\n".join(lines)


def cmd_list(args: argparse.Namespace) -> int:
    if args.limit < 1:
        return fail("jobs list", "--limit must be at least 1")
    jobs: list[Job] = _with_jobs(
        lambda j: j.queue.list(args.state, limit=args.limit, queue=args.queue)
    )
    emit(args, [job.as_dict() for job in jobs], _table)
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    async def collect(jobs: Jobs[Any]) -> dict[str, Any]:
        stats = await jobs.queue.stats()
        healthy, reason = await jobs.health()
        return {
            "counts": stats.counts,
            "oldest_due_at": stats.oldest_due_at,
            "healthy": healthy,
            "health": reason,
            "runners": [vars(r) if hasattr(r, "__dict__") else _runner(r) for r in stats.runners],
            "queues": await jobs.queues(),
        }

    data = _with_jobs(collect)

    def human(d: dict[str, Any]) -> str:
        now = time.time()
        lines = ["  ".join(f"{state}={n}" for state, n in d["counts"].items())]
        lines.append(f"health: {d['health']}")
        for q in d["queues"]:
            limit = "" if q["limit"] is None else f", limit {q['limit']}"
            counts = " ".join(f"{k}={v}" for k, v in q["counts"].items() if v)
            state = "paused" if q["paused"] else "active"
            lines.append(f"queue {q['name']}: {state}{limit}; {counts or 'empty'}")
        for r in d["runners"]:
            lines.append(
                f"runner {r['id']}: seen {_ago(r['seen_at'], now)}, "
                f"last progress {_ago(r['progress_at'], now)}, {r['completed']} completed"
            )
        return "\n".join(lines)

    emit(args, data, human)
    return 0


def _runner(r: Any) -> dict[str, Any]:
    return {name: getattr(r, name) for name in r.__slots__}


_REPAIRS: dict[str, tuple[str, Callable[[Jobs[Any], int], Awaitable[Job | None]]]] = {
    "retry": ("retried", lambda jobs, job_id: jobs.queue.retry(job_id)),
    "discard": ("discarded", lambda jobs, job_id: jobs.queue.discard(job_id)),
    "cancel": ("cancelled", lambda jobs, job_id: jobs.queue.cancel(job_id)),
}


def _repair(args: argparse.Namespace, verb: str) -> int:
    past, action = _REPAIRS[verb]

    async def act(jobs: Jobs[Any]) -> tuple[Job | None, Job | None]:
        done = await action(jobs, args.id)
        return done, (None if done else await jobs.queue.get(args.id))

    done, existing = _with_jobs(act)
    command = f"jobs {verb}"
    if done is None:
        if existing is None:
            return fail(command, f"job {args.id} not found")
        return fail(command, f"job {args.id} is {existing.state}; it cannot be {past} now")

    def human(j: dict[str, Any]) -> str:
        if verb == "cancel" and j["state"] == "running":
            return f"job {j['id']} ({j['name']}) is running; its runner tells it to stop"
        return f"job {j['id']} ({j['name']}) {past}"

    emit(args, done.as_dict(), human)
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    return _repair(args, "retry")


def cmd_discard(args: argparse.Namespace) -> int:
    return _repair(args, "discard")


def cmd_cancel(args: argparse.Namespace) -> int:
    return _repair(args, "cancel")


def cmd_queues(args: argparse.Namespace) -> int:
    async def collect(jobs: Jobs[Any]) -> list[dict[str, Any]]:
        return await jobs.queues()

    def human(rows: list[dict[str, Any]]) -> str:
        lines = [f"{'QUEUE':<16} {'STATE':<8} {'LIMIT':>5}  JOBS"]
        for q in rows:
            counts = "  ".join(f"{k}={v}" for k, v in q["counts"].items())
            limit = "-" if q["limit"] is None else str(q["limit"])
            state = "paused" if q["paused"] else "active"
            lines.append(f"{q['name']:<16} {state:<8} {limit:>5}  {counts}")
        return "\n".join(lines)

    emit(args, _with_jobs(collect), human)
    return 0


def _pause(args: argparse.Namespace, paused: bool) -> int:
    queue = args.queue.strip()
    if not queue or len(queue) > 200:
        return fail("jobs pause" if paused else "jobs resume", "QUEUE must be 1-200 characters")

    async def act(jobs: Jobs[Any]) -> None:
        await jobs.queue.pause(queue, paused)

    _with_jobs(act)
    state = "paused" if paused else "resumed"
    emit(args, {"queue": queue, "paused": paused}, lambda d: f"queue {d['queue']} {state}")
    return 0


def cmd_pause(args: argparse.Namespace) -> int:
    return _pause(args, True)


def cmd_resume(args: argparse.Namespace) -> int:
    return _pause(args, False)


def cmd_enqueue(args: argparse.Namespace) -> int:
    try:
        payload = json.loads(args.payload)
    except json.JSONDecodeError as exc:
        return fail("jobs enqueue", f"--payload is not valid JSON: {exc}")
    if args.count < 1:
        return fail("jobs enqueue", "--count must be at least 1")

    async def add(jobs: Jobs[Any]) -> list[int | None]:
        jobs.registry.get(args.name)  # unknown names fail before anything is written
        ids: list[int | None] = []
        async with jobs.db.transaction() as tx:
            for _ in range(args.count):
                ids.append(
                    await jobs.enqueue(
                        args.name,
                        payload,
                        delay=args.delay,
                        priority=args.priority,
                        unique_key=args.unique_key,
                        tx=tx,
                    )
                )
        return ids

    ids = _with_jobs(add)
    emit(
        args,
        {"name": args.name, "ids": ids},
        lambda d: (
            f"enqueued {len(d['ids'])} {d['name']} job(s)"
            + (f": ids {d['ids'][0]}..{d['ids'][-1]}" if d["ids"] else "")
        ),
    )
    return 0
