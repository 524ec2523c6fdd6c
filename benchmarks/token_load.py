"""Token endpoint load: measured on a real worker, and simulated for a fleet of 1,000 processes.

1. Measured: a prefork worker with P children runs a steady trickle of
   ``sync_item`` tasks for D seconds against the example API issuing access
   tokens that live L seconds (short, so that a short run sees many
   refreshes).  The API counts the calls to its token and refresh endpoints;
   they are scaled to calls per hour and compared with what the lifetime
   implies.
2. Simulated (virtual clock, no real processes, no sockets): 1,000 worker
   processes, each with the real :class:`~celery_svcjwt.manager.TokenManager`
   driven by an injected clock, sleep and random source, and a fake token
   endpoint.  125 hosts start within 10 seconds, 8 prefork children each
   (a host's children fork within 20 ms of each other); each process runs a
   task every 100 ms.  Scenarios: a normal start (then refreshes), and a start
   while the auth server is down for 30 s, with the backoff's jitter random
   (as shipped) or fixed at ``rand() = 0.5`` (no jitter).
"""

from __future__ import annotations

import itertools
import random
import time
from collections import Counter
from typing import Any

from common import ApiServer, Worker, log, parser, redis_available, summary, tempdir, write_results

# -- 1. measured -------------------------------------------------------------------------------


def measured(processes: int, seconds: float, access: float, margin: float, hold: float = 0.1) -> dict[str, Any]:
    """Keep ``processes`` pool children busy for ``seconds``; count the token endpoint's calls.

    Each task makes its call and then works ``hold`` seconds; tasks are sent at
    80 % of what the children can run, so every child takes a task every few
    hundred milliseconds and notices its token's refresh time promptly.
    """
    rate = 0.8 * processes / hold
    from celery_svcjwt.tokens import refresh_margins, usable_lifetime

    workdir = tempdir(f"token-load-{processes}")
    broker = "redis" if redis_available() else "filesystem"
    with ApiServer(workdir / "api", access_seconds=access) as api:
        api.reset_stats()
        env = {"SVCJWT_REFRESH_MARGIN": str(margin)}
        with Worker(workdir / "worker", broker, api, concurrency=processes, env=env, django=False) as worker:
            worker.wait_ready()
            started = time.monotonic()
            sent = []
            i = 0
            while time.monotonic() - started < seconds:  # bounded: D seconds of sending
                sent.append(worker.send("benchmarks.benchapp.svcjwt_work", i % 50 + 1, hold))
                i += 1
                time.sleep(max(0.0, started + i / rate - time.monotonic()))
            values = [r.get(timeout=120, interval=0.01) for r in sent]
            elapsed = time.monotonic() - started
            # when each process's refresh count went up, as seen by the tasks (sent in order, 50 ms apart)
            seen: dict[int, int] = {}
            refresh_times: dict[int, list[float]] = {}
            for n, v in enumerate(values):
                if v["refreshes"] > seen.get(v["pid"], 0):
                    seen[v["pid"]] = v["refreshes"]
                    refresh_times.setdefault(v["pid"], []).append(n / rate)
            stats = api.stats()
    logins = stats.get("/api/token/ 200", 0)
    refreshes = stats.get("/api/token/refresh/ 200", 0)
    rejected = sum(v for k, v in stats.items() if k.endswith(" 401"))
    lifetime = usable_lifetime(access, 0)
    advisory, _ = refresh_margins(lifetime, margin)
    every = lifetime - advisory  # seconds between refreshes of one busy process
    per_process = Counter(v["pid"] for v in values)
    return {
        "processes": processes,
        "seconds": elapsed,
        "access_seconds": access,
        "refresh_margin": margin,
        "tasks": len(values),
        "tasks_per_process": dict(per_process),
        "logins": logins,
        "refreshes": refreshes,
        "rejected_401": rejected,
        "calls_per_hour": (logins + refreshes) * 3600 / elapsed,
        "refreshes_per_hour": refreshes * 3600 / elapsed,
        "predicted_refreshes_per_hour": processes * 3600 / every,
        "lifetime_implied_per_hour": processes * 3600 / access,
        "seed_logins_per_hour": len(values) * 3600 / elapsed,
        "refresh_every_seconds": every,
        "refresh_seen_at": refresh_times,
        "refresh_intervals": summary(b - a for times in refresh_times.values() for a, b in itertools.pairwise(times)),
    }


