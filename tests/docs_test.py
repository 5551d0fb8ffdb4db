#!/usr/bin/env python3
"""Run the documentation's shell blocks as a newcomer would, so the docs cannot drift.

    .venv/bin/python tests/docs_test.py [--target-dir DIR] [FILE ...]

Every ```sh (or bash, shell) block in README.md, docs/*.md, infra/DEPLOY.md and
localstack/README.md must be preceded by one of these markers on the line before the fence:

    <!-- runnable -->                  run by this test
    <!-- runnable: setup -->           README's quickstart set-up: run first for every file
    <!-- not-runnable: WHY -->         not run (real AWS, a multi-minute build, ...): WHY says so

An unmarked shell block fails the test: a block nobody runs is a block that may not work.

For each file with runnable blocks, in a fresh scratch directory that looks like a checkout
(every top-level entry of the repository symlinked, `target` pointing at the build's target
directory, no `.xcr`), the test starts a PRIVATE local stack exactly as `make local-up` does
(`scripts/stack.py up --dir .xcr`), then runs README's set-up block and the file's runnable
blocks in order, in one bash process (so a variable one block sets is there for the next), each
under `set -e -o pipefail`. A block fails on the first command that exits non-zero. A comment line
`# expect: TEXT` in a block asserts that the block's stdout contains TEXT, after whatever the
previous `# expect:` line matched. Background processes the blocks start are killed, and the
stack is stopped, whatever happens.

The debug `xcr` (`make build`, found in --target-dir/debug) and `.venv` (`make venv`) are
needed. Files run two at a time (--jobs), each on its own stack. Without them the test fails under CI=true and otherwise says what to run and exits 0
without running anything (`make docs-test` builds both first).

Exit codes: 0 every block ran and every expectation held; 1 a block failed, an expectation did
not hold, or a shell block is unmarked; 2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHELL_INFO = {"sh", "bash", "shell"}
MARKER = re.compile(r"^<!--\s*(runnable(?::\s*setup)?|not-runnable:\s*\S.*?)\s*-->\s*$")
EXPECT = re.compile(r"^\s*#\s*expect:\s?(.*)$")
# Files whose shell blocks must be marked. Runnable blocks are run from the first two only.
RUN_GLOBS = ["README.md", "docs/*.md"]
CHECK_ONLY = ["infra/DEPLOY.md", "localstack/README.md"]
FILE_TIMEOUT_SECS = 300
# Never linked into the scratch checkout: local state and build output of the real one.
NOT_LINKED = {".xcr", "target", ".git"}


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    kind: str  # "runnable", "setup" or "not-runnable"
    text: str
    expects: list[str] = field(default_factory=list)


def parse(path: Path) -> tuple[list[Block], list[str]]:
    """The shell blocks of one Markdown file, and the problems with their markers."""
    blocks: list[Block] = []
    problems: list[str] = []
    lines = path.read_text(encoding="utf-8").split("\n")
    rel = path.relative_to(ROOT)
    i = 0
    pending_marker: tuple[int, str] | None = None
    while i < len(lines):
        line = lines[i]
        m = MARKER.match(line.strip())
        if m:
            if pending_marker:
                problems.append(f"{rel}:{pending_marker[0]}: a marker not followed by a shell block")
            pending_marker = (i + 1, m.group(1))
            i += 1
            continue
        fence = re.match(r"^(\s*)(```+|~~~+)\s*([\w+-]*)", line)
        if not fence:
            if line.strip() and pending_marker:
                problems.append(f"{rel}:{pending_marker[0]}: a marker not followed by a shell block")
                pending_marker = None
            i += 1
            continue
        ticks, info = fence.group(2), fence.group(3).lower()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(ticks):
            body.append(lines[j])
            j += 1
        if info in SHELL_INFO:
            if pending_marker is None:
                problems.append(
                    f"{rel}:{i + 1}: a shell block without a marker: put <!-- runnable --> (run by "
                    f"make docs-test) or <!-- not-runnable: WHY --> on the line before the fence"
                )
            else:
                kind = pending_marker[1]
                kind = "setup" if kind.startswith("runnable:") else kind.split(":")[0]
                text = "\n".join(body) + "\n"
                expects = [e.group(1).strip() for e in map(EXPECT.match, body) if e]
                blocks.append(Block(path, i + 1, kind, text, expects))
        elif pending_marker is not None:
            problems.append(f"{rel}:{pending_marker[0]}: a marker before a {info or 'plain'} block, not a shell block")
        pending_marker = None
        i = j + 1
    if pending_marker:
        problems.append(f"{rel}:{pending_marker[0]}: a marker not followed by a shell block")
    return blocks, problems


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def scratch_checkout(work: Path, target_dir: Path) -> Path:
    """A directory that looks like a fresh checkout: the repository's entries symlinked."""
    repo = work / "checkout"
    repo.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in NOT_LINKED:
            (repo / entry.name).symlink_to(entry)
    (repo / "target").symlink_to(target_dir.resolve())
    return repo


