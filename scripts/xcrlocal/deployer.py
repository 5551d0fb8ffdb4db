"""The template deployed to an emulator, and what its CloudFormation skips applied by hand.

moto's CloudFormation reaches CREATE_COMPLETE but silently drops parts of the template (S3
NotificationConfiguration and VersioningConfiguration, SQS queue policies and
RedriveAllowPolicy, DynamoDB TTL and point-in-time recovery, S3 public access blocks,
CloudWatch alarms...). Deployer therefore creates or updates the stack, resolves the same
template's intrinsic functions against it (template.Intrinsics) and applies those properties
with ordinary, idempotent API calls (APPLIERS). There is no second, hand-kept list of
resources: add a resource to the template and it is deployed and reconciled here too. The
template's `Rules` and parameter constraints, which moto ignores, are checked before anything
is created.

Used for moto by `stack.py up` (with LOCAL_PARAMETERS: the data plane only) and, through
scripts/deploy.py, for LocalStack or any other endpoint (`make deploy-local`).

boto3 is imported only when a Deployer is made (see the package docstring).
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

from xcrlocal import ACCESS_KEY, GCS_PROJECT, HTTP, REGION, SECRET_KEY, STACK_NAME, StackError
from xcrlocal.template import Intrinsics, check_rules, parameter_values

# Template parameters the local stack sets unless told otherwise: moto runs no
# Lambda code (no Docker) and there are no function zips, so only the data
# plane is deployed. `--param DeployFunctions=true` overrides it.
LOCAL_PARAMETERS = {"DeployFunctions": "false"}


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
        with HTTP.open(request, timeout=30) as resp:
            resp.read()
    except urllib.error.HTTPError as err:
        if err.code != 409:
            raise StackError(f"GCS emulator refused bucket {name!r}: HTTP {err.code} {err.read()[:300]!r}") from err
