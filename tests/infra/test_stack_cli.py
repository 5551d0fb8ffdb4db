"""`scripts/stack.py down|status|env` need only the standard library.

What it proves: teardown works from a broken or missing virtualenv (`make local-down` falls back
to the system python3), because none of these commands imports boto3, botocore or PyYAML, even
indirectly through the xcrlocal package (cli imports deployer and template at module level;
they must keep their third-party imports inside the functions that need them). And the three
commands answer as documented on a directory with no stack: status exits 3, down 0, env 1.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from conftest import PY, ROOT

THIRD_PARTY = re.compile(r"\|\s*(boto3|botocore|yaml|s3transfer|urllib3)(\.|\s*$)", re.M)


@pytest.mark.parametrize("command,rc,says", [
    ("status", 3, "no stack in"),
    ("down", 0, "nothing to stop"),
    ("env", 1, "no env file at"),
])
def test_stdlib_only_commands(tmp_path, command, rc, says):
    proc = subprocess.run([PY, "-X", "importtime", str(ROOT / "scripts" / "stack.py"), command,
                           "--dir", str(tmp_path / "none")], capture_output=True, text=True, timeout=30)
    assert proc.returncode == rc, proc.stderr[-2000:]
    assert says in proc.stdout + proc.stderr
    imported = THIRD_PARTY.findall(proc.stderr)
    assert not imported, f"stack.py {command} imported {sorted({m for m, _ in imported})}"