# -- 2. simulated ------------------------------------------------------------------------------

EPOCH = 1_800_000_000.0
SECRET = "simulation-only-signing-key-0123456789abcdef"


class FakeEndpoint:
    """The token and refresh endpoints of a virtual auth server, shared by the whole fleet."""

    def __init__(self, access: float, outage: tuple[float, float] | None) -> None:
        self.access = access
        self.outage = outage
        self.calls: list[tuple[float, str, bool]] = []  # (time, login|refresh, succeeded)
        self._cache: dict[int, dict[str, str]] = {}

    def answer(self, now: float, kind: str) -> dict[str, str]:
        from celery_svcjwt.errors import AuthUnavailable

        down = self.outage is not None and self.outage[0] <= now < self.outage[1]
        self.calls.append((now, kind, not down))
        if down:
            raise AuthUnavailable("cannot reach the token endpoint (simulated outage)")
        second = int(EPOCH + now)
        body = self._cache.get(second)
        if body is None:
            import jwt

            access = jwt.encode({"token_type": "access", "iat": second, "exp": second + int(self.access)}, SECRET)
            refresh = jwt.encode({"token_type": "refresh", "iat": second, "exp": second + 86400}, SECRET)
            body = self._cache[second] = {"access": access, "refresh": refresh}
        return body


class VirtualProcess:
    """One worker process: a real TokenManager on a virtual clock."""

    def __init__(self, start: float, endpoint: FakeEndpoint, config: Any, rand: Any) -> None:
        from celery_svcjwt.manager import TokenManager

        self.now = start
        proc = self

        class Backend:
            description = "simulated"

            def obtain(self) -> dict[str, str]:
                return endpoint.answer(proc.now, "login")

            def refresh(self, refresh_token: str) -> dict[str, str]:
                return endpoint.answer(proc.now, "refresh")

            def close(self) -> None:
                pass

        self.manager = TokenManager(
            config, Backend(), clock=lambda: proc.now, wall=lambda: EPOCH + proc.now, sleep=self.sleep, rand=rand
        )

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def simulate(
    *,
    processes: int = 1000,
    per_host: int = 8,
    spread: float = 10.0,
    fork_spread: float = 0.02,
    task_every: float = 0.1,
    duration: float = 120.0,
    access: float = 300.0,
    outage: tuple[float, float] | None = None,
    jitter: bool = True,
    seed: int = 1,
) -> dict[str, Any]:
    """Run every process's timeline on its own virtual clock; return the endpoint's calls per second."""
    import logging

    from celery_svcjwt.errors import SvcJWTError
    from celery_svcjwt.settings import load_config

    logging.getLogger("celery_svcjwt").setLevel(logging.CRITICAL)  # thousands of expected warnings

    config = load_config(
        None, environ={"SVCJWT_API_URL": "http://127.0.0.1:9/", "SVC_ACCT_USER": "svc", "SVC_ACCT_PASS": "x"}
    )
    rng = random.Random(seed)
    endpoint = FakeEndpoint(access, outage)
    first_ok: list[float] = []
    hosts = (processes + per_host - 1) // per_host
    for h in range(hosts):
        host_start = rng.uniform(0, spread)
        for _ in range(min(per_host, processes - h * per_host)):
            jitter_rng = random.Random(rng.random())
            rand = jitter_rng.random if jitter else (lambda: 0.5)
            proc = VirtualProcess(host_start + rng.uniform(0, fork_spread), endpoint, config, rand)
            ok_at = None
            try:  # the login at worker_process_init (its in-call retries included)
                proc.manager.get()
                ok_at = proc.now
            except SvcJWTError:
                pass
            next_task = proc.now + rng.uniform(0, task_every)
            while next_task < duration:  # bounded: one iteration per task
                proc.now = max(proc.now, next_task)
                try:
                    proc.manager.get()
                    if ok_at is None:
                        ok_at = proc.now
                except SvcJWTError:
                    pass
                next_task = proc.now + task_every
            first_ok.append(ok_at if ok_at is not None else float("inf"))
    return report(endpoint.calls, duration, first_ok, outage)


