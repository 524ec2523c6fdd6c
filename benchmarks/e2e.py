"""End to end: a real prefork worker (2 children) on Redis and on the embedded broker.

Each task makes one authenticated call (``GET api/items/<pk>/``) to the example
DRF + SimpleJWT API under waitress, with Django's default PBKDF2 hasher.
Variants, run in the same worker (whose Django settings are the API's, as in
the seed article's setting):

* celery-svcjwt: ``sync_item``, ``self.api`` (one login per process, at start);
* floor: ``floor_call``, a fixed token on one bare requests.Session;
* seed, HTTP login per task: ``sync_item_seed``;
* seed, serializer per task: ``seed_serializer`` (TokenObtainPairSerializer in the worker).

Measured: the seconds each task spends on its own work (it times itself) and
the tasks per second of a batch sent at once (first send to last result).
Each round runs one batch interleaving celery-svcjwt and floor tasks one by
one (their in-task times, paired in time), a few pairs of pure celery-svcjwt
and floor batches (throughput, paired batch by batch), and one batch of each
seed approach.  Ratios are taken round by round (or pair by pair) and
summarised by their median and spread.
"""

from __future__ import annotations

import statistics
from typing import Any

from common import (
    ApiServer,
    Worker,
    log,
    parser,
    redis_available,
    rotated,
    run_batch,
    run_mixed,
    summary,
    tempdir,
    write_results,
)

VARIANTS = [
    ("celery-svcjwt", "example.proj.tasks.sync_item", "fast"),
    ("floor", "benchmarks.benchapp.floor_call", "fast"),
    ("seed-http", "example.proj.tasks.sync_item_seed", "seed"),
    ("seed-serializer", "benchmarks.benchapp.seed_serializer", "seed"),
]
#: Diagnostics: Celery's own cost per task, with and without celery-svcjwt's base class (no call at all).
DIAGNOSTICS = [
    ("plain-noop", "benchmarks.benchapp.plain_noop", "fast"),
    ("auth-noop", "benchmarks.benchapp.auth_noop", "fast"),
]
LABELS = {
    "plain-noop": "no call: a plain task",
    "auth-noop": "no call: an AuthenticatedTask",
    "celery-svcjwt": "celery-svcjwt (self.api)",
    "floor": "floor: fixed token, bare requests.Session",
    "seed-http": "seed: HTTP login on every task",
    "seed-serializer": "seed: TokenObtainPairSerializer on every task",
}


def run_broker(broker: str, api: ApiServer, rounds: int, pairs: int, sizes: dict[str, int]) -> dict[str, Any]:
    """``rounds`` rounds of: one interleaved batch (celery-svcjwt and floor tasks alternating),
    ``pairs`` pairs of pure celery-svcjwt and floor batches (alternating which goes first), then
    one batch of each seed variant (in a rotated order)."""
    workdir = tempdir(f"e2e-{broker}")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in VARIANTS + DIAGNOSTICS}
    rounds_of: dict[str, list[int]] = {name: [] for name in runs}  # the round of each batch
    paired: dict[str, list[float]] = {"celery-svcjwt": [], "floor": []}
    tasks = {name: task for name, task, _ in VARIANTS + DIAGNOSTICS}
    logins: dict[int, int] = {}

    def batch(worker: Worker, name: str, r: int) -> dict[str, Any]:
        kind = "seed" if name.startswith("seed") else "fast"
        b = run_batch(worker, tasks[name], [(i % 50 + 1,) for i in range(sizes[kind])])
        runs[name].append(b)
        rounds_of[name].append(r)
        if name == "celery-svcjwt":
            for v in b["values"]:
                logins[v["pid"]] = max(logins.get(v["pid"], 0), v["logins"])
        b.pop("values")
        return b

    with Worker(workdir, broker, api, concurrency=2) as worker:
        worker.wait_ready()
        log(f"{broker}: worker ready; warming up")
        for _name, task, kind in VARIANTS + DIAGNOSTICS:
            run_batch(worker, task, [(i % 50 + 1,) for i in range(8 if kind == "fast" else 4)])
        for r in range(rounds):
            # 1. celery-svcjwt and the floor interleaved task by task: in-task times paired in time
            calls = [(tasks[name], (i % 50 + 1,)) for i in range(sizes["fast"]) for name in ("celery-svcjwt", "floor")]
            mixed = run_mixed(worker, calls)
            for name in paired:
                paired[name].append(1000 * statistics.median(mixed[tasks[name]]))
            # 2. pure batches, pair by pair: throughput (and Celery's own cost: tasks that make no call)
            for k in range(pairs):
                for name in rotated(["celery-svcjwt", "floor"], r * pairs + k):
                    batch(worker, name, r)
                for name in rotated(["plain-noop", "auth-noop"], r * pairs + k):
                    batch(worker, name, r)
            # 3. the seed's two approaches
            for name in rotated(["seed-http", "seed-serializer"], r):
                batch(worker, name, r)
            log(
                f"{broker} round {r + 1}/{rounds}: in task (interleaved) celery-svcjwt "
                f"{paired['celery-svcjwt'][-1]:.2f} ms, floor {paired['floor'][-1]:.2f} ms; "
                + ", ".join(
                    f"{name} {1000 * statistics.median(runs[name][-1]['in_task']):.1f} ms "
                    f"{runs[name][-1]['tasks_per_s']:.0f}/s"
                    for name, _, _ in VARIANTS
                )
            )
    out = analyse(runs, rounds_of, paired)
    out["svcjwt_logins_per_process"] = logins
    return out


