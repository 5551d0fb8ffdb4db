"""Offline facts about infra/template.yaml that cfn-guard cannot express."""

from __future__ import annotations

import json
import re

from xcrlocal.template import Intrinsics, check_rules, parameter_values

FUNCTIONS = {"ReplicateFunction": "replicate", "ApiFunction": "api", "MigrateFunction": "migrate"}
ROUTES = {
    "GET /",
    "GET /v1/health",
    "POST /v1/replicate",
    "POST /v1/replicate/batch",
    "POST /v1/jobs",
    "GET /v1/jobs",
    "GET /v1/jobs/{id}",
    "POST /v1/jobs/{id}/cancel",
    "GET /v1/objects/{bucket}/{key+}",
    "GET /openapi.json",
    "GET /docs",
}


def of_type(template: dict, kind: str) -> dict:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def test_visibility_rows_are_6x_and_match_the_allowed_timeouts(template):
    rows = template["Mappings"]["ReplicateTimeouts"]
    allowed = template["Parameters"]["ReplicateTimeout"]["AllowedValues"]
    assert sorted(rows, key=int) == sorted(allowed, key=int)
    for key, row in rows.items():
        assert row["FunctionTimeout"] == int(key)
        assert row["QueueVisibilityTimeout"] >= 6 * row["FunctionTimeout"]
        assert row["FunctionTimeout"] <= 900  # Lambda's maximum


def test_functions_are_arm64_al2023_from_s3_behind_the_condition(template):
    functions = of_type(template, "AWS::Lambda::Function")
    assert set(functions) == set(FUNCTIONS)
    for name, fn in functions.items():
        props = fn["Properties"]
        assert fn["Condition"] == "WithFunctions"
        assert props["Runtime"] == "provided.al2023"
        assert props["Architectures"] == ["arm64"]
        assert props["Handler"] == "bootstrap"
        assert props["Code"]["S3Bucket"] == {"Ref": "ArtifactsBucket"}
        assert props["Code"]["S3Key"] == {"Ref": f"{FUNCTIONS[name].capitalize()}CodeKey"}
        assert "MemorySize" in props and "Timeout" in props
        env = props["Environment"]["Variables"]
        for var in ("XCR_DEST_BUCKET", "XCR_RULES", "XCR_LEDGER_TABLE", "XCR_JOBS_TABLE", "XCR_QUEUE_URL", "XCR_DLQ_URL"):
            assert var in env, f"{name} lacks {var}"
        # Only the functions that write to GCS get the Google credential.
        assert ("XCR_GCP_CREDENTIALS" in env) == (name != "MigrateFunction"), name
    assert "XCR_REPLICATE_DELETES" in functions["ReplicateFunction"]["Properties"]["Environment"]["Variables"]
    for name in ("ReplicateFunction", "ApiFunction"):
        env = functions[name]["Properties"]["Environment"]["Variables"]
        assert env["XCR_ALLOWED_DESTINATIONS"] == {"Ref": "AllowedDestinations"}, name
        assert "XCR_ALLOWED_SOURCE_BUCKETS" in env, name


def test_everything_that_needs_code_is_conditional(template):
    """DeployFunctions=false (the local stack) must deploy no function-side resource."""
    needs_functions = {
        "AWS::Lambda::Function", "AWS::Lambda::EventSourceMapping", "AWS::Lambda::EventInvokeConfig",
        "AWS::Lambda::Permission", "AWS::IAM::Role", "AWS::IAM::ManagedPolicy", "AWS::Logs::LogGroup",
    }
    for name, res in template["Resources"].items():
        if res["Type"] in needs_functions or res["Type"].startswith("AWS::ApiGatewayV2::"):
            assert res.get("Condition") == "WithFunctions", name


def test_every_route_is_declared_with_iam_auth(template):
    routes = of_type(template, "AWS::ApiGatewayV2::Route")
    assert {r["Properties"]["RouteKey"] for r in routes.values()} == ROUTES
    assert {r["Properties"]["AuthorizationType"] for r in routes.values()} == {"AWS_IAM"}


