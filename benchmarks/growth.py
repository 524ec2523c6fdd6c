"""Cost growth: ms per task and memory per process as one process runs more and more tasks.

Two workers, each ``--pool prefork -c 1`` (so every task of a worker runs in
the same pool child): one runs celery-svcjwt's ``sync_item``, the other the
floor (a fixed token on a bare requests.Session).  Tasks are sent in chunks,
alternating between the two workers, up to 10, 100, 1,000 and 10,000 tasks
per process (the quick run stops at 1,000).  At each checkpoint: the median
in-task time of the tasks since the previous checkpoint, and the resident
memory (RSS) of the pool child and of the worker's main process.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from common import ApiServer, Worker, log, parser, redis_available, summary, tempdir, write_results

VARIANTS = {"celery-svcjwt": "example.proj.tasks.sync_item", "floor": "benchmarks.benchapp.floor_call"}


def memory(worker: Worker) -> dict[str, float]:
    import psutil

    main = psutil.Process(worker.proc.pid) if worker.proc else None
    children = worker.children()
    return {
        "child_rss_mb": sum(c.memory_info().rss for c in children) / 2**20,
        "child_uss_mb": sum(c.memory_full_info().uss for c in children) / 2**20,
        "main_rss_mb": main.memory_info().rss / 2**20 if main else 0.0,
        "child_pids": [c.pid for c in children],
    }


def chunk_size(done: int) -> int:
    if done < 10:
        return 10 - done
    if done < 100:
        return 30
    if done < 1000:
        return 150
    return 500


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    checkpoints = [10, 100, 1000] if args.quick else [10, 100, 1000, 10000]
    broker = "redis" if redis_available() else "filesystem"
    workdir = tempdir("growth")
    series: dict[str, list[dict[str, Any]]] = {name: [] for name in VARIANTS}
    with ApiServer(workdir / "api", access_seconds=3600) as api:
        workers = {name: Worker(workdir / name, broker, api, concurrency=1, django=False).start() for name in VARIANTS}
        try:
            for w in workers.values():
                w.wait_ready()
            for name, w in workers.items():
                series[name].append({"tasks": 0, **memory(w)})
            done = dict.fromkeys(VARIANTS, 0)
            bucket: dict[str, list[float]] = {name: [] for name in VARIANTS}
            walls: dict[str, float] = dict.fromkeys(VARIANTS, 0.0)
            target_index = 0
            while target_index < len(checkpoints):  # bounded: the last checkpoint ends it
                target = checkpoints[target_index]
                # both workers at once, so that both see the same load from elsewhere
                started = time.perf_counter()
                sent = {}
                for name, task in VARIANTS.items():
                    n = min(chunk_size(done[name]), target - done[name])
                    sent[name] = [workers[name].send(task, (done[name] + i) % 50 + 1) for i in range(n)]
                for name, results in sent.items():
                    values = [r.get(timeout=300, interval=0.005) for r in results]
                    walls[name] += time.perf_counter() - started
                    bucket[name] += [1000 * v["seconds"] for v in values]
                    done[name] += len(values)
                if all(d >= target for d in done.values()):
                    for name, w in workers.items():
                        point = {
                            "tasks": target,
                            "in_task_ms": summary(bucket[name]),
                            "tasks_per_s": len(bucket[name]) / walls[name],
                            **memory(w),
                        }
                        series[name].append(point)
                        log(
                            f"{name:14s} {target:6d} tasks/process: "
                            f"{statistics.median(bucket[name]):6.2f} ms in task, "
                            f"child RSS {point['child_rss_mb']:.2f} MB (USS {point['child_uss_mb']:.2f}), main RSS {point['main_rss_mb']:.1f} MB"
                        )
                        bucket[name] = []
                        walls[name] = 0.0
                    target_index += 1
            logins = api.stats().get("/api/token/ 200", 0)
        finally:
            for w in workers.values():
                w.stop()
    write_results(
        "growth", {"broker": broker, "checkpoints": checkpoints, "series": series, "api_logins": logins}, args.out
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