def run_file(blocks: list[Block], setup: Block, target_dir: Path, python: Path) -> list[str]:
    """Runs one file's blocks (after the set-up block) on a private stack; returns failures."""
    rel = blocks[0].path.relative_to(ROOT)
    run = [setup] + [b for b in blocks if b is not setup]
    work = Path(tempfile.mkdtemp(prefix="xcr-docs-test-"))
    repo = scratch_checkout(work, target_dir)
    stack = [str(python), str(ROOT / "scripts/stack.py")]
    failures: list[str] = []
    proc = None
    try:
        up = subprocess.run([*stack, "up", "--dir", str(repo / ".xcr")], capture_output=True, text=True)
        if up.returncode != 0:
            return [f"{rel}: the local stack did not start (rc {up.returncode}):\n{up.stderr[-2000:]}"]
        driver = ["set -e -o pipefail", f"cd {sh_quote(str(repo))}"]
        for n, block in enumerate(run):
            (work / f"block_{n}.sh").write_text(block.text, encoding="utf-8")
            driver.append(
                f". {sh_quote(str(work / f'block_{n}.sh'))} > {sh_quote(str(work / f'out_{n}'))} "
                f"2> {sh_quote(str(work / f'err_{n}'))}; echo ok > {sh_quote(str(work / f'rc_{n}'))}"
            )
        (work / "driver.sh").write_text("\n".join(driver) + "\n", encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("XCR_", "AWS_", "STORAGE_EMULATOR"))}
        proc = subprocess.Popen(["bash", str(work / "driver.sh")], cwd=repo, env=env, start_new_session=True,
                                stdin=subprocess.DEVNULL)
        try:
            rc = proc.wait(timeout=FILE_TIMEOUT_SECS)
        except subprocess.TimeoutExpired:
            rc = None
        for n, block in enumerate(run):
            where = f"{block.path.relative_to(ROOT)}:{block.line}"
            out = read(work / f"out_{n}")
            if not (work / f"rc_{n}").exists():
                why = f"timed out after {FILE_TIMEOUT_SECS} s" if rc is None else f"a command exited {rc}"
                failures.append(f"{where}: {why}\n{indent(block.text)}\n--- stdout\n{indent(tail(out))}\n"
                                f"--- stderr\n{indent(tail(read(work / f'err_{n}')))}")
                break
            at = 0
            for expect in block.expects:
                found = out.find(expect, at)
                if found < 0:
                    failures.append(f"{where}: expected {expect!r} in the output (after what the previous "
                                    f"expectation matched), got:\n{indent(tail(out))}")
                    break
                at = found + len(expect)
    finally:
        if proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        subprocess.run([*stack, "down", "--dir", str(repo / ".xcr")], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    return failures


def read(p: Path) -> str:
    return p.read_text(encoding="utf-8", errors="replace") if p.exists() else ""


def tail(s: str, n: int = 40) -> str:
    return "\n".join(s.rstrip("\n").split("\n")[-n:])


def indent(s: str) -> str:
    return "\n".join("    " + l for l in s.rstrip("\n").split("\n"))


def sh_quote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target-dir", default=os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target")),
                    help="cargo's target directory; the debug xcr is DIR/debug/xcr")
    ap.add_argument("--jobs", type=int, default=int(os.environ.get("XCR_DOCS_TEST_JOBS", "2")),
                    help="files run at once, each on its own stack (default 2)")
    ap.add_argument("files", nargs="*", help="only these Markdown files (default: README.md and docs/*.md)")
    args = ap.parse_args()

    run_files = sorted({p for g in RUN_GLOBS for p in ROOT.glob(g)})
    if args.files:
        wanted = {Path(f).resolve() for f in args.files}
        unknown = wanted - set(run_files)
        if unknown:
            print(f"docs-test: not a documentation file: {', '.join(map(str, sorted(unknown)))}", file=sys.stderr)
            return 2
        run_files = [p for p in run_files if p in wanted]

    parsed = {p: parse(p) for p in sorted(set(run_files) | {ROOT / f for f in CHECK_ONLY if (ROOT / f).exists()})}
    problems = [msg for _, probs in parsed.values() for msg in probs]
    if (ROOT / "README.md") not in parsed:
        parsed[ROOT / "README.md"] = parse(ROOT / "README.md")
    setups = [b for blocks, _ in parsed.values() for b in blocks if b.kind == "setup"]
    if len(setups) != 1 or setups[0].path != ROOT / "README.md":
        problems.append("exactly one <!-- runnable: setup --> block is needed, README.md's quickstart")
    if problems:
        print("docs-test: unmarked or misplaced blocks:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1

    target_dir = Path(args.target_dir)
    xcr = target_dir / "debug" / "xcr"
    python = ROOT / ".venv/bin/python"
    missing = [what for what, ok in ((f"the debug xcr ({xcr}: make build)", xcr.is_file()),
                                     (f"the virtualenv ({python.parent.parent}: make venv)", python.exists())) if not ok]
    if missing:
        msg = "docs-test: missing " + " and ".join(missing)
        if in_ci():
            print(msg + " (CI=true: failing instead of skipping)", file=sys.stderr)
            return 1
        print(msg + "; not running the blocks (make docs-test builds them first)", file=sys.stderr)
        return 0

    setup = setups[0]
    todo = [(p, [b for b in parsed[p][0] if b.kind in {"runnable", "setup"}]) for p in run_files]
    todo = [(p, bs) for p, bs in todo if bs]

    def one(item: tuple[Path, list[Block]]) -> list[str]:
        path, blocks = item
        started = time.monotonic()
        errs = run_file(blocks, setup, target_dir, python)
        took = time.monotonic() - started
        print(f"docs-test: {path.relative_to(ROOT)}: {len(blocks)} block(s) {'FAILED' if errs else 'ok'} "
              f"({took:.1f} s)", flush=True)
        return errs

    failures: list[str] = []
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for errs in pool.map(one, todo):
            failures += errs
    if failures:
        print("\n\n".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
