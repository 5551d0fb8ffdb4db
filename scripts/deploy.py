#!/usr/bin/env python3
"""Deploy infra/template.yaml: to the local stack, to LocalStack, or to real AWS.

    .venv/bin/python scripts/deploy.py local [--dir DIR] [--param K=V ...]
    .venv/bin/python scripts/deploy.py local --endpoint URL [--gcs-endpoint URL] [--env-out FILE] [--param K=V ...]
    .venv/bin/python scripts/deploy.py aws [--region R] [--stack-name N] [--param K=V ...]
                                           [--params-file F] [--gcp-credentials FILE]
                                           [--artifacts-bucket B] [--no-build] [--dry-run] [--no-execute]

`local` (make deploy-local) deploys the data plane (DeployFunctions=false):
  - without --endpoint and without AWS_ENDPOINT_URL in the environment, to the
    no-Docker local stack in DIR (default .xcr): starts it (scripts/stack.py up)
    if it is not running, otherwise updates the stack deployed in its moto;
  - with --endpoint (or AWS_ENDPOINT_URL), to that emulator, e.g. LocalStack on
    http://localhost:4566; STORAGE_EMULATOR_HOST (or --gcs-endpoint) names the
    GCS emulator whose destination bucket is created. An env file in
    scripts/stack.py's format is written (default .xcr/localstack/local.env).
  Either way the template is deployed through CloudFormation, then whatever the
  emulator ignores is applied from the same template (xcrlocal/deployer.py's Deployer and
  APPLIERS: there is no second list).

`aws` (make deploy) deploys everything to real AWS with the default boto3
credentials: builds the functions (`cargo lambda build --release --arm64
--output-format zip`), uploads target/lambda/<function>/bootstrap.zip under a
content-addressed key to the artifacts bucket (created if missing), checks the
parameters against the template's Rules offline, creates a change set (create
or update, CAPABILITY_IAM + CAPABILITY_NAMED_IAM), shows it, executes it, waits
and prints the stack outputs. --dry-run prints that plan without calling AWS.

Exit codes: 0 success (also "no changes"); 1 an expected failure, explained on
stderr without a traceback; 2 bad usage.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xcrlocal import ACCESS_KEY, DEFAULT_DEST_BUCKET, REGION, ROOT, SECRET_KEY, STACK_NAME, StackError, say, write_atomic
from xcrlocal import cli as stack_cli
from xcrlocal.deployer import LOCAL_PARAMETERS, Deployer, create_gcs_bucket
from xcrlocal.env import ENV_FILE, env_values, read_env, render_env
from xcrlocal.supervise import is_ours, load_pids, locked
from xcrlocal.template import TEMPLATE, check_rules, load_template, parameter_values

LAMBDA_DIR = ROOT / "target" / "lambda"
FUNCTIONS = ("replicate", "api", "migrate")  # cargo package == binary == target/lambda/<name>
CODE_PARAMETERS = {"replicate": "ReplicateCodeKey", "api": "ApiCodeKey", "migrate": "MigrateCodeKey"}
BUILD_COMMAND = ["cargo", "lambda", "build", "--release", "--arm64", "--output-format", "zip", "--locked"]
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"]
DEFAULT_STACK = "xcr"
LOCALSTACK_ENV = ROOT / ".xcr" / "localstack" / "local.env"


DeployError = StackError  # one "expected failure" type across deploy.py and stack.py


def warn(message: str) -> None:
    print(f"deploy.py: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------


def parse_params(pairs: list[str], params_file: Path | None) -> dict[str, str]:
    """--params-file (JSON object, or CloudFormation's list form) then --param K=V."""
    params: dict[str, str] = {}
    if params_file is not None:
        try:
            doc = json.loads(params_file.read_text())
        except FileNotFoundError as err:
            raise DeployError(f"parameters file not found: {params_file}") from err
        except ValueError as err:
            raise DeployError(f"{params_file} is not JSON: {err}") from err
        if isinstance(doc, dict):
            params.update({str(k): _param_text(v) for k, v in doc.items()})
        elif isinstance(doc, list) and all(isinstance(p, dict) and "ParameterKey" in p for p in doc):
            params.update({p["ParameterKey"]: _param_text(p.get("ParameterValue", "")) for p in doc})
        else:
            raise DeployError(
                f"{params_file}: expected {{\"Name\": \"value\"}} or [{{\"ParameterKey\": ..., \"ParameterValue\": ...}}]"
            )
    for text in pairs:
        key, value = stack_cli.parse_param(text)
        params[key] = value
    return params


def _param_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def gcp_credentials_param(path: Path) -> str:
    """The WIF credential configuration, checked and compacted for the parameter."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise DeployError(f"GCP credential configuration not found: {path}") from err
    except ValueError as err:
        raise DeployError(f"{path} is not JSON: {err}") from err
    kind = doc.get("type") if isinstance(doc, dict) else None
    if kind == "service_account":
        raise DeployError(
            f"{path} is a service-account key: xcr deploys only keyless Workload Identity Federation "
            f"configurations (type external_account); see infra/DEPLOY.md, step 2"
        )
    if kind != "external_account":
        raise DeployError(f"{path}: expected a credential configuration with \"type\": \"external_account\", got {kind!r}")
    source = doc.get("credential_source", {})
    if not str(source.get("environment_id", "")).startswith("aws"):
        raise DeployError(
            f"{path}: credential_source is not AWS (environment_id {source.get('environment_id')!r}); make it with "
            f"`gcloud iam workload-identity-pools create-cred-config ... --aws` (infra/gcp/setup.sh)"
        )
    return json.dumps(doc, separators=(",", ":"))


# --------------------------------------------------------------------------
# Function packages
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Package:
    function: str
    path: Path
    size: int
    sha256: str

    def key(self, prefix: str) -> str:
        # Content-addressed: a new build is a new key, so CloudFormation sees a
        # change exactly when the code changed, and uploads are idempotent.
        return f"{prefix}/lambda/{self.function}/{self.sha256}.zip"


def find_packages(lambda_dir: Path, planning: bool = False) -> list[Package]:
    """The three built function zips. `planning` (the dry run): a zip not built yet is listed as
    what the build will produce (size 0, key named after the build) instead of an error: a plan
    shows what it would build, it does not demand it."""
    missing = [f for f in FUNCTIONS if not (lambda_dir / f / "bootstrap.zip").is_file()]
    if missing and planning:
        return [Package(f, lambda_dir / f / "bootstrap.zip", 0, "<sha256-of-the-build>") if f in missing
                else _package(lambda_dir, f) for f in FUNCTIONS]
    if missing:
        paths = ", ".join(str(lambda_dir / f / "bootstrap.zip") for f in missing)
        raise DeployError(
            f"missing function package(s): {paths}. Build them with "
            f"`{shlex.join(BUILD_COMMAND)}` (make deploy does); every function "
            f"({', '.join(FUNCTIONS)}) must exist as a workspace package"
        )
    return [_package(lambda_dir, f) for f in FUNCTIONS]


def _package(lambda_dir: Path, function: str) -> Package:
    path = lambda_dir / function / "bootstrap.zip"
    data = path.read_bytes()
    return Package(function, path, len(data), hashlib.sha256(data).hexdigest())


def workspace_packages() -> set[str]:
    try:
        out = subprocess.run(
            ["cargo", "metadata", "--no-deps", "--format-version", "1", "--locked"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    except FileNotFoundError as err:
        raise DeployError("cargo not found on PATH: install Rust (https://rustup.rs)") from err
    except subprocess.CalledProcessError as err:
        raise DeployError(f"cargo metadata failed:\n{err.stderr.strip()}") from err
    return {p["name"] for p in json.loads(out)["packages"]}


def build(venv_bin: Path) -> None:
    missing = [f for f in FUNCTIONS if f not in workspace_packages()]
    if missing:
        raise DeployError(
            f"the workspace has no package for function(s) {', '.join(missing)} "
            f"(expected functions/<name> with package name <name>): cannot build "
            f"target/lambda/{{{','.join(missing)}}}/bootstrap.zip"
        )
    command = BUILD_COMMAND + [arg for f in FUNCTIONS for arg in ("--package", f)]
    env = dict(os.environ)
    # cargo-lambda (pip) and the zig it cross-compiles with live in the venv.
    env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
    say(f"building: {shlex.join(command)}")
    try:
        subprocess.run(command, cwd=ROOT, env=env, check=True)
    except FileNotFoundError as err:
        raise DeployError("cargo not found on PATH: install Rust (https://rustup.rs)") from err
    except subprocess.CalledProcessError as err:
        raise DeployError(f"build failed (exit {err.returncode}); see the output above") from err


# --------------------------------------------------------------------------
# Existing buckets: EventBridge delivery
# --------------------------------------------------------------------------


def uses_existing_bucket(params: dict[str, str]) -> bool:
    return params.get("CreateSourceBucket") == "false" and params.get("SourceEvents") == "eventbridge"


def ensure_eventbridge(s3: Any, bucket: str, owner: str | None = None) -> str:
    """Switch on EventBridge delivery for BUCKET, keeping its notification configuration.

    PutBucketNotificationConfiguration replaces the whole configuration, so the
    current one is read and written back with EventBridgeConfiguration added.
    With OWNER (the deploying account, on AWS) both calls fail on a bucket of
    another account: its events could never reach this account's event bus.
    """
    owned: dict[str, str] = {"ExpectedBucketOwner": owner} if owner else {}
    try:
        current = s3.get_bucket_notification_configuration(Bucket=bucket, **owned)
    except Exception as err:  # botocore ClientError
        if "NoSuchBucket" in str(err) or "Not Found" in str(err) or "404" in str(err):
            raise DeployError(f"source bucket {bucket!r} does not exist (CreateSourceBucket=false needs an existing bucket)") from err
        raise
    current.pop("ResponseMetadata", None)
    if "EventBridgeConfiguration" in current:
        return "already on"
    current["EventBridgeConfiguration"] = {}
    s3.put_bucket_notification_configuration(
        Bucket=bucket, NotificationConfiguration=current, SkipDestinationValidation=True, **owned
    )
    kept = sum(len(current.get(k, [])) for k in ("QueueConfigurations", "TopicConfigurations", "LambdaFunctionConfigurations"))
    return f"switched on (kept {kept} existing notification configuration(s))"


# --------------------------------------------------------------------------
# local
# --------------------------------------------------------------------------


def cmd_local(args: argparse.Namespace) -> int:
    overrides = parse_params(args.param, args.params_file)
    endpoint = args.endpoint or os.environ.get("AWS_ENDPOINT_URL")
    template = load_template(args.template)
    declared = template.get("Parameters", {})
    params = dict(overrides)
    for key, value in LOCAL_PARAMETERS.items():
        if key in declared:
            params.setdefault(key, value)
    if params.get("DeployFunctions") == "true":
        raise DeployError(
            "deploy-local deploys the data plane only (DeployFunctions=false): emulators here run no Lambda "
            "code; run the functions with `xcr pump` or `cargo lambda watch` (see docs/local-stack.md)"
        )

    if not endpoint or (not args.endpoint and _is_local_stack_endpoint(args.dir, endpoint)):
        # Also when AWS_ENDPOINT_URL came from loading the local stack's own
        # local.env: that is the stack in --dir, not some other emulator.
        return _local_stack(args, template, params)

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or REGION
    access = os.environ.get("AWS_ACCESS_KEY_ID") or ACCESS_KEY
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY") or SECRET_KEY
    say(f"deploying {args.template.relative_to(ROOT) if args.template.is_relative_to(ROOT) else args.template} "
        f"as stack {args.stack_name} to {endpoint} ({region})")
    deployer = Deployer(
        endpoint, args.template, template, params, args.timeout,
        stack_name=args.stack_name, region=region, access_key=access, secret_key=secret,
    )
    if uses_existing_bucket(parameter_values(template, params)):
        bucket = params.get("SourceBucketName", "")
        say(f"  EventBridge delivery for existing bucket {bucket}: {ensure_eventbridge(deployer.s3, bucket)}")
    outputs = deployer.deploy()

    gcs = args.gcs_endpoint or os.environ.get("STORAGE_EMULATOR_HOST")
    if gcs and not gcs.startswith(("http://", "https://")):
        gcs = f"http://{gcs}"
    if gcs:
        create_gcs_bucket(gcs.rstrip("/"), args.dest_bucket)
    env_out: Path = args.env_out
    values = env_values(
        outputs,
        aws_url=args.public_endpoint or endpoint,
        gcs_url=args.public_gcs_endpoint or gcs or "",
        dest_bucket=args.dest_bucket,
        stack_dir=env_out.parent,
        region=region,
        access_key=access,
        secret_key=secret,
    )
    env_out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(env_out, render_env(values, env_out.parent))
    _print_summary(values, deployer.notes)
    if not gcs:
        say("  note: no GCS emulator given (--gcs-endpoint / STORAGE_EMULATOR_HOST): no destination bucket created")
    say(f"env file: {env_out}")
    return 0


def _is_local_stack_endpoint(stack_dir: Path, endpoint: str) -> bool:
    env_path = stack_dir / ENV_FILE
    if not env_path.exists():
        return False
    return read_env(env_path).get("AWS_ENDPOINT_URL", "").rstrip("/") == endpoint.rstrip("/")


def _local_stack(args: argparse.Namespace, template: dict[str, Any], params: dict[str, str]) -> int:
    """The no-Docker stack in --dir: start it, or update the stack in its running moto."""
    stack_dir: Path = args.dir
    env_path = stack_dir / ENV_FILE
    with locked(stack_dir):
        procs = load_pids(stack_dir)
        running = bool(procs) and all(is_ours(p) for p in procs) and env_path.exists()
    if not running:
        argv = ["up", "--dir", str(stack_dir), "--template", str(args.template), "--dest-bucket", args.dest_bucket,
                "--timeout", str(args.timeout)]
        for key, value in params.items():
            argv += ["--param", f"{key}={value}"]
        return stack_cli.main(argv)

    current = read_env(env_path)
    moto = next(p for p in procs if p.name == "moto")
    gcs = next(p for p in procs if p.name == "gcs")
    say(f"updating stack {STACK_NAME} in the running local stack {stack_dir} ({moto.url})")
    with locked(stack_dir):
        deployer = Deployer(moto.url, args.template, template, params, args.timeout)
        if uses_existing_bucket(parameter_values(template, params)):
            bucket = params.get("SourceBucketName", "")
            say(f"  EventBridge delivery for existing bucket {bucket}: {ensure_eventbridge(deployer.s3, bucket)}")
        outputs = deployer.deploy()
        dest = current.get("XCR_DEST_BUCKET", args.dest_bucket)
        create_gcs_bucket(gcs.url, dest)
        values = env_values(outputs, aws_url=moto.url, gcs_url=gcs.url, dest_bucket=dest, stack_dir=stack_dir)
        if "XCR_GCS_EMULATOR" in current:  # which emulator `up --gcs` started: still the one running
            values["XCR_GCS_EMULATOR"] = current["XCR_GCS_EMULATOR"]
        write_atomic(env_path, render_env(values, stack_dir))
    _print_summary(values, deployer.notes)
    say(f"env file: {env_path}")
    return 0


def _print_summary(values: dict[str, str], notes: list[str]) -> None:
    for key in ("XCR_SOURCE_BUCKET", "XCR_DEST_BUCKET", "XCR_LEDGER_TABLE", "XCR_JOBS_TABLE", "XCR_QUEUE_URL", "XCR_DLQ_URL"):
        say(f"  {key:19} {values[key]}")
    for note in notes:
        say(f"  note: {note}")


# --------------------------------------------------------------------------
# aws
# --------------------------------------------------------------------------


@dataclass
class Plan:
    stack_name: str
    region: str
    account: str
    artifacts_bucket: str
    create_artifacts_bucket: bool
    packages: list[Package]
    params: dict[str, str]  # what is sent: overrides + code keys
    template_key: str
    existing_bucket_eventbridge: str | None  # bucket whose EventBridge delivery is switched on
    still_needed: list[str] = field(default_factory=list)  # dry run: what the deploy would refuse

    def describe(self, build_step: str | None) -> list[str]:
        lines = [f"stack {self.stack_name} in {self.region} (account {self.account})"]
        if build_step:
            lines.append(f"1. build: {build_step}")
        else:
            lines.append("1. build: skipped (--no-build)")
        verb = "create" if self.create_artifacts_bucket else "use"
        lines.append(f"2. {verb} artifacts bucket s3://{self.artifacts_bucket} and upload (if not already there):")
        for p in self.packages:
            where = p.path.relative_to(ROOT) if p.path.is_relative_to(ROOT) else p.path
            size = f"{p.size:,} bytes" if p.size else "not built yet: the build step makes it"
            lines.append(f"     {where} ({size}) -> {p.key(self.stack_name)}")
        lines.append(f"     infra/template.yaml -> {self.template_key}")
        step = 3
        if self.existing_bucket_eventbridge:
            lines.append(f"{step}. switch on EventBridge delivery for existing bucket {self.existing_bucket_eventbridge} "
                         f"(its notification configuration is kept)")
            step += 1
        lines.append(f"{step}. change set ({', '.join(CAPABILITIES)}) with parameters:")
        for key in sorted(self.params):
            value = self.params[key]
            if key == "GcpCredentials" and value:
                value = f"<external_account configuration, {len(value)} bytes>"
            lines.append(f"     {key} = {value}")
        lines.append(f"{step + 1}. execute it, wait, print the outputs")
        if self.still_needed:
            lines.append("still needed before `make deploy` can run (DEPLOY_ARGS=\"--param DestBucket=... --gcp-credentials wif.json\", see infra/DEPLOY.md):")
            lines.extend(f"     - {p}" for p in self.still_needed)
        return lines


def make_plan(args: argparse.Namespace, template: dict[str, Any], account: str, region: str,
              planning: bool = False) -> Plan:
    overrides = parse_params(args.param, args.params_file)
    if args.gcp_credentials:
        overrides["GcpCredentials"] = gcp_credentials_param(args.gcp_credentials)
    declared = template.get("Parameters", {})
    for key in (*CODE_PARAMETERS.values(), "DeployFunctions"):
        if key in overrides:
            raise DeployError(f"{key} is set by deploy.py (from the built packages), not by --param")
    packages = find_packages(args.lambda_dir, planning)
    prefix = overrides.get("Prefix", str(declared.get("Prefix", {}).get("Default", "xcr")))
    bucket = args.artifacts_bucket or overrides.pop("ArtifactsBucket", "") or f"{prefix}-artifacts-{account}-{region}"
    overrides.pop("ArtifactsBucket", None)
    params = {**overrides, "DeployFunctions": "true", "ArtifactsBucket": bucket}
    for package in packages:
        params[CODE_PARAMETERS[package.function]] = package.key(args.stack_name)
    resolved = parameter_values(template, params)
    problems = check_rules(template, resolved, {"AWS::AccountId": account, "AWS::Region": region})
    # A plan lists what the deploy would still ask for (the template's Rules: "needs DestBucket",
    # "needs GcpCredentials"); a value given wrong (a pattern, an allowed value) is an error in
    # the plan too.
    rules = set(template.get("Rules", {}))
    needed = [p for p in problems if planning and p.split(":", 1)[0] in rules]
    problems = [p for p in problems if p not in needed]
    if problems:
        raise DeployError("template parameters refused:\n  - " + "\n  - ".join(problems))
    template_hash = hashlib.sha256(args.template.read_bytes()).hexdigest()
    return Plan(
        stack_name=args.stack_name,
        region=region,
        account=account,
        artifacts_bucket=bucket,
        create_artifacts_bucket=False,
        packages=packages,
        params=params,
        template_key=f"{args.stack_name}/template/{template_hash}.yaml",
        existing_bucket_eventbridge=resolved.get("SourceBucketName") if uses_existing_bucket(resolved) else None,
        # A plan lists what the deploy will still ask for; the deploy itself refuses (above).
        still_needed=needed,
    )


def cmd_aws(args: argparse.Namespace) -> int:
    template = load_template(args.template)
    venv_bin = Path(sys.executable).parent
    build_step = None if args.no_build else shlex.join(BUILD_COMMAND + [a for f in FUNCTIONS for a in ("--package", f)])

    if args.dry_run:
        # No AWS call at all: the account and region are placeholders unless given.
        region = args.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "<region>"
        plan = make_plan(args, template, "<account>", region, planning=True)
        say("dry run: nothing is built, uploaded or deployed. The plan:")
        for line in plan.describe(build_step):
            say(f"  {line}")
        return 0

    import boto3

    session = boto3.session.Session(region_name=args.region or os.environ.get("AWS_REGION") or None)
    region = session.region_name
    if not region:
        raise DeployError("no AWS region: pass --region or set AWS_REGION (or a profile's region)")
    account = session.client("sts").get_caller_identity()["Account"]

    if not args.no_build:
        build(venv_bin)
    plan = make_plan(args, template, account, region)
    s3 = session.client("s3")
    # Every call on the artifacts bucket names the account that must own it
    # (ExpectedBucketOwner): the bucket's name is predictable, and one made
    # by someone else first must receive neither the code nor the template.
    plan.create_artifacts_bucket = not _bucket_exists(s3, plan.artifacts_bucket, account)
    for line in plan.describe(build_step):
        say(line)

    if plan.create_artifacts_bucket:
        _create_artifacts_bucket(s3, plan.artifacts_bucket, region, account)
    for package in plan.packages:
        _upload_once(s3, plan.artifacts_bucket, package.key(plan.stack_name), package.path, account)
    _upload_once(s3, plan.artifacts_bucket, plan.template_key, args.template, account)
    if plan.existing_bucket_eventbridge:
        say(f"EventBridge delivery for {plan.existing_bucket_eventbridge}: "
            f"{ensure_eventbridge(s3, plan.existing_bucket_eventbridge, account)}")

    cfn = session.client("cloudformation")
    outputs = deploy_change_set(cfn, plan, s3_template_url(plan, region), execute=not args.no_execute)
    if outputs is not None:
        say("outputs:" if outputs else "outputs: (none reported)")
        for key in sorted(outputs):
            say(f"  {key:22} {outputs[key]}")
    return 0


def s3_template_url(plan: Plan, region: str) -> str:
    host = "s3.amazonaws.com" if region == "us-east-1" else f"s3.{region}.amazonaws.com"
    return f"https://{plan.artifacts_bucket}.{host}/{plan.template_key}"


def _bucket_exists(s3: Any, bucket: str, owner: str) -> bool:
    try:
        s3.head_bucket(Bucket=bucket, ExpectedBucketOwner=owner)
        return True
    except Exception as err:
        code = getattr(err, "response", {}).get("Error", {}).get("Code")
        if code in ("404", "NoSuchBucket", "NotFound"):
            return False
        if code in ("403", "AccessDenied"):
            raise DeployError(f"artifacts bucket {bucket} exists but belongs to another account than {owner} "
                              f"or is not readable; pass --artifacts-bucket") from err
        raise


def _create_artifacts_bucket(s3: Any, bucket: str, region: str, owner: str) -> None:
    say(f"creating artifacts bucket {bucket}")
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    # CreateBucket takes no ExpectedBucketOwner: a name taken by another
    # account fails here (BucketAlreadyExists), and every later call checks.
    s3.create_bucket(**kwargs)
    s3.put_public_access_block(
        Bucket=bucket,
        ExpectedBucketOwner=owner,
        PublicAccessBlockConfiguration={k: True for k in ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")},
    )
    s3.put_bucket_encryption(
        Bucket=bucket,
        ExpectedBucketOwner=owner,
        ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]},
    )


def _sha256_b64(path: Path) -> str:
    import base64

    return base64.b64encode(hashlib.sha256(path.read_bytes()).digest()).decode()


def _upload_once(s3: Any, bucket: str, key: str, path: Path, owner: str) -> None:
    """Uploads `path` unless the object is already there with the same SHA-256 (S3's own
    checksum, stored at upload). An object at the key with other bytes (planted, or a
    half-finished upload) is replaced, never deployed."""
    want = _sha256_b64(path)
    try:
        head = s3.head_object(Bucket=bucket, Key=key, ExpectedBucketOwner=owner, ChecksumMode="ENABLED")
        if head.get("ChecksumSHA256") == want:
            say(f"  s3://{bucket}/{key} already uploaded")
            return
        say(f"  s3://{bucket}/{key} exists with other content: uploading again")
    except Exception as err:
        if getattr(err, "response", {}).get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
            raise
    from boto3.s3.transfer import TransferConfig

    # One request, so that S3 stores the whole object's SHA-256 (a multipart
    # upload stores a checksum of part checksums, never equal to `want`).
    s3.upload_file(
        str(path), bucket, key,
        ExtraArgs={"ExpectedBucketOwner": owner, "ChecksumAlgorithm": "SHA256"},
        Config=TransferConfig(multipart_threshold=5 * 1024**3),
    )
    say(f"  uploaded s3://{bucket}/{key}")


def deploy_change_set(cfn: Any, plan: Plan, template_url: str, execute: bool = True) -> dict[str, str] | None:
    status = _stack_status(cfn, plan.stack_name)
    if status in ("ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "DELETE_FAILED"):
        raise DeployError(
            f"stack {plan.stack_name} is in {status} (an earlier create failed): delete it with "
            f"`aws cloudformation delete-stack --stack-name {plan.stack_name}` and deploy again"
        )
    if status and status.endswith("_IN_PROGRESS"):
        raise DeployError(f"stack {plan.stack_name} is busy ({status}); wait for it to finish")
    kind = "CREATE" if status in (None, "REVIEW_IN_PROGRESS") else "UPDATE"
    name = f"{plan.stack_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    say(f"change set {name} ({kind})")
    cfn.create_change_set(
        StackName=plan.stack_name,
        ChangeSetName=name,
        ChangeSetType=kind,
        TemplateURL=template_url,
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in sorted(plan.params.items())],
        Capabilities=CAPABILITIES,
        Tags=[{"Key": "app", "Value": "xcr"}],
    )
    while True:
        described = cfn.describe_change_set(StackName=plan.stack_name, ChangeSetName=name)
        if described["Status"] in ("CREATE_COMPLETE", "FAILED"):
            break
        time.sleep(3)
    if described["Status"] == "FAILED":
        reason = described.get("StatusReason", "")
        if "didn't contain changes" in reason or "No updates are to be performed" in reason:
            cfn.delete_change_set(StackName=plan.stack_name, ChangeSetName=name)
            say("no changes: the stack is up to date")
            return _outputs(cfn, plan.stack_name)
        raise DeployError(f"change set {name} failed: {reason}")
    for change in described.get("Changes", []):
        rc = change.get("ResourceChange", {})
        replacement = f" (replacement: {rc['Replacement']})" if rc.get("Replacement") in ("True", "Conditional") else ""
        say(f"  {rc.get('Action', '?'):7} {rc.get('LogicalResourceId', '?'):28} {rc.get('ResourceType', '')}{replacement}")
    if not execute:
        say(f"not executed (--no-execute): review it in the console or run "
            f"`aws cloudformation execute-change-set --stack-name {plan.stack_name} --change-set-name {name}`")
        return None
    cfn.execute_change_set(StackName=plan.stack_name, ChangeSetName=name)
    waiter = cfn.get_waiter("stack_create_complete" if kind == "CREATE" else "stack_update_complete")
    say("executing; waiting for the stack (several minutes on the first deploy)...")
    try:
        waiter.wait(StackName=plan.stack_name, WaiterConfig={"Delay": 10, "MaxAttempts": 360})
    except Exception as err:  # botocore WaiterError
        reasons = [
            f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason')}"
            for e in cfn.describe_stack_events(StackName=plan.stack_name)["StackEvents"][:50]
            if e.get("ResourceStatus", "").endswith("_FAILED")
        ]
        raise DeployError(f"stack {plan.stack_name} did not complete: {err}\n  - " + "\n  - ".join(reasons[:8])) from err
    say(f"stack {plan.stack_name}: {_stack_status(cfn, plan.stack_name)}")
    return _outputs(cfn, plan.stack_name)


def _stack_status(cfn: Any, name: str) -> str | None:
    try:
        stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    except Exception as err:
        if "does not exist" in str(err):
            return None
        raise
    return stacks[0]["StackStatus"] if stacks else None


def _outputs(cfn: Any, name: str) -> dict[str, str]:
    stack_desc = cfn.describe_stacks(StackName=name)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in stack_desc.get("Outputs", [])}


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deploy.py", description="Deploy xcr's infra/template.yaml.")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--template", type=lambda s: Path(s).resolve(), default=TEMPLATE, help="default infra/template.yaml")
        p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="template parameter (repeatable)")
        p.add_argument("--params-file", type=Path, help="JSON parameters: {\"Name\": \"value\"} or CloudFormation's list")
        p.add_argument("--stack-name", default=DEFAULT_STACK, help="default %(default)s")

    local = sub.add_parser("local", help="deploy the data plane to the local stack or an emulator endpoint")
    common(local)
    local.add_argument("--dir", type=lambda s: Path(s).expanduser().resolve(), default=ROOT / ".xcr",
                       help="the no-Docker stack's directory (default .xcr)")
    local.add_argument("--endpoint", help="an AWS emulator, e.g. http://localhost:4566 (default $AWS_ENDPOINT_URL)")
    local.add_argument("--gcs-endpoint", help="GCS emulator to create the bucket in (default $STORAGE_EMULATOR_HOST)")
    local.add_argument("--public-endpoint", help="AWS endpoint to write in the env file, if it differs (containers)")
    local.add_argument("--public-gcs-endpoint", help="GCS endpoint to write in the env file, if it differs")
    local.add_argument("--env-out", type=lambda s: Path(s).resolve(), default=LOCALSTACK_ENV,
                       help="env file written for --endpoint deploys (default .xcr/localstack/local.env)")
    local.add_argument("--dest-bucket", default=DEFAULT_DEST_BUCKET, help="GCS bucket (default %(default)s)")
    local.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for each step")
    local.set_defaults(func=cmd_local)

    aws = sub.add_parser("aws", help="build, upload and deploy everything to real AWS")
    common(aws)
    aws.add_argument("--region", help="default: AWS_REGION / the profile's region")
    aws.add_argument("--artifacts-bucket", help="bucket for the zips (default <Prefix>-artifacts-<account>-<region>, created if missing)")
    aws.add_argument("--gcp-credentials", type=Path, help="WIF credential configuration file -> GcpCredentials")
    aws.add_argument("--lambda-dir", type=lambda s: Path(s).resolve(), default=LAMBDA_DIR, help="default target/lambda")
    aws.add_argument("--no-build", action="store_true", help="use the zips already in --lambda-dir")
    aws.add_argument("--dry-run", action="store_true", help="print the plan; call no AWS API, build nothing")
    aws.add_argument("--no-execute", action="store_true", help="create and show the change set, do not execute it")
    aws.set_defaults(func=cmd_aws)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except DeployError as err:
        print(f"deploy.py {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"deploy.py {args.command}: interrupted", file=sys.stderr)
        return 130
    except ImportError as err:
        print(f"deploy.py {args.command}: error: {err}; run with the project's virtualenv (make venv)", file=sys.stderr)
        return 1
    except Exception as err:  # botocore: credentials, access denied, throttling...
        module = type(err).__module__
        if module.startswith(("botocore", "boto3", "urllib3", "s3transfer")):
            hint = ""
            if type(err).__name__ in ("NoCredentialsError", "PartialCredentialsError"):
                hint = " (configure AWS credentials: `aws configure`, AWS_PROFILE or environment variables)"
            print(f"deploy.py {args.command}: error from AWS: {err}{hint}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
