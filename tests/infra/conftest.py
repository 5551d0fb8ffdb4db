"""Shared helpers for the infra tests (run by `make infra-check`)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infra" / "template.yaml"
GUARD_RULES = ROOT / "infra" / "guard"
PY = sys.executable


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


stack = _load("xcr_stack", ROOT / "scripts" / "stack.py")


@pytest.fixture(scope="session")
def cfn_guard() -> Path:
    path = Path(os.environ.get("XCR_CFN_GUARD", ROOT / ".tools" / "bin" / "cfn-guard"))
    if not path.is_file():
        pytest.fail(f"cfn-guard not found at {path}: run `make cfn-guard` (installs it into .tools/)")
    return path


@pytest.fixture()
def template() -> dict:
    """A fresh parsed copy of infra/template.yaml (short tags in their long form)."""
    return stack.load_template(TEMPLATE)
