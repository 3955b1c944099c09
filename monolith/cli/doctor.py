"""``monolith doctor``: the configuration, and which state would break with a second instance."""

from __future__ import annotations

import argparse
import textwrap

from monolith.cli.common import add_json_flag, check_data_dir, emit, run
from monolith.config import load_settings
from monolith.doctor import Finding, Report, examine
from monolith.errors import ConfigError
from monolith.logs import configure_logging

_MARK = {"ok": "ok", "warn": "WARN", "problem": "PROBLEM"}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "doctor",
        help="check the configuration and say which state is per process, per box or shared",
        description="Print each piece of state with its backend and scope (per process, per "
        "box, shared) and what breaks with a second instance; check the settings and that "
        "every backend answers. Exits 1 on a problem, e.g. per-box state while "
        "MONOLITH_INSTANCES is above 1.",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="how long each backend gets to answer (default 5)",
    )
    add_json_flag(p)
    p.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(write=False)  # doctor reads: it never creates the data dir
        check_data_dir(settings, read_only=True, need_database=False)  # reported, not made
    except ConfigError as exc:
        report = Report(checks=[Finding("settings", "problem", str(exc))])
    else:
        configure_logging(settings.log)
        report = run(examine(settings, patience=args.timeout))
    emit(args, report.to_json(), lambda _: render(report))
    return 0 if report.ok else 1


def render(report: Report) -> str:
    """The report for a terminal."""
    lines = []
    if report.env:
        lines.append(
            f"monolith doctor: {report.env}, {report.instances} instance(s) of "
            f"{report.workers} worker(s)"
        )
    if report.state:
        lines += ["", "STATE"]
        for item in report.state:
            backend = item.backend or "not part of this build"
            lines.append(f"  {_MARK[item.level]:<8}{item.name:<13}{item.scope:<8}{backend}")
            if item.breaks:
                lines += _wrapped(f"with a second instance: {item.breaks}")
            if item.level != "ok" and item.fix:
                lines += _wrapped(f"fix: {item.fix}")
    lines += ["", "CHECKS"]
    for finding in report.checks:
        lines.append(f"  {_MARK[finding.level]:<8}{finding.check}: {finding.message}")
    lines.append("")
    lines.append(
        f"{report.problems} problem(s), {report.warnings} warning(s)"
        if report.problems or report.warnings
        else "no problems"
    )
    return "\n".join(lines)


def _wrapped(text: str) -> list[str]:
    return textwrap.wrap(text, width=96, initial_indent=" " * 29, subsequent_indent=" " * 31)
