"""xcr's local stack without Docker, as a package the scripts in scripts/ import.

One module per role, so that a reader finds each in one place:

    supervise   the emulator processes: start on free loopback ports, tell ours from a
                neighbour's or a recycled PID, stop exactly them; the stack directory's
                pids.json, logs/ and lock
    template    infra/template.yaml read as CloudFormation reads it: short tags,
                intrinsic functions, parameter constraints and `Rules`
    deployer    the template deployed to an emulator's CloudFormation, then what that
                emulator silently drops applied with ordinary API calls; the GCS bucket
    env         local.env: the KEY=VALUE contract between a stack and xcr, its tests
                and the other scripts
    cli         `scripts/stack.py up|down|status|env` (scripts/stack.py only calls main)

Who imports what: scripts/stack.py runs `cli`; scripts/deploy.py deploys through
`deployer` and `template` and starts a stack through `cli`; demo.py and bench.py read
local.env through `env`; tests/infra use `template`, `supervise` and `env`.

Only the standard library is imported at module level, here and in `supervise`, `env` and
`cli`: `stack.py down`, `status` and `env` must work from a broken virtualenv. boto3 and
PyYAML are imported where they are used (`deployer`, `template`).

This file holds what every module shares: the stack's fixed names, the one error type
and the one way to print.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
# The command line users, the Makefile and the tests run (printed in `up`'s "stop:" hint).
STACK_SCRIPT = ROOT / "scripts" / "stack.py"

REGION = "us-east-1"
ACCESS_KEY = "test"
SECRET_KEY = "test"
STACK_NAME = "xcr"
GCS_PROJECT = "local"
DEFAULT_DEST_BUCKET = "xcr-dest"
DEFAULT_TIMEOUT = 60.0

# Loopback only: the stack must never listen on, or be reached through,
# anything else. Ignore HTTP(S)_PROXY for the same reason.
HOST = "127.0.0.1"
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class StackError(Exception):
    """An expected failure: printed as one readable message, no traceback."""


def say(*parts: Any, end: str = "\n") -> None:
    """Print to stdout, surviving a reader that went away (`stack.py up | head -1`).

    Output is informational: losing it must never abort `down` half-way or turn
    a successful `up` into a failure.
    """
    try:
        print(*parts, end=end, flush=True)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def now() -> str:
    """UTC now as local.env's header and pids.json write it."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_atomic(path: Path, text: str) -> None:
    """Replace path's content at once: a reader sees the old file or the new one, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
