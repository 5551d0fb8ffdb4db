"""`scripts/stack.py up --gcs fake-gcs-server`: the stricter GCS emulator as a stack choice.

What it proves: the choice is recorded in local.env (`XCR_GCS_EMULATOR`); what answers at
STORAGE_EMULATOR_HOST is really fake-gcs-server (it enforces `ifGenerationMatch` on a multipart
upload, which gcp-storage-emulator ignores: the google-cloud-storage client, not xcr, checks
that); xcr replicates a 0-byte, a small and a resumable (several chunks) object through it,
byte-exact when read back with the google-cloud-storage client; `down` stops it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from conftest import PY, ROOT
from xcrlocal.env import read_env
from xcrlocal.supervise import load_pids

XCR = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target") / "debug" / "xcr"


@pytest.fixture()
def fake_gcs_stack(tmp_path):
    d = tmp_path / "stack"
    up = subprocess.run([PY, str(ROOT / "scripts/stack.py"), "up", "--dir", str(d), "--gcs", "fake-gcs-server"],
                        capture_output=True, text=True, timeout=180)
    assert up.returncode == 0, up.stderr
    try:
        yield d, read_env(d / "local.env")
    finally:
        subprocess.run([PY, str(ROOT / "scripts/stack.py"), "down", "--dir", str(d)], capture_output=True, timeout=60)


def test_fake_gcs_server_is_a_stack_choice_that_enforces_preconditions(fake_gcs_stack):
    from google.api_core.exceptions import PreconditionFailed
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    d, env = fake_gcs_stack
    assert env["XCR_GCS_EMULATOR"] == "fake-gcs-server"
    pids = {p.name: p for p in load_pids(d)}
    assert "fake-gcs-server" in " ".join(pids["gcs"].argv)

    os.environ["STORAGE_EMULATOR_HOST"] = env["STORAGE_EMULATOR_HOST"]
    client = storage.Client(project="test", credentials=AnonymousCredentials())
    blob = client.bucket(env["XCR_DEST_BUCKET"]).blob("precondition/probe.txt")
    blob.upload_from_string(b"first", if_generation_match=0)
    with pytest.raises(PreconditionFailed):
        blob.upload_from_string(b"second", if_generation_match=0)

    if not XCR.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{XCR} not built although CI is set")
        pytest.skip(f"{XCR} not built (cargo build)")
    import boto3

    s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_REGION"],
                      aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    objects = {"fg/empty.bin": b"", "fg/small.txt": b"hello fake-gcs-server\n",
               "fg/chunks.bin": hashlib.sha256(b"x").digest() * (3 * 256 * 1024 // 32 + 7)}
    run_env = {**{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "XCR_"))}, **env,
               "XCR_LOG": "warn", "XCR_CHUNK_SIZE": "256KiB", "XCR_RESUMABLE_THRESHOLD": "256KiB"}
    for key, data in objects.items():
        s3.put_object(Bucket=env["XCR_SOURCE_BUCKET"], Key=key, Body=data)
        proc = subprocess.run([str(XCR), "replicate", f"s3://{env['XCR_SOURCE_BUCKET']}/{key}"], env=run_env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith("replicated"), proc.stdout
    for key, data in objects.items():
        got = client.bucket(env["XCR_DEST_BUCKET"]).get_blob(key)
        assert got is not None, key
        assert got.size == len(data) and got.download_as_bytes() == data, key
        assert got.metadata.get("xcr-source-key") == key