def report(
    calls: list[tuple[float, str, bool]], duration: float, first_ok: list[float], outage: tuple[float, float] | None
) -> dict[str, Any]:
    per_second = [0] * int(duration)
    per_tenth = Counter(int(t * 10) for t, _, _ in calls)
    for t, _, _ in calls:
        if t < duration:
            per_second[int(t)] += 1
    kinds = Counter(kind for _, kind, _ in calls)
    ok = [t for t in first_ok if t != float("inf")]
    out: dict[str, Any] = {
        "calls": len(calls),
        "failed_calls": sum(1 for _, _, good in calls if not good),
        "logins": kinds["login"],
        "refreshes": kinds["refresh"],
        "peak_per_s": max(per_second),
        "peak_per_s_at": per_second.index(max(per_second)),
        "peak_per_100ms_as_per_s": 10 * max(per_tenth.values()),
        "per_second": per_second,
        "processes_logged_in": len(ok),
    }
    if outage is not None:
        after = [t - outage[1] for t in ok]
        out["recovered_in_s"] = summary(after)
        out["calls_during_outage"] = sum(1 for t, _, _ in calls if outage[0] <= t < outage[1])
        out["peak_after_recovery_per_s"] = max(per_second[int(outage[1]) :])
        out["peak_after_recovery_per_100ms_as_per_s"] = 10 * max(
            (n for tenth, n in per_tenth.items() if tenth >= int(10 * outage[1])), default=0
        )
    return out


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    results: dict[str, Any] = {}

    fleets = [2] if args.quick else [2, 4]
    seconds = 20.0 if args.quick else 40.0
    results["measured"] = []
    for p in fleets:
        log(f"measured: {p} processes, {seconds:.0f}s, access tokens live 10s, refresh margin 2s")
        m = measured(p, seconds, access=10.0, margin=2.0)
        log(
            f"  {m['logins']} logins, {m['refreshes']} refreshes, {m['rejected_401']} 401s in {m['seconds']:.1f}s: "
            f"{m['refreshes_per_hour']:.0f} refreshes/h (predicted {m['predicted_refreshes_per_hour']:.0f}, "
            f"lifetime implies {m['lifetime_implied_per_hour']:.0f}); the seed would log in {m['seed_logins_per_hour']:.0f}/h"
        )
        results["measured"].append(m)

    sim: dict[str, Any] = {
        "assumptions": {
            "processes": 1000,
            "hosts": 125,
            "children_per_host": 8,
            "hosts_start_within_s": 10,
            "children_fork_within_s": 0.02,
            "task_every_s": 0.1,
            "access_seconds": 300,
            "refresh_margin": 60,
        }
    }
    log("simulated: 1,000 processes starting within 10 s (normal start, 600 s)")
    sim["normal"] = simulate(duration=600.0, task_every=1.0)
    outage = (0.0, 30.0)
    scenarios = [("outage", 10.0), ("outage_together", 0.5)]
    for prefix, spread in scenarios:
        for jitter in (True, False):
            key = f"{prefix}_{'jitter' if jitter else 'no_jitter'}"
            log(
                f"simulated: processes start within {spread:g} s, auth server down for the first 30 s, "
                f"{'random jitter' if jitter else 'rand() = 0.5'}"
            )
            sim[key] = simulate(duration=120.0, outage=outage, jitter=jitter, spread=spread)
    for key, s in sim.items():
        if key == "assumptions":
            continue
        log(
            f"  {key:26s} peak {s['peak_per_s']:5d}/s (100 ms: {s['peak_per_100ms_as_per_s']}/s), "
            f"after recovery {s.get('peak_after_recovery_per_s', '-')}/s, {s['calls']} calls, "
            f"{s['failed_calls']} failed, {s['processes_logged_in']} logged in"
        )
    results["simulation"] = sim
    write_results("token_load", results, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
