"""Turning runs into results: medians per case and system, ratios, targets, table, chart.

Absolute numbers drift on a shared machine; the ratios (monolith / Litestar hello, monolith /
seed stack, measured in the same run, interleaved) are what the project claims. Must never
hide a failure: a run with errors, a missing system or a missed target is shown as such.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bench.cases import Case

SYSTEMS = ("ceiling", "hello", "monolith", "seed")
LABELS = {
    "ceiling": "bare ASGI",
    "hello": "Litestar hello",
    "monolith": "monolith",
    "seed": "seed stack",
}
RSS_LIMIT_MB = 100


def _median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None


def _cell(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One case on one system: medians over rounds, errors summed, memory peaked."""
    done = [r for r in runs if "na" not in r]
    if not done:
        return {"na": runs[0]["na"] if runs else "not run"}
    errors = sum(r.get("errors", 0) for r in done)
    rss = [r["rss_mb"] for r in done if r.get("rss_mb") is not None]
    cell: dict[str, Any] = {"rounds": len(done), "errors": errors, "rss_mb": max(rss, default=None)}
    jobs_rss = [r["rss_jobs_mb"] for r in done if r.get("rss_jobs_mb") is not None]
    if jobs_rss:
        cell["rss_jobs_mb"] = max(jobs_rss)
    if "jobs_per_s" in done[0]:
        cell["rate"] = _median(r["jobs_per_s"] for r in done)
        return cell
    cell["rate"] = _median(r["max"]["rps"] for r in done)
    for key in ("p50_ms", "p99_ms"):
        cell[key] = _median(r["max"][key] for r in done)
        cell[f"paced_{key}"] = _median(r["paced"][key] for r in done if r.get("paced"))
    cell["paced_rate"] = _median(r["paced"]["rps"] for r in done if r.get("paced"))
    cell["cpu_us_per_req"] = _median(r.get("cpu_us_per_req") for r in done)
    return cell


def _ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> float | None:
    if not a or not b or not a.get("rate") or not b.get("rate"):
        return None
    return round(a["rate"] / b["rate"], 3)


