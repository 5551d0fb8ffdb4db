"""infra/gcp/setup.sh, offline: what it asks Google Cloud for. No gcloud is installed here and
no Google project is reachable, so a recorder stands in for gcloud (GCLOUD=...): it logs each
command and answers `describe` the way gcloud does (exit 1 for a missing resource). What this
proves is the script's decisions (role, members, condition, names, partition); that gcloud
accepts those flags is from its documentation, not tested here."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

from conftest import ROOT

SETUP = ROOT / "infra" / "gcp" / "setup.sh"

RECORDER = r'''#!/usr/bin/env python3
import json, os, sys
args = sys.argv[1:]
with open(os.environ["REC_LOG"], "a") as f:
    f.write(json.dumps(args) + "\n")
state = json.loads(os.environ.get("REC_STATE", "{}"))
words = [a for a in args if not a.startswith("-")]
def has(*w):
    return all(x in args for x in w)
if has("projects", "describe"):
    print("4242"); sys.exit(0)
if "describe" in args:
    kind = ("provider" if has("providers") else "pool" if has("workload-identity-pools") else
            "role" if has("roles") else "sa" if has("service-accounts") else "bucket")
    if kind not in state.get("exists", []):
        sys.exit(1)
    fmt = next((a for a in args if a.startswith("--format")), "")
    if "aws.accountId" in fmt:
        print(state.get("account", ""))
    elif "attributeCondition" in fmt:
        print(state.get("condition", ""))
    sys.exit(0)
if "create-cred-config" in args:
    out = args[args.index("--output-file") + 1]
    open(out, "w").write('{"type": "external_account"}')
sys.exit(0)
'''


def run(tmp_path: Path, state: dict | None = None, aws: str | None = None, **env: str) -> tuple[subprocess.CompletedProcess, list[list[str]]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    gcloud = bin_dir / "gcloud-recorder"
    gcloud.write_text(RECORDER)
    gcloud.chmod(0o755)
    # The AWS CLI: absent unless `aws` gives the Arn it answers.
    fake_aws = bin_dir / "aws"
    fake_aws.write_text(f"#!/bin/sh\necho {shlex.quote(aws)}\n" if aws else "#!/bin/sh\nexit 255\n")
    fake_aws.chmod(0o755)
    log = tmp_path / "calls.jsonl"
    log.write_text("")
    base = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "GCLOUD": str(gcloud),
        "REC_LOG": str(log),
        "REC_STATE": json.dumps(state or {}),
        "GCP_PROJECT": "proj",
        "GCS_BUCKET": "replica",
        "AWS_ACCOUNT_ID": "123456789012",
        "AWS_REGION": "eu-west-1",
        "CRED_CONFIG": str(tmp_path / "wif.json"),
    }
    proc = subprocess.run(["bash", str(SETUP)], env={**base, **env}, capture_output=True, text=True, timeout=60)
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    return proc, calls


def find(calls: list[list[str]], *words: str) -> list[list[str]]:
    return [c for c in calls if all(w in c for w in words)]


def flag(call: list[str], name: str) -> str:
    return call[call.index(name) + 1]


def test_a_fresh_project_gets_a_four_permission_role_and_two_impersonators(tmp_path):
    proc, calls = run(tmp_path)
    assert proc.returncode == 0, proc.stderr
    (create_role,) = find(calls, "roles", "create")
    assert sorted(flag(create_role, "--permissions").split(",")) == [
        "storage.objects.create", "storage.objects.delete", "storage.objects.get", "storage.objects.list",
    ]
    (grant,) = find(calls, "add-iam-policy-binding", "gs://replica")
    assert flag(grant, "--role") == "projects/proj/roles/xcrObjectReplicator"
    assert not [c for c in find(calls, "add-iam-policy-binding") if "roles/storage.objectAdmin" in c]
    (bucket,) = find(calls, "buckets", "create")
    assert "--public-access-prevention" in bucket and "--uniform-bucket-level-access" in bucket
    # Pool named from prefix and region; the provider accepts replicate and api only.
    (pool,) = find(calls, "workload-identity-pools", "create")
    assert pool[pool.index("create") + 1] == "xcr-eu-west-1"
    (provider,) = find(calls, "create-aws")
    assert flag(provider, "--attribute-condition") == (
        "attribute.aws_role in ['arn:aws:sts::123456789012:assumed-role/xcr-replicate-eu-west-1',"
        "'arn:aws:sts::123456789012:assumed-role/xcr-api-eu-west-1']"
    )
    members = [flag(c, "--member") for c in find(calls, "service-accounts", "add-iam-policy-binding")]
    assert [m.rsplit("/", 1)[1] for m in members] == ["xcr-replicate-eu-west-1", "xcr-api-eu-west-1"]
    assert all("/workloadIdentityPools/xcr-eu-west-1/attribute.aws_role/arn:aws:sts::" in m for m in members)
    (revoked,) = find(calls, "service-accounts", "remove-iam-policy-binding")
    assert flag(revoked, "--member").endswith("assumed-role/xcr-migrate-eu-west-1")


def test_a_second_deployment_in_a_shared_pool_is_merged_not_replaced(tmp_path):
    other = "'arn:aws:sts::123456789012:assumed-role/first-replicate-us-east-1'"
    state = {"exists": ["bucket", "sa", "role", "pool", "provider"], "account": "123456789012",
             "condition": f"attribute.aws_role in [{other}]"}
    proc, calls = run(tmp_path, state, WIF_POOL="shared")
    assert proc.returncode == 0, proc.stderr
    assert not find(calls, "create-aws") and not find(calls, "roles", "create")
    (update,) = find(calls, "update-aws")
    condition = flag(update, "--attribute-condition")
    for arn in (other, "'arn:aws:sts::123456789012:assumed-role/xcr-replicate-eu-west-1'",
                "'arn:aws:sts::123456789012:assumed-role/xcr-api-eu-west-1'"):
        assert arn in condition, condition
    (bucket,) = find(calls, "buckets", "update")
    assert "--public-access-prevention" in bucket
    # A provider of another AWS account, or a condition it cannot parse: refused, not replaced.
    proc, calls = run(tmp_path, {**state, "account": "999999999999"}, WIF_POOL="shared")
    assert proc.returncode != 0 and "999999999999" in proc.stderr and not find(calls, "update-aws")
    proc, calls = run(tmp_path, {**state, "condition": "assertion.account == '1'"}, WIF_POOL="shared")
    assert proc.returncode != 0 and "merge by hand" in proc.stderr and not find(calls, "update-aws")


def test_the_partition_comes_from_the_caller_or_the_region(tmp_path):
    def condition(**kw) -> str:
        proc, calls = run(tmp_path, **kw)
        assert proc.returncode == 0, proc.stderr
        (provider,) = find(calls, "create-aws")
        return flag(provider, "--attribute-condition")

    assert "arn:aws-cn:sts::123456789012:" in condition(aws="arn:aws-cn:iam::123456789012:user/me")
    assert "arn:aws-us-gov:sts::" in condition(AWS_REGION="us-gov-west-1")
    assert "arn:aws:sts::" in condition()
    proc, _ = run(tmp_path, aws="arn:aws:iam::210987654321:user/me")
    assert proc.returncode != 0 and "210987654321" in proc.stderr


def test_long_names_make_a_valid_pool_id(tmp_path):
    proc, calls = run(tmp_path, XCR_PREFIX="a-very-long-prefix-1", AWS_REGION="ap-southeast-2")
    assert proc.returncode == 0, proc.stderr
    (pool,) = find(calls, "workload-identity-pools", "create")
    pool_id = pool[pool.index("create") + 1]
    assert 4 <= len(pool_id) <= 32 and pool_id.startswith("a-very-long-prefix-1-ap"), pool_id
    assert os.path.exists(tmp_path / "wif.json")
