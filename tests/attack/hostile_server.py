"""`notrace serve` whose children run tests.attack.child_entry:run (notrace's entry with
a back door for attack orders): `python -m tests.attack.hostile_server [ignored...]`.

Used as the `wrapper` of tests.service.server.Server, so it is started, read and stopped
like any test server (the rest of its command line, the real `notrace serve`, is ignored).
It is not the notrace command itself, so it does not re-exec (notrace.hygiene).
"""
from __future__ import annotations

import sys

import notrace.app
from notrace.cli import main

notrace.app.ENTRY = "tests.attack.child_entry:run"

if __name__ == "__main__":
    sys.exit(main(["serve"]))
