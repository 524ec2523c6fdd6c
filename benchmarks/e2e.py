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
the tasks per second of a batch sent at once (send to last result).  Each
repetition runs every variant once, in a rotated order.
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
LABELS = {
    "celery-svcjwt": "celery-svcjwt (self.api)",
    "floor": "floor: fixed token, bare requests.Session",
    "seed-http": "seed: HTTP login on every task",
    "seed-serializer": "seed: TokenObtainPairSerializer on every task",
}


def run_broker(broker: str, api: ApiServer, reps: int, sizes: dict[str, int]) -> dict[str, Any]:
    workdir = tempdir(f"e2e-{broker}")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in VARIANTS}
    paired: dict[str, list[float]] = {"celery-svcjwt": [], "floor": []}
    tasks = {name: task for name, task, _ in VARIANTS}
    logins: dict[int, int] = {}
    with Worker(workdir, broker, api, concurrency=2) as worker:
        worker.wait_ready()
        log(f"{broker}: worker ready; warming up")
        for _name, task, kind in VARIANTS:
            run_batch(worker, task, [(i % 50 + 1,) for i in range(8 if kind == "fast" else 4)])
        for rep in range(reps):
            # 1. celery-svcjwt and the floor interleaved in one batch: in-task times paired in time
            calls = [(tasks[name], (i % 50 + 1,)) for i in range(sizes["fast"]) for name in ("celery-svcjwt", "floor")]
            mixed = run_mixed(worker, calls)
            for name in paired:
                paired[name].append(1000 * statistics.median(mixed[tasks[name]]))
            log(
                f"{broker} rep {rep + 1}/{reps} interleaved: celery-svcjwt {paired['celery-svcjwt'][-1]:.2f} ms, "
                f"floor {paired['floor'][-1]:.2f} ms in task"
            )
            # 2. each variant alone, in a rotated order: throughput (and in-task times)
            for name, task, kind in rotated(VARIANTS, rep):
                batch = run_batch(worker, task, [(i % 50 + 1,) for i in range(sizes[kind])])
                runs[name].append(batch)
                if name == "celery-svcjwt":
                    for v in batch["values"]:
                        logins[v["pid"]] = max(logins.get(v["pid"], 0), v["logins"])
                log(
                    f"{broker} rep {rep + 1}/{reps} {name:16s} {1000 * statistics.median(batch['in_task']):8.2f} ms "
                    f"in task, {batch['tasks_per_s']:7.1f} tasks/s"
                )
    out = analyse(runs, paired)
    out["svcjwt_logins_per_process"] = logins
    return out


def analyse(runs: dict[str, list[dict[str, Any]]], paired: dict[str, list[float]]) -> dict[str, Any]:
    variants = {}
    for name, batches in runs.items():
        variants[name] = {
            "label": LABELS[name],
            "in_task_ms": summary(1000 * s for b in batches for s in b["in_task"]),
            "in_task_ms_per_rep": [1000 * statistics.median(b["in_task"]) for b in batches],
            "tasks_per_s": summary(b["tasks_per_s"] for b in batches),
            "tasks_per_s_per_rep": [b["tasks_per_s"] for b in batches],
            "wall_ms_per_task": summary(1000 / b["tasks_per_s"] for b in batches),
            "tasks": sum(b["n"] for b in batches),
        }

    def ratio(xs: list[float], ys: list[float]) -> dict[str, float]:
        return summary(x / y for x, y in zip(xs, ys, strict=True))

    v = variants
    ratios = {
        # > 1: celery-svcjwt is slower than the floor by that factor (interleaved in the same batches)
        "svcjwt_vs_floor_in_task": ratio(paired["celery-svcjwt"], paired["floor"]),
        "svcjwt_vs_floor_throughput": ratio(
            v["floor"]["tasks_per_s_per_rep"], v["celery-svcjwt"]["tasks_per_s_per_rep"]
        ),
        # > 1: celery-svcjwt is faster by that factor
        "seed_http_vs_svcjwt_in_task": ratio(
            v["seed-http"]["in_task_ms_per_rep"], v["celery-svcjwt"]["in_task_ms_per_rep"]
        ),
        "seed_serializer_vs_svcjwt_in_task": ratio(
            v["seed-serializer"]["in_task_ms_per_rep"], v["celery-svcjwt"]["in_task_ms_per_rep"]
        ),
        "seed_http_vs_svcjwt_throughput": ratio(
            v["celery-svcjwt"]["tasks_per_s_per_rep"], v["seed-http"]["tasks_per_s_per_rep"]
        ),
        "seed_serializer_vs_svcjwt_throughput": ratio(
            v["celery-svcjwt"]["tasks_per_s_per_rep"], v["seed-serializer"]["tasks_per_s_per_rep"]
        ),
    }
    interleaved = {name: summary(values) for name, values in paired.items()}
    return {"variants": variants, "interleaved_in_task_ms": interleaved, "ratios": ratios}


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    reps = 3 if args.quick else 5
    sizes = {"fast": 100, "seed": 6} if args.quick else {"fast": 300, "seed": 16}
    brokers = ["redis", "filesystem"] if redis_available() else ["filesystem"]
    results: dict[str, Any] = {"reps": reps, "sizes": sizes, "concurrency": 2, "brokers": {}}
    with ApiServer(tempdir("e2e-api"), access_seconds=300) as api:
        for broker in brokers:
            results["brokers"][broker] = run_broker(broker, api, reps, sizes)
        results["server_stats"] = api.stats()
    if "redis" not in brokers:
        results["skipped"] = {"redis": "no Redis server on 127.0.0.1:6379"}
    write_results("e2e", results, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