def analyse(
    runs: dict[str, list[dict[str, Any]]], rounds_of: dict[str, list[int]], paired: dict[str, list[float]]
) -> dict[str, Any]:
    variants = {}
    for name, batches in runs.items():
        variants[name] = {
            "label": LABELS[name],
            "in_task_ms": summary(1000 * s for b in batches for s in b["in_task"]),
            "in_task_ms_per_batch": [1000 * statistics.median(b["in_task"]) for b in batches],
            "tasks_per_s": summary(b["tasks_per_s"] for b in batches),
            "tasks_per_s_per_batch": [b["tasks_per_s"] for b in batches],
            "wall_ms_per_task": summary(1000 / b["tasks_per_s"] for b in batches),
            "tasks": sum(b["n"] for b in batches),
            "batches": len(batches),
        }

    def ratio(xs: list[float], ys: list[float]) -> dict[str, float]:
        return summary(x / y for x, y in zip(xs, ys, strict=True))

    def per_round(name: str, key: str) -> list[float]:
        """The median of a variant's batches in each round."""
        values = variants[name][key]
        by_round: dict[int, list[float]] = {}
        for r, value in zip(rounds_of[name], values, strict=True):
            by_round.setdefault(r, []).append(value)
        return [statistics.median(by_round[r]) for r in sorted(by_round)]

    v = variants
    ours_ms, ours_tps = (
        per_round("celery-svcjwt", "in_task_ms_per_batch"),
        per_round("celery-svcjwt", "tasks_per_s_per_batch"),
    )
    ratios = {
        # > 1: celery-svcjwt is slower than the floor by that factor
        "svcjwt_vs_floor_in_task": ratio(paired["celery-svcjwt"], paired["floor"]),  # interleaved batches
        "svcjwt_vs_floor_throughput": ratio(  # pure batches, pair by pair
            v["floor"]["tasks_per_s_per_batch"], v["celery-svcjwt"]["tasks_per_s_per_batch"]
        ),
    }
    ratios["plain_vs_auth_noop_throughput"] = ratio(
        v["plain-noop"]["tasks_per_s_per_batch"], v["auth-noop"]["tasks_per_s_per_batch"]
    )
    for seed, key in (("seed-http", "seed_http"), ("seed-serializer", "seed_serializer")):
        # > 1: celery-svcjwt is faster by that factor (round by round)
        ratios[f"{key}_vs_svcjwt_in_task"] = ratio(per_round(seed, "in_task_ms_per_batch"), ours_ms)
        ratios[f"{key}_vs_svcjwt_throughput"] = ratio(ours_tps, per_round(seed, "tasks_per_s_per_batch"))
    interleaved = {name: summary(values) for name, values in paired.items()}
    return {"variants": variants, "interleaved_in_task_ms": interleaved, "ratios": ratios}


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    rounds, pairs = (3, 2) if args.quick else (5, 3)
    sizes = {"fast": 100, "seed": 6} if args.quick else {"fast": 150, "seed": 16}
    brokers = ["redis", "filesystem"] if redis_available() else ["filesystem"]
    results: dict[str, Any] = {"rounds": rounds, "pairs": pairs, "sizes": sizes, "concurrency": 2, "brokers": {}}
    with ApiServer(tempdir("e2e-api"), access_seconds=300) as api:
        for broker in brokers:
            results["brokers"][broker] = run_broker(broker, api, rounds, pairs, sizes)
        results["server_stats"] = api.stats()
    if "redis" not in brokers:
        results["skipped"] = {"redis": "no Redis server on 127.0.0.1:6379"}
    write_results("e2e", results, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
