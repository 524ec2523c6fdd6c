"""``install(app)``: wire celery-svcjwt into a Celery app."""

from __future__ import annotations

from typing import Any

import click

from .settings import SETTINGS

__all__ = ["install"]

#: Imported by every worker process (spawned pool children included), so the
#: ``worker_process_init`` receiver is connected wherever tasks run.
HOOK_MODULE = "celery_svcjwt.process"


def install(app: Any) -> Any:
    """Add the worker bootstep and the ``--svcjwt-*`` worker options to ``app``. Idempotent."""
    from . import control  # noqa: F401 - registers `celery inspect svcjwt_status`
    from .bootstep import SvcJWTStep

    if getattr(app, "_svcjwt_installed", False):
        return app
    app._svcjwt_installed = True
    app.steps["worker"].add(SvcJWTStep)
    for s in SETTINGS:
        if s.option:
            app.user_options["worker"].add(
                click.Option(
                    (s.option,),
                    default=None,
                    metavar=s.kind.split()[0].upper(),
                    help=f"celery-svcjwt: {_first_sentence(s.help)} [{s.kind}]",
                )
            )
    if app.configured:
        _add_hook_import(app)
    else:
        app.on_after_configure.connect(_add_hook_import, weak=False)
    return app


def _add_hook_import(sender: Any, **_: Any) -> None:
    imports = tuple(sender.conf.get("imports") or ())
    if HOOK_MODULE not in imports:
        sender.conf.imports = (*imports, HOOK_MODULE)


def _first_sentence(text: str) -> str:
    return text.replace("``", "").split(". ")[0].rstrip(".")
