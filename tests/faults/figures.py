"""Render the reliability figures (JSON written by the tests) as reStructuredText tables.

    python -m tests.faults.figures docs/reliability_figures.json docs/reliability_figures.inc

docs/reliability.rst includes the output.  The ``reliability`` nox session
runs the tests with SVCJWT_RELIABILITY_FIGURES pointing at the JSON file,
then this.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any


def _cell(text: Any) -> str:
    return str(text).replace("\n", " ").replace("|", "\\|").replace("*", "\\*")


def _literal(text: str | None) -> str:
    return f"``{text}``" if text else ""


def table(title: str, header: list[str], rows: list[list[str]], widths: list[int] | None = None) -> str:
    if not rows:
        return "*Not measured in this run.*\n"
    lines = [f".. list-table:: {title}", "   :header-rows: 1"]
    if widths:
        lines.append(f"   :widths: {' '.join(str(w) for w in widths)}")
    lines.append("")
    for row in [header, *rows]:
        first, *rest = row
        lines.append(f"   * - {first}")
        lines.extend(f"     - {cell}" for cell in rest)
    return "\n".join(lines) + "\n"


def _saw(saw: dict[str, int]) -> str:
    if not saw:
        return "nothing (the task succeeded)"
    return ", ".join(f"{name} x{count}" for name, count in sorted(saw.items()))


def faults(rows: list[dict[str, Any]]) -> str:
    out = []
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["group"], []).append(row)
    for group, items in groups.items():
        body = []
        for r in items:
            calls = r["token_calls_during"]
            if "fault_seconds" in r:
                calls = f"{calls} in {r['fault_seconds']} s" if calls or "refused" not in r["fault"] else "0 (refused)"
            if r.get("token_calls_after") is not None:
                calls = f"{calls}; {r['token_calls_after']} after"
            if r.get("note"):
                calls = f"{calls} ({r['note']})"
            outcome = f"{r['completed']}/{r['tasks']} completed"
            if r["failed"]:
                outcome += f", {r['failed']} failed at once"
            if r.get("recovery_seconds"):
                outcome += f"; all done {r['recovery_seconds']} s after the fault"
            task = f" (``{r['task']}``)" if r.get("task") and r["task"] != "echo" else ""
            saw = _saw(r["task_saw"])
            if r.get("message"):
                saw += f": {_literal(_cell(r['message']))}"
            body.append([_cell(r["fault"]) + task, saw, _cell(calls), _cell(outcome)])
        out.append(
            table(
                _cell(group[:1].upper() + group[1:]),
                ["Fault", "What the tasks saw (retries/failures)", "Token-endpoint calls", "Outcome"],
                body,
                [20, 45, 15, 20],
            )
        )
    return "\n".join(out)


def soak(name: str, s: dict[str, Any]) -> str:
    server = s["server"]
    rows = [
        ["Tasks", f"{s['tasks']:,} in {s['seconds']} s ({s['tasks_per_second']} tasks/s)"],
        ["Access token lifetime", f"{s['access_token_seconds']} s, rotation + blacklist on"],
        ["Failed / lost / retried", f"{s['failed']} / {s['lost']} / {s['retried']}"],
        ["API calls that succeeded", f"{server['api_calls_ok']:,}"],
        ["401s from the API (renewed and replayed)", str(server["api_401"])],
        ["Logins at the API", str(server["logins"])],
        ["Refreshes at the API (refused)", f"{server['refreshes']} ({server['refreshes_refused']})"],
    ]
    for p in s["processes"]:
        growth = p["rss_growth_kib"]
        rss = p["rss_kib"]
        memory = f"{rss[0]:,} -> {rss[-1]:,} KiB (+{growth} KiB)" if rss else "n/a"
        rows.append(
            [
                f"Pool process {p['pid']}",
                f"{p['tasks']:,} tasks, {p['logins']} login, {p['refreshes']} refreshes "
                f"(at most {s['refresh_bound_per_process']}); RSS {memory}",
            ]
        )
    return table(name, ["Measure", "Value"], rows, [30, 70])


def concurrency(c: dict[str, Any]) -> str:
    names = {"threads_pool": "``--pool threads -c 64`` (64 tasks)", "plain_threads": "64 plain threads, one ApiSession"}
    rows = []
    for key, label in names.items():
        if key not in c:
            continue
        r = c[key]
        rows.append(
            [
                label,
                f"{r['seconds']} s, {r['access_token_seconds']} s tokens",
                f"{r['api_calls']:,} ({r['api_401']} x 401)",
                str(r["logins"]),
                f"{r['refreshes']} (at most {r['refresh_windows_at_most']} windows)",
                str(r["refreshes_refused"]),
            ]
        )
    return table(
        "64 threads crossing expiry together (rotation + blacklist on)",
        ["Run", "Duration", "API calls", "Logins", "Refreshes", "Refused refreshes"],
        rows,
    )


def fork(f: dict[str, Any]) -> str:
    rows = []
    if "fork_and_spawn" in f:
        r = f["fork_and_spawn"]
        rows.append(
            [
                "parent, forked child, spawned child",
                f"{r['logins']} logins for {r['processes']} processes; {r['distinct_connections']} distinct connections; "
                f"the forked child reused the parent's token: {'yes' if r['child_reused_parent_token'] else 'no'}",
            ]
        )
    if "max_tasks_per_child_5" in f:
        r = f["max_tasks_per_child_5"]
        rows.append(
            [
                "prefork, ``--max-tasks-per-child 5``",
                f"{r['tasks']} tasks; {r['children_ever']} children lived; {r['logins']} logins at the API",
            ]
        )
    return table("Fork, spawn and recycled children", ["Case", "Result"], rows, [30, 70])


def _part(name: str, text: str) -> str:
    """A part docs/reliability.rst includes with ``:start-after: .. begin <name>`` / ``:end-before: .. end <name>``."""
    return f".. begin {name}\n\n{text}\n.. end {name}\n"


def render(data: dict[str, Any]) -> str:
    parts = [".. Generated by ``python -m tests.faults.figures`` (nox -s reliability) from the JSON beside it.\n"]
    meta = data.get("meta") or {}
    parts.append(
        _part(
            "meta",
            f"Measured on {meta.get('platform', '?')}, Python {meta.get('python', '?')}, {meta.get('cpus', '?')} CPUs.\n",
        )
    )
    parts.append(_part("faults", faults(data.get("faults", []))))
    soaks = [soak("Soak, long run", data["soak"])] if "soak" in data else []
    if "soak_ci" in data:
        soaks.append(soak("Soak, CI run", data["soak_ci"]))
    parts.append(_part("soak", "\n".join(soaks)))
    parts.append(_part("concurrency", concurrency(data.get("concurrency", {}))))
    parts.append(_part("fork", fork(data.get("fork", {}))))
    return "\n".join(parts)


def main(argv: list[str]) -> None:
    source, target = Path(argv[0]), Path(argv[1])
    data = json.loads(source.read_text())
    if "meta" not in data:
        data["meta"] = {
            "platform": platform.platform(terse=True),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        }
        source.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    target.write_text(render(data))
    print(f"wrote {target}")


if __name__ == "__main__":
    main(sys.argv[1:])
