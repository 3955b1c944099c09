"""``monolith new feature NAME``: a new feature in the domain wing, wired in and tested.

It copies the worked example of docs/GUIDE.md, ``monolith/shop/notices`` (model, cache,
effects, routes, jobs), its migration and its tests, renaming ``notices``/``notice`` to
``NAME`` and its singular, gives the migration the next free number, and adds the feature's
routes and jobs to ``monolith/features.py``. Run it at the root of the repository; right
after it, ``make test`` passes, the new tests included.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

from monolith.errors import ConfigError

EXAMPLE = "notices"
_NAME = re.compile(r"^[a-z][a-z0-9_]*s$")
_MIGRATION = re.compile(r"^(\d{4})_[a-z0-9_]+\.py$")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("new", help="generate code: monolith new feature NAME")
    kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    f = kinds.add_parser(
        "feature",
        help="a feature in monolith/shop/NAME (migration, model, cache, routes, job, tests)",
        description="Generate monolith/shop/NAME in the shape of monolith/shop/notices, its "
        "migration and tests/test_NAME.py, and wire it into monolith/features.py.",
    )
    f.add_argument("name", metavar="NAME", help="plural, lowercase: e.g. notes, wishlists")
    f.add_argument("--singular", help="the singular (default: NAME without its final s)")
    f.add_argument("--root", default=".", help="the repository (default: the current folder)")
    f.set_defaults(func=cmd_new_feature)


def renamer(plural: str, singular: str) -> list[tuple[str, str]]:
    def camel(word: str) -> str:
        return "".join(part.capitalize() for part in word.split("_"))

    return [
        (EXAMPLE.upper(), plural.upper()),
        ("NOTICE", singular.upper()),
        (camel(EXAMPLE), camel(plural)),
        ("Notice", camel(singular)),
        (EXAMPLE, plural),
        ("notice", singular),
    ]


def rename(text: str, pairs: list[tuple[str, str]]) -> str:
    # One pass over every form, so a replacement is never renamed again.
    pattern = re.compile("|".join(re.escape(old) for old, _ in pairs))
    table = dict(pairs)
    return pattern.sub(lambda m: table[m.group(0)], text)


def generate(root: Path, plural: str, singular: str) -> list[Path]:
    """Write the feature's files under ``root``; returns them (features.py last)."""
    if not _NAME.match(plural) or not re.match(r"^[a-z][a-z0-9_]*$", singular):
        raise ConfigError(f"{plural!r}: a feature's name is plural, lowercase, e.g. notes")
    example = root / "monolith" / "shop" / EXAMPLE
    features = root / "monolith" / "features.py"
    migrations = root / "monolith" / "database" / "migrations"
    if not example.is_dir() or not features.is_file():
        raise ConfigError(f"{root.absolute()}: not the root of a monolith repository")
    target = root / "monolith" / "shop" / plural
    test = root / "tests" / f"test_{plural}.py"
    if target.exists() or test.exists():
        raise ConfigError(f"{target} or {test} already exists")
    pairs = renamer(plural, singular)
    numbered = sorted(
        (int(m.group(1)), p) for p in migrations.iterdir() if (m := _MIGRATION.match(p.name))
    )
    source = next(p for _, p in numbered if p.name.endswith(f"_{EXAMPLE}.py"))
    last = numbered[-1][0]
    new_rev, down = f"{last + 1:04d}", f"{last:04d}"
    migration = rename(source.read_text(), pairs)
    migration = re.sub(r'^revision = "\d{4}"', f'revision = "{new_rev}"', migration, flags=re.M)
    migration = re.sub(r"Revision: \d{4}", f"Revision: {new_rev}", migration)
    migration = re.sub(
        r'^down_revision = "\d{4}"', f'down_revision = "{down}"', migration, flags=re.M
    )
    written: list[Path] = []
    target.mkdir()
    for path in sorted(example.glob("*.py")):
        out = target / path.name
        out.write_text(rename(path.read_text(), pairs))
        written.append(out)
    out = migrations / f"{new_rev}_{plural}.py"
    out.write_text(migration)
    written.append(out)
    test.write_text(rename((root / "tests" / f"test_{EXAMPLE}.py").read_text(), pairs))
    written.append(test)
    features.write_text(wire(features.read_text(), plural))
    written.append(features)
    return written


def wire(text: str, plural: str) -> str:
    """``features.py`` with the feature's routes and jobs added next to the example's."""
    lines = {
        f"from monolith.shop.{EXAMPLE} import routes as {EXAMPLE}\n": (
            f"from monolith.shop.{plural} import jobs as {plural}_jobs\n"
            f"from monolith.shop.{plural} import routes as {plural}\n"
        ),
        f"{EXAMPLE}_jobs)": f"{EXAMPLE}_jobs, {plural}_jobs)",
        f"        *{EXAMPLE}.routes(svc),\n": f"        *{plural}.routes(svc),\n",
    }
    for anchor, added in lines.items():
        if anchor not in text:
            raise ConfigError(f"monolith/features.py: cannot find {anchor.strip()!r} to wire in")
        if anchor.endswith("\n"):
            text = text.replace(anchor, anchor + added, 1)
        else:
            text = text.replace(anchor, added, 1)
    return text


def tidy(paths: list[Path]) -> None:
    """Sort imports and format the written files with ruff, when it is installed (``make``
    installs it): a new name can sort before the example's in ``features.py``."""
    ruff = Path(sys.executable).parent / "ruff"
    found = str(ruff) if ruff.exists() else shutil.which("ruff")
    if found is None:
        return
    files = [str(p) for p in paths]
    subprocess.run([found, "check", "--quiet", "--fix", "--select", "I", *files], check=False)
    subprocess.run([found, "format", "--quiet", *files], check=False)


def cmd_new_feature(args: argparse.Namespace) -> int:
    plural: str = args.name
    singular: str = args.singular or plural[:-1]
    written = generate(Path(args.root), plural, singular)
    tidy(written)
    for path in written:
        print(f"wrote {path}")
    print(f"next: make test (or .venv/bin/pytest tests/test_{plural}.py); docs/GUIDE.md")
    return 0
