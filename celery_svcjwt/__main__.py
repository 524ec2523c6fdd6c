"""``python -m celery_svcjwt check -A proj [--url PATH] [--profile NAME] [--svcjwt-* ...]``.

See :mod:`celery_svcjwt.check`.  The ``--svcjwt-*`` options are those of
``celery worker`` (generated from :data:`~celery_svcjwt.settings.SETTINGS`), so
a deploy script can check with the very flags it starts workers with.  Exit status: 0 when the check passed, 1 when
something failed, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback

from .check import EXIT_FAILED, EXIT_USAGE, UsageError, load_app, run_check
from .settings import DEFAULT_PROFILE, SETTINGS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m celery_svcjwt",
        description="celery-svcjwt tools.",
        allow_abbrev=False,
    )
    parser.add_argument("-A", "--app", help="the Celery app, as for `celery -A` (proj, proj.celery or proj.celery:app)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    check = commands.add_parser(
        "check",
        # no prefixes: --svcjwt-password must not be taken for --svcjwt-password-file (and its value shown as a path)
        allow_abbrev=False,
        help="log in, refresh and optionally call a URL as the service account; print a report",
        description=(
            "Load the app's celery-svcjwt settings, log in once, refresh once and call --url if given, "
            "through the same code the workers run. Prints every setting and where it came from (never "
            "the password), the header type, the token lifetime, the clock skew against the API server, "
            "and what to fix when something fails. Exit status: 0 passed, 1 failed, 2 usage error."
        ),
    )
    check.add_argument("-A", "--app", default=argparse.SUPPRESS, help="the Celery app, as for `celery -A`")
    check.add_argument("--url", help="also GET this URL through self.api's session (relative to svcjwt_api_url)")
    check.add_argument("--profile", default=DEFAULT_PROFILE, help="the settings profile to check (default: default)")
    worker_options = check.add_argument_group(
        "celery worker options", "the --svcjwt-* options of `celery worker`; a value given here wins over config"
    )
    for s in SETTINGS:
        if s.option:
            worker_options.add_argument(s.option, dest=s.conf_key, metavar=s.kind.split()[0].upper(), default=None)
    return parser


def _cli_values(args: argparse.Namespace) -> dict[str, str]:
    """The ``--svcjwt-*`` values given, by setting name (as the bootstep collects them)."""
    return {s.name: getattr(args, s.conf_key) for s in SETTINGS if s.option and getattr(args, s.conf_key) is not None}


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command != "check":
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    if not args.app:
        parser.error("check needs the app: python -m celery_svcjwt check -A proj")
    if os.getcwd() not in sys.path:  # as `celery -A` does: the project's folder is importable
        sys.path.insert(0, os.getcwd())
    try:
        app = load_app(args.app)
    except UsageError as exc:
        print(f"python -m celery_svcjwt: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:
        print(f"celery-svcjwt check: importing the app {args.app!r} failed:", file=sys.stderr)
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        return EXIT_FAILED
    return run_check(app, profile=args.profile, url=args.url, app_name=args.app, cli=_cli_values(args))


if __name__ == "__main__":
    sys.exit(main())
