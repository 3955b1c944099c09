"""``monolith create-admin EMAIL [--password-stdin]``: create an admin, or promote a user."""

from __future__ import annotations

import argparse
import getpass
import sys

from monolith.accounts import model as accounts
from monolith.accounts.cache import user_changed
from monolith.cli.common import emit, fail, run, settings_from_env, started_services

MIN_PASSWORD = 8


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "create-admin",
        help="create an admin account, or give an existing account the admin role",
        description="Creates EMAIL as an admin (asking for a password), or promotes an existing "
        "account; with --password-stdin the password is read from standard input and also "
        "replaces an existing account's password.",
    )
    p.add_argument("email")
    p.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(func=cmd_create_admin)


def _read_password(args: argparse.Namespace) -> str | None:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        return None
    first = getpass.getpass("password for the new admin: ")
    if first != getpass.getpass("again: "):
        raise ValueError("the passwords differ")
    return first


def cmd_create_admin(args: argparse.Namespace) -> int:
    settings = settings_from_env()
    try:
        email = accounts.normalize_email(args.email)
        password = _read_password(args)
    except ValueError as exc:
        return fail("create-admin", str(exc))
    if password is not None and len(password) < MIN_PASSWORD:
        return fail("create-admin", f"the password needs at least {MIN_PASSWORD} characters")

    async def go() -> tuple[accounts.User, bool]:
        async with started_services(settings) as svc:
            user, created = await accounts.make_admin(svc.db, email, password)
            await user_changed(svc, user.id)
            return user, created

    try:
        user, created = run(go())
    except ValueError as exc:
        return fail("create-admin", f"{exc} (use --password-stdin, or run it on a terminal)")
    emit(
        args,
        {"id": user.id, "email": user.email, "role": user.role, "created": created},
        lambda d: (
            f"create-admin: {'created' if d['created'] else 'promoted'} {d['email']} "
            f"(id {d['id']}) as admin"
        ),
    )
    return 0