def summarize(cases: Sequence[Case], runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for case in cases:
        ran = {r["system"] for r in runs}
        cells = {
            s: _cell([r for r in runs if r["case"] == case.key and r["system"] == s])
            for s in SYSTEMS
            if s in case.systems and s in ran
        }
        mono = cells.get("monolith")
        seed = cells.get("seed")
        if case.seed_baseline:
            seed = _cell(
                [r for r in runs if r["case"] == case.seed_baseline and r["system"] == "seed"]
            )
        entry: dict[str, Any] = {
            "case": case.key,
            "title": case.title,
            "unit": "jobs/s" if case.is_jobs else "req/s",
            "systems": cells,
            "vs_hello": _ratio(mono, cells.get("hello")),
            "vs_seed": _ratio(mono, seed),
        }
        if case.monolith_baseline:
            base = _cell(
                [
                    r
                    for r in runs
                    if r["case"] == case.monolith_baseline and r["system"] == "monolith"
                ]
            )
            entry["vs_baseline"] = {
                "case": case.monolith_baseline,
                "rate": _ratio(mono, base),
                "p99_ms": (mono or {}).get("p99_ms"),
                "baseline_p99_ms": base.get("p99_ms"),
                "paced_p99_ms": (mono or {}).get("paced_p99_ms"),
                "baseline_paced_p99_ms": base.get("paced_p99_ms"),
            }
        entry["targets"] = _targets(case, entry, mono)
        out.append(entry)
    return out


def _targets(
    case: Case, entry: dict[str, Any], mono: dict[str, Any] | None
) -> list[dict[str, Any]]:
    t = case.targets
    checks: list[tuple[str, float | None, float | None, bool]] = []  # name, value, bound, upper?
    if t.vs_hello is not None:
        checks.append(("monolith / hello", entry["vs_hello"], t.vs_hello, False))
    if t.vs_seed is not None:
        checks.append(("monolith / seed", entry["vs_seed"], t.vs_seed, False))
    if t.min_rate is not None:
        checks.append((entry["unit"], (mono or {}).get("rate"), t.min_rate, False))
    if t.paced_p99_ms is not None:
        checks.append(
            ("p99 at half load, ms", (mono or {}).get("paced_p99_ms"), t.paced_p99_ms, True)
        )
    if mono and "rss_mb" in mono:
        checks.append(("RSS per worker, MB", mono.get("rss_mb"), RSS_LIMIT_MB, True))
    result = []
    for name, value, bound, upper in checks:
        ok = None if value is None else (value <= bound if upper else value >= bound)
        result.append({"target": name, "value": value, "bound": bound, "upper": upper, "ok": ok})
    return result


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _mark(targets: list[dict[str, Any]]) -> str:
    parts = []
    for t in targets:
        sign = "<=" if t["upper"] else ">="
        verdict = {True: "met", False: "MISSED", None: "n/a"}[t["ok"]]
        parts.append(f"{t['target']} {sign} {t['bound']:g}: {verdict}")
    return "; ".join(parts)


def markdown(summary: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| case | "
        + " | ".join(LABELS[s] for s in SYSTEMS)
        + " | monolith / hello | monolith / seed | targets |",
        "|---" * (len(SYSTEMS) + 4) + "|",
    ]
    for e in summary:
        cells = []
        for s in SYSTEMS:
            c = e["systems"].get(s)
            cells.append("—" if c is None else ("n/a" if "na" in c else _num(c["rate"])))
        lines.append(
            f"| {e['case']} ({e['unit']}) | "
            + " | ".join(cells)
            + f" | {_x(e['vs_hello'])} | {_x(e['vs_seed'])} | {_mark(e['targets'])} |"
        )
    compared = [e for e in summary if e.get("vs_baseline")]
    if compared:
        lines += [
            "",
            "| case | against | rate ratio | p99 ms (vs) | paced p99 ms (vs) |",
            "|---|---|---|---|---|",
        ]
        for e in compared:
            b = e["vs_baseline"]
            lines.append(
                f"| {e['case']} | {b['case']} | {_x(b['rate'])} "
                f"| {_num(b['p99_ms'], 2)} ({_num(b['baseline_p99_ms'], 2)}) "
                f"| {_num(b['paced_p99_ms'], 2)} ({_num(b['baseline_paced_p99_ms'], 2)}) |"
            )
    lines += [
        "",
        "| case | system | rate | p50 ms | p99 ms | paced rate | paced p50 ms | paced p99 ms "
        "| errors | RSS/worker MB | CPU µs/req |",
        "|---" * 11 + "|",
    ]
    for e in summary:
        for s, c in e["systems"].items():
            if "na" in c:
                lines.append(f"| {e['case']} | {LABELS[s]} | not available: {c['na']} |" + " |" * 8)
                continue
            rss = _num(c.get("rss_mb"), 1)
            if c.get("rss_jobs_mb") is not None:
                rss += f" (+ helpers {c['rss_jobs_mb']:.1f})"
            lines.append(
                f"| {e['case']} | {LABELS[s]} | {_num(c['rate'])} | {_num(c.get('p50_ms'), 2)} "
                f"| {_num(c.get('p99_ms'), 2)} | {_num(c.get('paced_rate'))} "
                f"| {_num(c.get('paced_p50_ms'), 2)} | {_num(c.get('paced_p99_ms'), 2)} "
                f"| {c['errors']} | {rss} | {_num(c.get('cpu_us_per_req'))} |"
            )
    return "\n".join(lines)


def write_json(path: Path, meta: dict[str, Any], runs: Sequence[Any], summary: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"meta": meta, "summary": summary, "runs": list(runs)}
    path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")


def chart(path: Path, summary: Sequence[dict[str, Any]], title: str) -> None:
    """Throughput per case (log scale) and p99 at half load, one bar per system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    width = 0.2
    names = [e["case"] for e in summary]
    for i, s in enumerate(SYSTEMS):
        rates = [(e["systems"].get(s) or {}).get("rate") or 0 for e in summary]
        p99s = [(e["systems"].get(s) or {}).get("paced_p99_ms") or 0 for e in summary]
        xs = [x + (i - 1.5) * width for x in range(len(names))]
        left.bar(xs, rates, width, label=LABELS[s])
        right.bar(xs, p99s, width, label=LABELS[s])
        if s == "monolith":  # the claim, written on the bars it is about
            for x, rate, e in zip(xs, rates, summary, strict=True):
                if rate and e["vs_seed"]:
                    left.annotate(f"{e['vs_seed']:.1f}x seed", (x, rate), ha="center",
                                  va="bottom", fontsize=8)  # fmt: skip
    left.set_yscale("log")
    left.set_ylabel("req/s (jobs/s for jobs), median of rounds")
    right.set_ylabel("p99 latency at half of each system's maximum, ms")
    for ax in (left, right):
        ax.set_xticks(range(len(names)), names, rotation=20)
        ax.grid(axis="y", alpha=0.3)
    left.legend()
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