def test_sqs_event_source_and_async_failures(template):
    (esm,) = of_type(template, "AWS::Lambda::EventSourceMapping").values()
    assert esm["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert esm["Properties"]["EventSourceArn"] == {"Fn::GetAtt": ["ReplicateQueue", "Arn"]}
    configs = of_type(template, "AWS::Lambda::EventInvokeConfig")
    on_failure = configs["ReplicateAsyncConfig"]["Properties"]["DestinationConfig"]["OnFailure"]["Destination"]
    assert on_failure == {"Fn::GetAtt": ["ReplicateDLQ", "Arn"]}


def test_alarms_cover_dlq_age_and_errors(template):
    alarms = of_type(template, "AWS::CloudWatch::Alarm")
    metrics = sorted(a["Properties"]["MetricName"] for a in alarms.values() if "MetricName" in a["Properties"])
    assert metrics == [
        "5xx", "ApproximateAgeOfOldestMessage", "ApproximateAgeOfOldestMessage",
        "ApproximateNumberOfMessagesVisible", "ApproximateNumberOfMessagesVisible",
        "Errors", "Errors", "Errors", "ReplicationLatency",
    ]


def _metric_stats(alarm: dict) -> dict:
    return {m["Id"]: m["MetricStat"]["Metric"] for m in alarm["Properties"]["Metrics"] if "MetricStat" in m}


def test_replication_objective_failure_throttle_and_5xx_alarms(template):
    """Issue 15: lag p99 above the objective, any per-record failure, throttles, API 5xx, the
    DLQ's age; every alarm notifies AlarmTopicArn and/or the AlarmEmail topic."""
    params, res = template["Parameters"], template["Resources"]
    assert params["ReplicationObjectiveSeconds"]["Default"] == 900
    latency = res["ReplicationLatencyAlarm"]["Properties"]
    assert latency["Namespace"] == "xcr" and latency["ExtendedStatistic"] == "p99"
    assert latency["Threshold"] == {"Ref": "ReplicationObjectiveSeconds"}
    assert latency["Unit"] == "Seconds", "the metric is written in seconds (src/metrics.rs)"
    assert latency["Dimensions"] == [{"Name": "Function", "Value": {"Ref": "ReplicateFunction"}}]

    failures = res["ReplicationFailuresAlarm"]["Properties"]
    stats = _metric_stats(res["ReplicationFailuresAlarm"])
    assert stats["tasks"]["MetricName"] == "Failures" and stats["tasks"]["Namespace"] == "xcr"
    assert stats["tasks"]["Dimensions"][0]["Value"] == {"Ref": "ReplicateFunction"}
    assert stats["jobtasks"]["MetricName"] == "JobTasksFailed"
    assert stats["jobtasks"]["Dimensions"][0]["Value"] == {"Ref": "MigrateFunction"}
    (expr,) = [m for m in failures["Metrics"] if m.get("ReturnData")]
    assert expr["Expression"] == "FILL(tasks, 0) + FILL(jobtasks, 0)"
    assert (failures["Threshold"], failures["ComparisonOperator"]) == (0, "GreaterThanThreshold")

    throttles = _metric_stats(res["ThrottlesAlarm"])
    assert {m["MetricName"] for m in throttles.values()} == {"Throttles"}
    assert {m["Dimensions"][0]["Value"]["Ref"] for m in throttles.values()} == set(FUNCTIONS)
    api = res["Api5xxAlarm"]["Properties"]
    assert (api["Namespace"], api["Dimensions"][0]["Value"]) == ("AWS/ApiGateway", {"Ref": "HttpApi"})
    dlq_age = res["DLQAgeAlarm"]["Properties"]
    assert dlq_age["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["ReplicateDLQ", "QueueName"]}
    assert dlq_age["Threshold"] == {"Ref": "DLQAgeAlarmSeconds"}

    topic = res["AlarmTopic"]
    assert topic["Condition"] == "HasAlarmEmail"
    assert topic["Properties"]["Subscription"] == [{"Protocol": "email", "Endpoint": {"Ref": "AlarmEmail"}}]
    actions = [
        {"Fn::If": ["HasAlarmTopic", {"Ref": "AlarmTopicArn"}, {"Ref": "AWS::NoValue"}]},
        {"Fn::If": ["HasAlarmEmail", {"Ref": "AlarmTopic"}, {"Ref": "AWS::NoValue"}]},
    ]
    for name, alarm in of_type(template, "AWS::CloudWatch::Alarm").items():
        assert alarm["Properties"]["AlarmActions"] == actions, name
        assert alarm["Properties"]["OKActions"] == actions, name


def test_one_dashboard_shows_lag_throughput_failures_and_queues(template):
    (dashboard,) = of_type(template, "AWS::CloudWatch::Dashboard").values()
    assert dashboard["Condition"] == "WithFunctions"
    body = dashboard["Properties"]["DashboardBody"]["Fn::Sub"]
    names = set(re.findall(r"\$\{([^}]+)\}", body))
    assert names <= {"AWS::Region", "ReplicateFunction", "MigrateFunction", "ReplicateQueue.QueueName",
                     "ReplicateDLQ.QueueName", "ReplicationObjectiveSeconds"}, names
    widgets = json.loads(re.sub(r"\$\{([^}]+)\}", "1", body))["widgets"]
    metrics = {m[1] for w in widgets for m in w["properties"]["metrics"] if isinstance(m[0], str) and m[0] != "..."}
    for wanted in ("ReplicationLatency", "ObjectsReplicated", "BytesReplicated", "FailedRecords", "JobTasksFailed",
                   "ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"):
        assert wanted in metrics, wanted
    stats = {m[-1].get("stat") for w in widgets for m in w["properties"]["metrics"] if isinstance(m[-1], dict)}
    assert {"p50", "p99"} <= stats
    assert any("ErrorKind" in m[0].get("expression", "") for w in widgets for m in w["properties"]["metrics"]
               if isinstance(m[0], dict)), "failures by kind"


def test_job_sweep_schedule_and_migrate_failures(template):
    """Every job ends: a schedule sweeps jobs through the migrate function, which may be invoked
    by it, and the function's failed async invocations land in a queue a person reads."""
    resources = template["Resources"]
    rule = resources["JobSweepRule"]
    assert rule["Condition"] == "WithFunctions"
    assert rule["Properties"]["ScheduleExpression"] == {"Ref": "JobSweepSchedule"}
    assert template["Parameters"]["JobSweepSchedule"]["Default"] == "rate(5 minutes)"
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": ["MigrateFunction", "Arn"]}
    assert json.loads(target["Input"]) == {"sweep": True}
    permission = resources["JobSweepPermission"]["Properties"]
    assert permission["Principal"] == "events.amazonaws.com"
    assert permission["SourceArn"] == {"Fn::GetAtt": ["JobSweepRule", "Arn"]}
    assert permission["FunctionName"] == {"Ref": "MigrateFunction"}
    config = resources["MigrateAsyncConfig"]["Properties"]
    assert config["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["MigrateFailuresQueue", "Arn"]}
    assert resources["MigrateFailuresQueue"]["Condition"] == "WithFunctions"
    statements = resources["MigrateRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    by_sid = {st["Sid"]: st for st in statements if "Sid" in st}
    assert by_sid["AsyncFailures"]["Resource"] == {"Fn::GetAtt": ["MigrateFailuresQueue", "Arn"]}
    assert "sqs:DeleteMessage" not in by_sid["SweepReadsDeadLetters"]["Action"], "the sweep never takes dead letters"




def test_rules(template):
    def problems(**overrides: str) -> list[str]:
        return check_rules(template, parameter_values(template, overrides))

    local = {"DeployFunctions": "false"}
    assert problems(**local) == []
    assert problems(**local, SourceEvents="eventbridge") == []
    assert problems(**local, CreateSourceBucket="false", SourceBucketName="legacy", SourceEvents="eventbridge") == []
    assert any("SourceBucketName" in p for p in problems(**local, CreateSourceBucket="false", SourceEvents="eventbridge"))
    assert any("eventbridge" in p for p in problems(**local, CreateSourceBucket="false", SourceBucketName="legacy"))
    assert any("ReplicateTimeout" in p for p in problems(**local, ReplicateTimeout="45"))
    full = dict(
        ArtifactsBucket="a", ReplicateCodeKey="r", ApiCodeKey="p", MigrateCodeKey="m", DestBucket="d",
        GcpCredentials='{"type": "external_account", "audience": "x"}',
    )
    assert problems(**full) == []
    assert any("GcpCredentials" in p for p in problems(**dict(full, GcpCredentials='{"type": "service_account", "private_key": "k"}')))
    assert any("ApiCodeKey" in p for p in problems(**dict(full, ApiCodeKey="")))
    assert any("DestBucket" in p for p in problems(**dict(full, DestBucket="")))
    assert problems(**dict(full, DestBucket="", Rules="[]")) == []


ACCOUNT = "123456789012"
REGION = "eu-west-1"


def _queue_policy(template: dict, **overrides: str) -> list[dict]:
    """The replicate queue policy's statements, resolved for a deployment with `overrides`."""
    params = parameter_values(template, overrides)
    pseudo = {"AWS::AccountId": ACCOUNT, "AWS::Region": REGION, "AWS::Partition": "aws", "AWS::NoValue": None}
    arns = {"ReplicateQueue": f"arn:aws:sqs:{REGION}:{ACCOUNT}:xcr-replicate"}
    intrinsics = Intrinsics(
        template, params, {k: v for k, v in pseudo.items() if v}, ref=lambda n: n, getatt=lambda n, a: arns[n]
    )
    return intrinsics.resolve(template["Resources"]["ReplicateQueuePolicy"]["Properties"]["PolicyDocument"])["Statement"]


def _denied(statements: list[dict], context: dict[str, str]) -> bool:
    """IAM's evaluation of the Deny statements for sqs:SendMessage, for the condition operators
    the policy uses: a key absent from the request makes a negated operator true."""
    import fnmatch

    def holds(op: str, key: str, values) -> bool:
        values = values if isinstance(values, list) else [values]
        have = context.get(key)
        if op == "ArnNotEquals":
            return have is None or have not in values
        if op == "ArnNotLike":
            return have is None or not any(fnmatch.fnmatchcase(have, v) for v in values)
        if op == "StringNotEquals":
            return have is None or have not in values
        if op == "Bool":
            return have is not None and have in values
        raise AssertionError(f"operator {op} not modelled")

    for st in statements:
        if st["Effect"] != "Deny" or st["Action"] != "sqs:SendMessage":
            continue
        if all(holds(op, key, v) for op, keys in st["Condition"].items() for key, v in keys.items()):
            return True
    return False


def test_the_replicate_queue_takes_messages_only_from_xcr(template):
    """The Deny statements, evaluated: the function roles, S3 for the source bucket and
    EventBridge for the source rule (of this account) send; nobody else in the account does."""
    role = lambda name: f"arn:aws:iam::{ACCOUNT}:role/{name}"  # noqa: E731
    bucket = f"arn:aws:s3:::xcr-source-{ACCOUNT}-{REGION}"
    rule = f"arn:aws:events:{REGION}:{ACCOUNT}:rule/xcr-source-events"
    service = lambda arn, account=ACCOUNT: {  # noqa: E731
        "aws:PrincipalIsAWSService": "true", "aws:SourceArn": arn, "aws:SourceAccount": account,
    }
    for overrides in ({}, {"SourceEvents": "eventbridge"}):
        policy = _queue_policy(template, **overrides)
        for fn in ("replicate", "api", "migrate"):
            assert not _denied(policy, {"aws:PrincipalArn": role(f"xcr-{fn}-{REGION}"), "aws:PrincipalIsAWSService": "false"})
        assert not _denied(policy, service(bucket))
        assert not _denied(policy, service(rule))
        # Anyone else in the account, whatever their IAM policy allows.
        assert _denied(policy, {"aws:PrincipalArn": role("admin"), "aws:PrincipalIsAWSService": "false"})
        assert _denied(policy, {"aws:PrincipalArn": role(f"xcr-replicate-{REGION}-copy"), "aws:PrincipalIsAWSService": "false"})
        # Services for another resource, or for our bucket's name in another account.
        assert _denied(policy, service("arn:aws:s3:::someone-elses-bucket"))
        assert _denied(policy, service(bucket, account="210987654321"))
    # An operator role listed in QueueSenderArns (e.g. for `xcr dlq redrive`) may send.
    operator = role("ops")
    policy = _queue_policy(template, QueueSenderArns=f"{operator},{role('ci')}")
    assert not _denied(policy, {"aws:PrincipalArn": operator, "aws:PrincipalIsAWSService": "false"})
    assert not _denied(policy, {"aws:PrincipalArn": role(f"xcr-api-{REGION}"), "aws:PrincipalIsAWSService": "false"})
    assert _denied(policy, {"aws:PrincipalArn": role("admin"), "aws:PrincipalIsAWSService": "false"})


def test_s3_and_kms_permissions_are_pinned(template):
    """S3 statements name this account (s3:ResourceAccount); kms:Decrypt exists only with
    SourceKmsKeyArns, through S3 of this region; no unused DynamoDB action is granted."""
    for role in ("ReplicateRole", "ApiRole", "MigrateRole"):
        stmts = template["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        plain = [s for s in stmts if "Fn::If" not in s]
        for st in plain:
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            if any(a.startswith("s3:") for a in actions):
                assert st["Condition"] == {"StringEquals": {"s3:ResourceAccount": {"Ref": "AWS::AccountId"}}}, st
            assert not {"dynamodb:Scan", "dynamodb:DescribeTable"} & set(actions), (role, st["Sid"])
        (kms,) = [s["Fn::If"] for s in stmts if "Fn::If" in s and s["Fn::If"][1].get("Action") == "kms:Decrypt"]
        assert kms[0] == "HasSourceKmsKeys" and kms[2] == {"Ref": "AWS::NoValue"}
        assert kms[1]["Condition"] == {"StringEquals": {"kms:ViaService": {"Fn::Sub": "s3.${AWS::Region}.amazonaws.com"}}}
