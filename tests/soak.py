#!/usr/bin/env python3
"""The race and timing tests, run again and again with the machine's other core kept busy.

A race or a timing assumption that holds on an idle machine can fail on a loaded one: CI shares
this 2-core machine, and a Lambda's CPU share is a fraction of a core. `make soak` (this script)
runs the tests whose outcome depends on interleavings or on timers, `--runs` times in a row
(20 by default), while `--load` busy-loop processes (1 by default: one core of two) compete
for the CPU. It stops at the first failure, prints the failing run's output and exits 1;
otherwise it prints one line per run and exits 0. The result is also written as JSON under
`target/soak/`, for a note or an issue.

What runs, and why each is here:

- `cargo test --lib`: unit tests with timers (the upload journal's interval, retry backoff,
  budgets, the retry clock).
- `tests/replicate.rs`: one event delivered ten times at once, versions of one key raced
  against each other over seeds, an older copy still uploading when a newer one completes
  (fenced by GCS), a crashed claim's lease expiring, partial batch failures, the DLQ.
- `tests/fencing.rs`: holders that lost their lease against GCS preconditions.
- `tests/fault_cases.rs`: one scripted fault at a time, each at the request it targets.
- `tests/retry_clock.rs`: a failed SQS record's return in seconds, a poison message reaching
  the DLQ on the clock.
- `tests/faults.rs`: objects through injected faults on every path with concurrent duplicate
  deliveries, each object uploaded once; with `XCR_FAULT_OBJECTS` objects per run (100
  here by default, 500 in `make test`), so that 20 runs take minutes, not an hour.

Usage: tests/soak.py [--runs N] [--load N] [--only replicate,faults,...] [--fault-objects N]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: name -> cargo test arguments. Order: cheapest first, so a failure shows early.
SUITES: dict[str, list[str]] = {
    "lib": ["--lib"],
    "retry_clock": ["--test", "retry_clock"],
    "fault_cases": ["--test", "fault_cases"],
    "fencing": ["--test", "fencing"],
    "replicate": ["--test", "replicate"],
    "faults": ["--test", "faults"],
}


def busy_loops(n: int) -> list[subprocess.Popen]:
    """`n` processes that each keep one core busy until they are killed."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def cargo_test(args: list[str], env: dict[str, str], no_run: bool = False) -> subprocess.CompletedProcess:
    cmd = ["cargo", "test", "--quiet", *args]
    if no_run:
        cmd.insert(2, "--no-run")
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=int(os.environ.get("SOAK_RUNS", "20")))
    ap.add_argument("--load", type=int, default=int(os.environ.get("SOAK_LOAD", "1")),
                    help="busy-loop processes competing for the CPU (default 1: the other core)")
    ap.add_argument("--only", default=os.environ.get("SOAK_ONLY", ",".join(SUITES)),
                    help=f"comma-separated suites, of: {', '.join(SUITES)}")
    ap.add_argument("--fault-objects", type=int, default=int(os.environ.get("SOAK_FAULT_OBJECTS", "100")),
                    help="objects per tests/faults.rs run (XCR_FAULT_OBJECTS)")
    a = ap.parse_args()
    names = [n.strip() for n in a.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in SUITES]
    if unknown or not names or a.runs < 1 or a.load < 0:
        ap.error(f"unknown suite(s) {unknown}" if unknown else "nothing to run")
    env = dict(os.environ, XCR_FAULT_OBJECTS=str(a.fault_objects))

    # Built once, before the load starts: the runs time the tests, not the compiler.
    for name in names:
        built = cargo_test(SUITES[name], env, no_run=True)
        if built.returncode != 0:
            print(built.stdout[-4000:], built.stderr[-4000:], sep="\n", file=sys.stderr)
            print(f"soak: {name} does not build", file=sys.stderr)
            return 1

    out_dir = Path(env.get("CARGO_TARGET_DIR", ROOT / "target")) / "soak"
    out_dir.mkdir(parents=True, exist_ok=True)
    record = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "runs": a.runs, "load": a.load,
              "cpus": os.cpu_count(), "fault_objects": a.fault_objects, "suites": names, "results": []}
    load = busy_loops(a.load)
    failed = None
    try:
        for run in range(1, a.runs + 1):
            times = {}
            for name in names:
                t0 = time.monotonic()
                done = cargo_test(SUITES[name], env)
                times[name] = round(time.monotonic() - t0, 1)
                if done.returncode != 0:
                    failed = (run, name, done)
                    break
            load_avg = os.getloadavg()[0]
            record["results"].append({"run": run, "seconds": times, "load1": round(load_avg, 1),
                                      "failed": failed[1] if failed else None})
            took = " ".join(f"{n} {s:.0f}s" for n, s in times.items())
            print(f"run {run}/{a.runs}: {'FAILED ' + failed[1] if failed else 'ok'}  ({took}; load {load_avg:.1f})",
                  flush=True)
            if failed:
                break
    finally:
        for p in load:
            p.kill()
        record["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        out = out_dir / f"soak-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.json"
        out.write_text(json.dumps(record, indent=2) + "\n")
        print(f"written to {out}")
    if failed:
        run, name, done = failed
        print(done.stdout[-8000:], done.stderr[-8000:], sep="\n", file=sys.stderr)
        print(f"soak: {name} failed on run {run} of {a.runs}", file=sys.stderr)
        return 1
    print(f"soak: {len(names)} suite(s) passed {a.runs} runs in a row with {a.load} busy core(s) of "
          f"{os.cpu_count()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
