"""Shared helpers for the infra tests (run by `make infra-check`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infra" / "template.yaml"
GUARD_RULES = ROOT / "infra" / "guard"
PY = sys.executable

# The local stack's package (scripts/xcrlocal), importable here as it is from scripts/*.py.
sys.path.insert(0, str(ROOT / "scripts"))
from xcrlocal.template import load_template  # noqa: E402


@pytest.fixture(scope="session")
def cfn_guard() -> Path:
    path = Path(os.environ.get("XCR_CFN_GUARD", ROOT / ".tools" / "bin" / "cfn-guard"))
    if not path.is_file():
        pytest.fail(f"cfn-guard not found at {path}: run `make cfn-guard` (installs it into .tools/)")
    return path


@pytest.fixture()
def template() -> dict:
    """A fresh parsed copy of infra/template.yaml (short tags in their long form)."""
    return load_template(TEMPLATE)
