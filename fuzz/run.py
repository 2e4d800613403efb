"""Fuzz driver: every property through the real sandbox, for as long as asked.

    python -m fuzz.run [--profile ci|long] [--examples N] [--minutes M] [--db DIR] [--seed S]
                       [--batch B] [--lanes L] [--regressions DIR] [--only NAME ...]

Runs in its own process (the fork server and children are started by the Sandbox). The
options override NOTRACE_FUZZ_PROFILE, NOTRACE_FUZZ_EXAMPLES, NOTRACE_FUZZ_MINUTES,
NOTRACE_FUZZ_DB, NOTRACE_FUZZ_SEED, NOTRACE_FUZZ_BATCH, NOTRACE_FUZZ_LANES and
NOTRACE_FUZZ_REGRESSIONS. With --minutes, rounds repeat with seed, seed+1, ... until the
time is up (the database, when given, keeps every failing example across runs and
replays it first). The contract runs up to --batch calls per example concurrently on the
sandbox's two workers, each submitted as soon as it is drawn, in --lanes shards at once
(threads, default 2), and the laws run --lanes at a time: while one lane waits for the
sandbox another generates. A call the run has already checked is not run again (the
closing line counts these repeats apart). Every
failure, shrunk, is written as a regression file (default tests/fuzz/regressions/,
replayed by tests/fuzz/test_regressions.py; --regressions "" writes none). Prints the
seeds, each failure, and the throughput at the end (examples per second, and where the
time went).
Exit status: 0 if every property held, 1 otherwise.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import os
import sys
import time
import traceback

from fuzz.properties import LAWS, Service, hypothesis_tests, profile


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=("ci", "long"))
    parser.add_argument("--examples", type=int, help="examples per property and round")
    parser.add_argument("--minutes", type=float, help="keep running rounds for this long")
    parser.add_argument("--db", help="directory of the Hypothesis example database")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--batch", type=int, help="contract calls per example, run concurrently")
    parser.add_argument("--lanes", type=int, help="threads running examples at once (contract "
                        "shards, laws side by side)")
    parser.add_argument("--regressions", help="directory for regression files ('' for none)")
    parser.add_argument("--only", nargs="+", choices=["contract", *LAWS], help="properties to run")
    args = parser.parse_args(argv)
    for option, variable in (("examples", "NOTRACE_FUZZ_EXAMPLES"), ("minutes", "NOTRACE_FUZZ_MINUTES"),
                             ("db", "NOTRACE_FUZZ_DB"), ("seed", "NOTRACE_FUZZ_SEED"),
                             ("batch", "NOTRACE_FUZZ_BATCH"), ("lanes", "NOTRACE_FUZZ_LANES"),
                             ("regressions", "NOTRACE_FUZZ_REGRESSIONS")):
        if getattr(args, option) is not None:
            os.environ[variable] = str(getattr(args, option))
    base = profile(args.profile)
    deadline = time.monotonic() + base.minutes * 60 if base.minutes else None
    failures: list[str] = []
    with Service() as service:
        service.start()
        service.throughput.restart()  # examples per second of fuzzing, not of start-up
        round_number = 0
        while True:
            run = dataclasses.replace(base, seed=base.seed + round_number)
            print(f"round {round_number}: profile={run.name} seed={run.seed} examples={run.examples} "
                  f"batch={run.batch} lanes={run.lanes} db={run.database} "
                  f"regressions={run.regressions}", flush=True)
            tests = [(name, test) for name, test in hypothesis_tests(service, run).items()
                     if not args.only or name in args.only]

            def one(name: str, test) -> None:
                if deadline and time.monotonic() > deadline:
                    return
                started = time.monotonic()
                try:
                    test()
                except Exception:  # noqa: BLE001  report every property, then fail at the end
                    failures.append(f"{name} (seed {run.seed})")
                    traceback.print_exc()
                print(f"  {name}: {time.monotonic() - started:.1f} s", flush=True)

            # The contract runs in its own lanes (shards); the laws, one job at a time
            # each, side by side: one lane generates while another waits for the sandbox.
            for name, test in tests:
                if name == "contract":
                    one(name, test)
            with concurrent.futures.ThreadPoolExecutor(run.lanes, thread_name_prefix="fuzz-law") as pool:
                for name, test in tests:
                    if name != "contract":
                        pool.submit(one, name, test)
            round_number += 1
            if deadline is None or time.monotonic() > deadline:
                break
    print(f"throughput: {service.throughput.line()}")  # closed: its processes are counted
    if failures:
        print("FAILED: " + ", ".join(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
