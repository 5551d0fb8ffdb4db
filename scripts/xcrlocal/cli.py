"""`scripts/stack.py up|down|status|env`: the local stack's command line.

This command line is a contract: the Makefile (`make local-up`, `local-down`,
`local-status`, `demo`), the docs, the Rust integration tests (tests/common), the infra
tests, bench.py, docs_test.py and users' own scripts run it. Its arguments, output, exit
codes and the files it writes in --dir (pids.json, logs/, local.env) change only on purpose.

Exit codes: 0 success; 1 an expected failure, explained on stderr without a traceback;
2 bad usage; 3 `status` found the stack not (fully) running.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from xcrlocal import DEFAULT_DEST_BUCKET, DEFAULT_TIMEOUT, STACK_SCRIPT, StackError, say, write_atomic
from xcrlocal.deployer import LOCAL_PARAMETERS, Deployer, create_gcs_bucket
from xcrlocal.env import ENV_FILE, env_values, read_env, render_env
from xcrlocal.supervise import (
    DEFAULT_GCS_EMULATOR,
    GCS_EMULATORS,
    LOG_DIR,
    SERVICES,
    Running,
    is_ours,
    load_pids,
    locked,
    save_pids,
    start_services,
    stop_all,
)
from xcrlocal.template import TEMPLATE, load_template


def cmd_up(args: argparse.Namespace) -> int:
    started_at = time.monotonic()
    stack_dir: Path = args.dir
    env_path = stack_dir / ENV_FILE
    params = dict(parse_param(p) for p in args.param)

    with locked(stack_dir):
        existing = load_pids(stack_dir)
        if existing and all(is_ours(p) for p in existing) and env_path.exists():
            say(f"stack in {stack_dir} is already up")
            current = read_env(env_path)
            if current.get("XCR_DEST_BUCKET") != args.dest_bucket:
                print(
                    f"warning: it uses GCS bucket {current.get('XCR_DEST_BUCKET')!r}, not "
                    f"{args.dest_bucket!r}: run `down` first to change it",
                    file=sys.stderr,
                )
            for proc in existing:
                say(f"  {proc.name:5} pid {proc.pid:<7} {proc.url}")
            say(f"env file: {env_path}")
            return 0
        if existing:
            print(f"cleaning up a stale or partial stack in {stack_dir}", file=sys.stderr)
            stop_all(stack_dir, existing, quiet=True)
        with contextlib.suppress(FileNotFoundError):
            env_path.unlink()  # never leave an env file pointing at dead ports

        (stack_dir / LOG_DIR).mkdir(parents=True, exist_ok=True)
        procs: list[Running] = []

        def record(current: list[Running]) -> None:
            procs[:] = current
            save_pids(stack_dir, current)

        template: dict[str, Any] = {}

        def prepare() -> None:
            importlib.import_module("boto3")  # the slowest import: overlap it with the boot

            template.update(load_template(args.template))

        try:
            services = (SERVICES[0], GCS_EMULATORS[args.gcs])
            start_services(stack_dir, args.timeout, record, prepare, services)
            moto, gcs = procs
            t_started = time.monotonic() - started_at

            for key, value in LOCAL_PARAMETERS.items():
                if key in template.get("Parameters", {}):
                    params.setdefault(key, value)
            deployer = Deployer(moto.url, args.template, template, params, args.timeout)
            outputs = deployer.deploy()
            create_gcs_bucket(gcs.url, args.dest_bucket)

            values = env_values(
                outputs, aws_url=moto.url, gcs_url=gcs.url, dest_bucket=args.dest_bucket, stack_dir=stack_dir
            )
            values["XCR_GCS_EMULATOR"] = args.gcs
            write_atomic(env_path, render_env(values, stack_dir))
        except BaseException:
            stop_all(stack_dir, procs, quiet=True)
            raise

    elapsed = time.monotonic() - started_at
    say(f"xcr local stack up in {elapsed:.1f} s (emulators {t_started:.1f} s) in {stack_dir}")
    say(f"  {'AWS (moto)':13} {moto.url:24} pid {moto.pid}")
    say(f"  {'GCS emulator':13} {gcs.url:24} pid {gcs.pid} ({args.gcs})")
    for key in ("XCR_SOURCE_BUCKET", "XCR_DEST_BUCKET", "XCR_LEDGER_TABLE", "XCR_JOBS_TABLE", "XCR_QUEUE_URL", "XCR_DLQ_URL"):
        say(f"  {key:19} {values[key]}")
    for note in deployer.notes:
        say(f"  note: {note}")
    say(f"env file: {env_path}")
    say(f"  load:   set -a; . {shlex.quote(str(env_path))}; set +a")
    say(f"  stop:   {shlex.quote(sys.executable)} {shlex.quote(str(STACK_SCRIPT))} down --dir {shlex.quote(str(stack_dir))}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    stack_dir: Path = args.dir
    if not stack_dir.is_dir():
        say(f"no stack in {stack_dir}: nothing to stop")
        return 0
    with locked(stack_dir):
        procs = load_pids(stack_dir)
        if not procs:
            say(f"no stack running in {stack_dir}: nothing to stop")
            return 0
        stop_all(stack_dir, procs)
        with contextlib.suppress(FileNotFoundError):
            (stack_dir / ENV_FILE).unlink()
    say(f"stack in {stack_dir} is down")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    procs = load_pids(args.dir) if args.dir.is_dir() else []
    if not procs:
        say(f"no stack in {args.dir}")
        return 3
    running = 0
    for proc in procs:
        alive = is_ours(proc)
        running += alive
        state = "running" if alive else "stopped"
        say(f"{proc.name:5} {state:8} pid {proc.pid:<7} {proc.url}  log {args.dir / proc.log}")
    env_path = args.dir / ENV_FILE
    if env_path.exists():
        say(f"env file: {env_path}")
    else:
        say(f"no env file at {env_path}: `up` did not finish")
    return 0 if running == len(procs) and env_path.exists() else 3


def cmd_env(args: argparse.Namespace) -> int:
    env_path = args.dir / ENV_FILE
    if not env_path.exists():
        raise StackError(f"no env file at {env_path}; run `stack.py up --dir {args.dir}` first")
    if args.export:
        for key, value in read_env(env_path).items():
            say(f"export {key}={shlex.quote(value)}")
    else:
        say(env_path.read_text(), end="")
    return 0


def parse_param(text: str) -> tuple[str, str]:
    """One `--param KEY=VALUE` (scripts/deploy.py takes the same option)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise StackError(f"--param expects KEY=VALUE, got {text!r}")
    return key, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="stack.py",
        description="Run xcr's local emulator stack (moto + gcp-storage-emulator) without Docker.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def with_dir(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--dir",
            required=True,
            type=lambda s: Path(s).expanduser().resolve(),
            help="directory holding this stack's pids.json, logs/ and local.env",
        )
        return p

    up = with_dir(sub.add_parser("up", help="start the emulators, deploy the template, write local.env"))
    up.add_argument("--dest-bucket", default=DEFAULT_DEST_BUCKET, help="GCS bucket to create (default %(default)s)")
    up.add_argument("--gcs", choices=sorted(GCS_EMULATORS), default=DEFAULT_GCS_EMULATOR,
                    help="which GCS emulator to run (default %(default)s; recorded in local.env as XCR_GCS_EMULATOR)")
    up.add_argument("--template", type=lambda s: Path(s).resolve(), default=TEMPLATE, help="CloudFormation template (default infra/template.yaml)")
    up.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="template parameter override (repeatable)")
    up.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds to wait for each step (default %(default)s)")
    up.set_defaults(func=cmd_up)

    with_dir(sub.add_parser("down", help="stop the stack started in --dir")).set_defaults(func=cmd_down)
    with_dir(sub.add_parser("status", help="show whether the stack in --dir runs (exit 3 if not)")).set_defaults(func=cmd_status)
    env = with_dir(sub.add_parser("env", help="print the stack's local.env"))
    env.add_argument("--export", action="store_true", help="print `export KEY=VALUE` lines for eval")
    env.set_defaults(func=cmd_env)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except StackError as err:
        print(f"stack.py {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"stack.py {args.command}: interrupted", file=sys.stderr)
        return 130
    except ImportError as err:
        print(
            f"stack.py {args.command}: error: {err}; run with the project's virtualenv "
            f"(.venv/bin/python after `pip install -r requirements.txt`)",
            file=sys.stderr,
        )
        return 1
    except Exception as err:  # botocore errors: show the message, not a traceback
        module = type(err).__module__
        if module.startswith(("botocore", "boto3", "urllib3")):
            print(f"stack.py {args.command}: error talking to moto: {err}", file=sys.stderr)
            return 1
        raise
