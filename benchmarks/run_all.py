"""Run every benchmark, then write the plots and the docs' Performance figures.

    python benchmarks/run_all.py             # the full run (about 10-15 minutes)
    python benchmarks/run_all.py --quick     # a short run (about 3 minutes)
    python benchmarks/run_all.py --only e2e per_request
    python benchmarks/run_all.py --report-only

Each benchmark runs in its own Python process (``benchmarks/<name>.py``) and
writes ``benchmarks/results/<name>.json``; ``benchmarks/report.py`` then
writes ``docs/_static/bench/*.png`` and ``docs/performance_results.inc``.
A benchmark that fails is reported and the others still run; the exit status
is then 1.  No benchmark asserts a timing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BENCHMARKS = ["e2e", "per_request", "token_load", "growth", "modes"]
#: Longest a benchmark may run before it is stopped (seconds): full, quick.
LIMITS = {
    "e2e": (600, 240),
    "per_request": (300, 120),
    "token_load": (300, 150),
    "growth": (600, 150),
    "modes": (240, 120),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (about 3 minutes)")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these benchmarks")
    parser.add_argument("--report-only", action="store_true", help="only rebuild the plots and the docs figures")
    args = parser.parse_args(argv)

    RESULTS.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    failed: list[str] = []
    names = [] if args.report_only else (args.only or BENCHMARKS)
    for name in names:
        limit = LIMITS[name][1 if args.quick else 0]
        cmd = [sys.executable, str(HERE / f"{name}.py"), "--out", str(RESULTS / f"{name}.json")]
        if args.quick:
            cmd.append("--quick")
        print(f"=== {name} ({'quick' if args.quick else 'full'}; at most {limit} s)", flush=True)
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=HERE.parent, start_new_session=True)
        try:
            code = proc.wait(limit)
        except subprocess.TimeoutExpired:
            print(f"=== {name}: still running after {limit} s; stopping it", flush=True)
            proc.terminate()  # its own finally blocks stop the servers and workers it started
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)  # the process group this script created for it
                proc.wait(10)
            code = -1
        except BaseException:
            proc.terminate()
            proc.wait(60)
            raise
        print(f"=== {name}: {'ok' if code == 0 else f'FAILED ({code})'} in {time.monotonic() - t0:.0f} s", flush=True)
        if code != 0:
            failed.append(name)
    if names:
        run = {
            "quick": args.quick,
            "benchmarks": names,
            "failed": failed,
            "seconds": time.monotonic() - started,
            "finished_at": time.strftime("%Y-%m-%d %H:%M"),
        }
        (RESULTS / "run.json").write_text(json.dumps(run, indent=1))
    sys.path.insert(0, str(HERE))
    import report

    report.main()
    print(f"=== all done in {time.monotonic() - started:.0f} s; failed: {', '.join(failed) or 'none'}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
