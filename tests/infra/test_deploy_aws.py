"""`make deploy` (scripts/deploy.py aws) offline: --dry-run plans, packaging
and parameter checks. No AWS account is needed or contacted."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import PY, ROOT

DEPLOY = ROOT / "scripts" / "deploy.py"

WIF = {
    "universe_domain": "googleapis.com",
    "type": "external_account",
    "audience": "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/xcr/providers/aws",
    "subject_token_type": "urn:ietf:params:aws:token-type:aws4_request",
    "token_url": "https://sts.googleapis.com/v1/token",
    "credential_source": {
        "environment_id": "aws1",
        "region_url": "http://169.254.169.254/latest/meta-data/placement/availability-zone",
        "url": "http://169.254.169.254/latest/meta-data/iam/security-credentials",
        "regional_cred_verification_url": "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15",
    },
    "service_account_impersonation_url": "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/xcr@p.iam.gserviceaccount.com:generateAccessToken",
}


@pytest.fixture()
def lambda_dir(tmp_path: Path) -> Path:
    for name in ("replicate", "api", "migrate"):
        (tmp_path / "lambda" / name).mkdir(parents=True)
        (tmp_path / "lambda" / name / "bootstrap.zip").write_bytes(f"zip of {name}".encode())
    return tmp_path / "lambda"


@pytest.fixture()
def wif(tmp_path: Path) -> Path:
    path = tmp_path / "wif.json"
    path.write_text(json.dumps(WIF, indent=2))
    return path


def dry_run(*args: str) -> subprocess.CompletedProcess:
    # No credentials, no endpoint: a dry run must not need them.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_SHARED_CREDENTIALS_FILE"] = env["AWS_CONFIG_FILE"] = "/nonexistent"
    proc = subprocess.run([PY, str(DEPLOY), "aws", "--dry-run", *args], capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_plan_lists_build_uploads_and_parameters(lambda_dir, wif):
    proc = dry_run("--lambda-dir", str(lambda_dir), "--gcp-credentials", str(wif), "--region", "eu-west-1",
                   "--param", "DestBucket=my-gcs-bucket", "--param", "ReplicateTimeout=300")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "cargo lambda build --release --arm64 --output-format zip --locked --package replicate --package api --package migrate" in out
    assert "s3://xcr-artifacts-<account>-eu-west-1" in out
    for name in ("replicate", "api", "migrate"):
        digest = hashlib.sha256(f"zip of {name}".encode()).hexdigest()
        assert f"xcr/lambda/{name}/{digest}.zip" in out  # content-addressed keys
        assert f"{name.capitalize()}CodeKey = xcr/lambda/{name}/{digest}.zip" in out
    assert "DeployFunctions = true" in out
    assert "ReplicateTimeout = 300" in out
    assert "DestBucket = my-gcs-bucket" in out
    assert "GcpCredentials = <external_account configuration" in out
    assert "169.254.169.254" not in out  # the configuration is summarised, not printed
    assert "CAPABILITY_IAM, CAPABILITY_NAMED_IAM" in out


def test_params_file_and_existing_bucket(lambda_dir, wif, tmp_path):
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"DestBucket": "g", "CreateSourceBucket": False, "SourceBucketName": "legacy", "SourceEvents": "eventbridge"}))
    proc = dry_run("--lambda-dir", str(lambda_dir), "--gcp-credentials", str(wif), "--params-file", str(params), "--no-build")
    assert proc.returncode == 0, proc.stderr
    assert "build: skipped" in proc.stdout
    assert "switch on EventBridge delivery for existing bucket legacy" in proc.stdout
    assert "CreateSourceBucket = false" in proc.stdout


def test_a_plan_lists_what_it_would_build_instead_of_demanding_it(lambda_dir, wif):
    # `make deploy-plan` on a fresh clone: nothing built yet. The plan still prints, naming the
    # zip the build step will make; a built one keeps its content-addressed key.
    (lambda_dir / "api" / "bootstrap.zip").unlink()
    proc = dry_run("--lambda-dir", str(lambda_dir), "--gcp-credentials", str(wif), "--param", "DestBucket=g")
    assert proc.returncode == 0, proc.stderr
    assert f"{lambda_dir / 'api' / 'bootstrap.zip'} (not built yet: the build step makes it)" in proc.stdout
    assert "xcr/lambda/api/<sha256-of-the-build>.zip" in proc.stdout
    digest = hashlib.sha256(b"zip of replicate").hexdigest()
    assert f"xcr/lambda/replicate/{digest}.zip" in proc.stdout
    assert "still needed" not in proc.stdout


def test_the_real_deploy_still_refuses_a_missing_zip(lambda_dir):
    import deploy  # scripts/deploy.py: conftest puts scripts/ on sys.path
    (lambda_dir / "api" / "bootstrap.zip").unlink()
    with pytest.raises(deploy.DeployError, match=r"missing function package\(s\): .*api/bootstrap.zip\."):
        deploy.find_packages(lambda_dir)


def test_service_account_keys_are_refused(lambda_dir, tmp_path):
    key = tmp_path / "key.json"
    key.write_text(json.dumps({"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----"}))
    proc = dry_run("--lambda-dir", str(lambda_dir), "--gcp-credentials", str(key), "--param", "DestBucket=g")
    assert proc.returncode == 1 and "service-account key" in proc.stderr
    assert "PRIVATE KEY" not in proc.stderr + proc.stdout
    # ...also when passed as a raw parameter: the template's AllowedPattern refuses it.
    proc = dry_run("--lambda-dir", str(lambda_dir), "--param", "DestBucket=g", "--param", f"GcpCredentials={key.read_text()}")
    assert proc.returncode == 1 and "GcpCredentials: must be a Workload Identity Federation" in proc.stderr


def test_non_aws_credential_source_is_refused(lambda_dir, tmp_path):
    doc = dict(WIF, credential_source={"file": "/var/run/token"})
    path = tmp_path / "wif.json"
    path.write_text(json.dumps(doc))
    proc = dry_run("--lambda-dir", str(lambda_dir), "--gcp-credentials", str(path), "--param", "DestBucket=g")
    assert proc.returncode == 1 and "credential_source is not AWS" in proc.stderr


def test_rules_are_checked_offline(lambda_dir, wif):
    # What the deploy would still ask for is listed under the plan, not thrown at the reader.
    proc = dry_run("--lambda-dir", str(lambda_dir), "--gcp-credentials", str(wif))
    assert proc.returncode == 0 and "still needed" in proc.stdout and "needs DestBucket or Rules" in proc.stdout
    proc = dry_run("--lambda-dir", str(lambda_dir), "--param", "DestBucket=g")
    assert proc.returncode == 0 and "needs GcpCredentials" in proc.stdout
    # A value given wrong is an error, not a missing piece.
    proc = dry_run("--lambda-dir", str(lambda_dir), "--gcp-credentials", str(wif), "--param", "DestBucket=g", "--param", "ReplicateTimeout=901")
    assert proc.returncode == 1 and "ReplicateTimeout='901' is not one of" in proc.stderr


def test_code_parameters_belong_to_the_packager(lambda_dir, wif):
    proc = dry_run("--lambda-dir", str(lambda_dir), "--gcp-credentials", str(wif), "--param", "DestBucket=g", "--param", "ReplicateCodeKey=x")
    assert proc.returncode == 1 and "ReplicateCodeKey is set by deploy.py" in proc.stderr


def test_unknown_parameter_and_bad_usage(lambda_dir, wif):
    proc = dry_run("--lambda-dir", str(lambda_dir), "--gcp-credentials", str(wif), "--param", "DestBucket=g", "--param", "Nope=1")
    assert proc.returncode == 1 and "unknown template parameter(s): Nope" in proc.stderr
    proc = dry_run("--lambda-dir", str(lambda_dir), "--param", "no-equals-sign")
    assert proc.returncode == 1 and "--param expects KEY=VALUE" in proc.stderr
