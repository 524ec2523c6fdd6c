"""Sphinx extension: the configuration reference, generated from the code.

``.. svcjwt-settings::`` renders one table row per entry of
:data:`celery_svcjwt.settings.SETTINGS`, the single place where settings are
defined: the names in every spelling (Celery, Django, environment, command
line), the kind, the default and the help text.  Nothing here is copied by
hand, so the reference cannot drift from the code.

Which settings are *required* is not stored in SETTINGS: it is learned by
running :func:`celery_svcjwt.settings.load_config` with nothing configured and
reading which settings its error message reports as "not set".

Each row is also a cross-reference target: ``:setting:`svcjwt_api_url```
links to it from any page, and (with ``nitpicky``) a misspelt or removed
setting fails the build.
"""

from __future__ import annotations

from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

NOT_ON_COMMAND_LINE = "not on the command line"


def _required() -> set[str]:
    """Names of the settings load_config() reports as missing when nothing is configured."""
    from celery_svcjwt.errors import ConfigurationError
    from celery_svcjwt.settings import SETTINGS, load_config

    try:
        load_config(None, environ={}, cli={})
    except ConfigurationError as exc:
        message = str(exc)
    else:
        return set()
    return {s.name for s in SETTINGS if f"- {s.conf_key} is not set" in message}


def _literal(value: Any) -> str:
    text = str(value)
    if "``" in text or not text.strip():
        raise ValueError(f"cannot render {value!r} as an inline literal")
    return f"``{text}``"


def _default(setting: Any, required: set[str]) -> str:
    if setting.default is None:
        return "*required*" if setting.name in required else "*not set*"
    return _literal(setting.default)


class SettingsTable(SphinxDirective):
    """``.. svcjwt-settings::`` - the table of every celery-svcjwt setting."""

    has_content = False
    required_arguments = 0
    optional_arguments = 0

    def run(self) -> list[nodes.Node]:
        import celery_svcjwt.settings as module
        from celery_svcjwt.settings import SETTINGS

        self.env.note_dependency(module.__file__)
        required = _required()

        lines = [
            ".. list-table::",
            "   :header-rows: 1",
            "   :class: svcjwt-settings",
            "",
            "   * - Name",
            "     - Celery setting",
            "     - Django setting",
            "     - Environment variable",
            "     - ``celery worker`` option",
            "     - Kind",
            "     - Default",
            "     - Description",
        ]
        for s in SETTINGS:
            option = _literal(s.option) if s.option else f"*{NOT_ON_COMMAND_LINE}*"
            help_lines = s.help.splitlines() or [""]
            lines += [
                f"   * - **{s.name}**",
                f"     - {_literal(s.conf_key)}",
                f"     - {_literal(s.django_key)}",
                f"     - {_literal(s.env_var)}",
                f"     - {option}",
                f"     - {s.kind}",
                f"     - {_default(s, required)}",
                f"     - {help_lines[0]}",
                *(f"       {line}" for line in help_lines[1:]),
            ]
        source, _line = self.get_source_info()
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source=source), self.content_offset, container)

        tables = list(container.findall(nodes.table))
        if len(tables) != 1:
            raise self.error("svcjwt-settings: could not build the settings table")
        body = next(tables[0].findall(nodes.tbody))
        rows = [child for child in body.children if isinstance(child, nodes.row)]
        if len(rows) != len(SETTINGS):
            raise self.error(f"svcjwt-settings: {len(rows)} rows for {len(SETTINGS)} settings")

        std = self.env.get_domain("std")
        for s, row in zip(SETTINGS, rows, strict=True):
            node_id = f"setting-{s.conf_key}"
            row["ids"].append(node_id)
            self.state.document.note_explicit_target(row)
            std.note_object("setting", s.conf_key, node_id, location=row)
        return list(container.children)


def setup(app: Sphinx) -> dict[str, Any]:
    # Provides the :setting: role; the targets are the rows the directive emits.
    app.add_object_type("setting", "setting", objname="celery-svcjwt setting")
    app.add_directive("svcjwt-settings", SettingsTable)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
