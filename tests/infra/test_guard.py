"""cfn-guard rules: the template passes every rule, and each rule fails on a
copy of the template broken in the way that rule forbids."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Callable

import pytest

from conftest import GUARD_RULES, TEMPLATE

RULES = {
    "iam_no_wildcard_actions",
    "iam_policies_no_wildcard_actions",
    "resource_policies_no_wildcard_actions",
    "iam_no_wildcard_resources",
    "sqs_dead_letter_queue",
    "sqs_encrypted",
    "replicate_visibility_at_least_6x_timeout",
    "event_source_mapping_reports_partial_failures",
    "dynamodb_encrypted",
    "dynamodb_point_in_time_recovery",
    "s3_encrypted",
    "api_routes_use_iam_auth",
    "api_no_quick_create",
    "log_groups_have_retention",
    "replicate_queue_closed_to_other_senders",
    "s3_statements_pin_the_account",
    "kms_decrypt_only_through_s3",
    "functions_get_the_lists_they_check",
    "migrate_has_no_google_credential",
    "source_notifications_include_lifecycle_expirations",
    "source_bucket_tls_only",
    "alarms_notify_and_explain",
    "replication_latency_alarm_on_the_objective",
    "per_record_failure_alarm",
    "operational_alarms_exist",
    "alarm_topic_mails_the_operator",
    "one_dashboard",
}


def guard(cfn_guard: Path, data: Path) -> dict[str, str]:
    """Rule name -> PASS / FAIL / SKIP."""
    proc = subprocess.run(
        [str(cfn_guard), "validate", "--rules", str(GUARD_RULES), "--data", str(data), "--show-summary", "all"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    results = dict(re.findall(r"^\S+\.guard/(\w+)\s+(PASS|FAIL|SKIP)\s*$", proc.stdout, re.M))
    assert results, f"no rule results from cfn-guard (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    # exit 0: all pass; 19: some rule failed. Anything else is a broken rule file.
    assert proc.returncode in (0, 19), proc.stderr
    assert (proc.returncode == 0) == all(v != "FAIL" for v in results.values())
    return results


def test_template_passes_every_rule(cfn_guard):
    results = guard(cfn_guard, TEMPLATE)
    assert set(results) == RULES
    # SKIP would mean a rule found nothing to check: it must really apply.
    assert results == {rule: "PASS" for rule in RULES}


def test_json_copy_passes_too(cfn_guard, template, tmp_path):
    """The broken copies are written as JSON: the unbroken JSON must pass."""
    data = tmp_path / "template.json"
    data.write_text(json.dumps(template))
    assert guard(cfn_guard, data) == {rule: "PASS" for rule in RULES}


def statements(template: dict, role: str) -> list:
    return template["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]


def _set(path: str, value) -> Callable[[dict], None]:
    def mutate(t: dict) -> None:
        *parents, last = path.split(".")
        node = t
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[int(last) if isinstance(node, list) else last] = value

    return mutate


def _delete(path: str) -> Callable[[dict], None]:
    def mutate(t: dict) -> None:
        *parents, last = path.split(".")
        node = t
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        del node[last]

    return mutate


def _add_resource(name: str, resource: dict) -> Callable[[dict], None]:
    def mutate(t: dict) -> None:
        t["Resources"][name] = resource

    return mutate


def _drop_resource(name: str) -> Callable[[dict], None]:
    def mutate(t: dict) -> None:
        del t["Resources"][name]

    return mutate


def _without_job_task_failures(t: dict) -> None:
    metrics = t["Resources"]["ReplicationFailuresAlarm"]["Properties"]["Metrics"]
    metrics[:] = [m for m in metrics if m["Id"] != "jobtasks"]
    metrics[-1]["Expression"] = "FILL(tasks, 0)"


def _not_action(t: dict) -> None:
    stmt = statements(t, "ReplicateRole")[3]
    stmt["NotAction"] = stmt.pop("Action")


def _wildcard_in_queue_policy(t: dict) -> None:
    conditional = t["Resources"]["ReplicateQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    conditional["Fn::If"][1]["Action"] = "sqs:*"


def _wildcard_in_else_branch(t: dict) -> None:
    conditional = t["Resources"]["ReplicateQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"][1]
    statement = dict(conditional["Fn::If"][1], Action=["sqs:SendMessage", "sqs:*"])
    conditional["Fn::If"][2] = statement


def queue_policy(t: dict) -> list:
    return t["Resources"]["ReplicateQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]


def _by_sid(sid: str) -> Callable[[dict], dict]:
    def find(t: dict) -> dict:
        (st,) = [s for s in queue_policy(t) if s.get("Sid") == sid]
        return st

    return find


def _no_queue_deny(t: dict) -> None:
    t["Resources"]["ReplicateQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"] = [
        s for s in queue_policy(t) if s.get("Effect") != "Deny"
    ]


def _deny_without_source_arn(t: dict) -> None:
    del _by_sid("DenySendersButXcr")(t)["Condition"]["ArnNotLike"]


def _deny_narrowed_by_a_third_key(t: dict) -> None:
    _by_sid("DenySendersButXcr")(t)["Condition"]["StringEquals"] = {"aws:PrincipalTag/team": "x"}


def _services_of_any_account(t: dict) -> None:
    t["Resources"]["ReplicateQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"] = [
        s for s in queue_policy(t) if s.get("Sid") != "DenyServicesOfOtherAccounts"
    ]


def _kms_branch(t: dict, role: str) -> dict:
    (st,) = [s["Fn::If"][1] for s in statements(t, role) if "Fn::If" in s and s["Fn::If"][1]["Action"] == "kms:Decrypt"]
    return st


def _kms_without_via_service(t: dict) -> None:
    del _kms_branch(t, "ReplicateRole")["Condition"]


def _kms_any_key(t: dict) -> None:
    _kms_branch(t, "ApiRole")["Resource"] = {"Fn::Split": [",", {"Ref": "OtherKeys"}]}


def _kms_unconditional(t: dict) -> None:
    statements(t, "MigrateRole").append(
        {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "arn:aws:kms:us-east-1:123456789012:key/k"}
    )


def _s3_without_account(role: str, sid: str) -> Callable[[dict], None]:
    def mutate(t: dict) -> None:
        (st,) = [s for s in statements(t, role) if s.get("Sid") == sid]
        del st["Condition"]

    return mutate


def _drop_env(function: str, var: str) -> Callable[[dict], None]:
    def mutate(t: dict) -> None:
        del t["Resources"][function]["Properties"]["Environment"]["Variables"][var]

    return mutate


def _no_lifecycle_events(t: dict) -> None:
    configs = t["Resources"]["SourceBucket"]["Properties"]["NotificationConfiguration"]["Fn::If"][1]["QueueConfigurations"]
    configs[:] = [c for c in configs if c["Event"] != "s3:LifecycleExpiration:*"]


R = "Resources"
P = "Properties"
BREAKAGES = [
    ("iam_no_wildcard_actions", "service wildcard", _set(f"{R}.ReplicateRole.{P}.Policies.0.PolicyDocument.Statement.3.Action", "dynamodb:*")),
    ("iam_no_wildcard_actions", "star", _set(f"{R}.ApiRole.{P}.Policies.0.PolicyDocument.Statement.0.Action", "*")),
    ("iam_no_wildcard_actions", "prefix wildcard in a list", _set(f"{R}.MigrateRole.{P}.Policies.0.PolicyDocument.Statement.1.Action", ["s3:List*"])),
    ("iam_no_wildcard_actions", "NotAction", _not_action),
    ("iam_no_wildcard_actions", "trust policy", _set(f"{R}.ReplicateRole.{P}.AssumeRolePolicyDocument.Statement.0.Action", "sts:*")),
    ("iam_policies_no_wildcard_actions", "managed policy", _set(f"{R}.ApiInvokePolicy.{P}.PolicyDocument.Statement.0.Action", "execute-api:*")),
    ("resource_policies_no_wildcard_actions", "conditional queue policy statement", _wildcard_in_queue_policy),
    ("resource_policies_no_wildcard_actions", "else branch of a conditional statement", _wildcard_in_else_branch),
    ("iam_no_wildcard_resources", "star resource", _set(f"{R}.ReplicateRole.{P}.Policies.0.PolicyDocument.Statement.3.Resource", "*")),
    ("iam_no_wildcard_resources", "star in a list", _set(f"{R}.ApiRole.{P}.Policies.0.PolicyDocument.Statement.4.Resource", ["*"])),
    ("sqs_dead_letter_queue", "queue without redrive", _delete(f"{R}.ReplicateQueue.{P}.RedrivePolicy")),
    ("sqs_dead_letter_queue", "new queue", _add_resource("Extra", {"Type": "AWS::SQS::Queue", "Properties": {"SqsManagedSseEnabled": True}})),
    ("sqs_dead_letter_queue", "DLQ open to any queue", _set(f"{R}.ReplicateDLQ.{P}.RedriveAllowPolicy.redrivePermission", "allowAll")),
    ("sqs_encrypted", "DLQ unencrypted", _set(f"{R}.ReplicateDLQ.{P}.SqsManagedSseEnabled", False)),
    ("replicate_visibility_at_least_6x_timeout", "row below 6x", _set("Mappings.ReplicateTimeouts.900.QueueVisibilityTimeout", 900)),
    ("replicate_visibility_at_least_6x_timeout", "unknown timeout", _set("Mappings.ReplicateTimeouts.45", {"FunctionTimeout": 45, "QueueVisibilityTimeout": 270})),
    ("replicate_visibility_at_least_6x_timeout", "queue visibility hard-coded", _set(f"{R}.ReplicateQueue.{P}.VisibilityTimeout", 30)),
    ("replicate_visibility_at_least_6x_timeout", "function timeout hard-coded", _set(f"{R}.ReplicateFunction.{P}.Timeout", 900)),
    ("event_source_mapping_reports_partial_failures", "no partial failures", _delete(f"{R}.ReplicateQueueEventSource.{P}.FunctionResponseTypes")),
    ("event_source_mapping_reports_partial_failures", "no batching window", _delete(f"{R}.ReplicateQueueEventSource.{P}.MaximumBatchingWindowInSeconds")),
    ("dynamodb_encrypted", "SSE off", _set(f"{R}.LedgerTable.{P}.SSESpecification.SSEEnabled", False)),
    ("dynamodb_encrypted", "SSE missing", _delete(f"{R}.JobsTable.{P}.SSESpecification")),
    ("dynamodb_point_in_time_recovery", "PITR off", _set(f"{R}.JobsTable.{P}.PointInTimeRecoverySpecification.PointInTimeRecoveryEnabled", False)),
    ("dynamodb_point_in_time_recovery", "PITR missing", _delete(f"{R}.LedgerTable.{P}.PointInTimeRecoverySpecification")),
    ("s3_encrypted", "bucket encryption missing", _delete(f"{R}.SourceBucket.{P}.BucketEncryption")),
    ("api_routes_use_iam_auth", "route without auth", _set(f"{R}.RouteDocs.{P}.AuthorizationType", "NONE")),
    ("api_routes_use_iam_auth", "auth missing", _delete(f"{R}.RouteHealth.{P}.AuthorizationType")),
    ("api_no_quick_create", "quick create", _set(f"{R}.HttpApi.{P}.Target", {"Fn::GetAtt": ["ApiFunction", "Arn"]})),
    ("log_groups_have_retention", "no retention", _delete(f"{R}.ReplicateLogGroup.{P}.RetentionInDays")),
    ("replicate_queue_closed_to_other_senders", "no Deny", _no_queue_deny),
    ("replicate_queue_closed_to_other_senders", "Deny without aws:SourceArn", _deny_without_source_arn),
    ("replicate_queue_closed_to_other_senders", "Deny narrowed by a third key", _deny_narrowed_by_a_third_key),
    ("replicate_queue_closed_to_other_senders", "services of any account", _services_of_any_account),
    ("s3_statements_pin_the_account", "replicate reads without s3:ResourceAccount", _s3_without_account("ReplicateRole", "ReadSourceObjects")),
    ("s3_statements_pin_the_account", "migrate lists without s3:ResourceAccount", _s3_without_account("MigrateRole", "ListSourceBucket")),
    ("kms_decrypt_only_through_s3", "no kms:ViaService", _kms_without_via_service),
    ("kms_decrypt_only_through_s3", "keys not from SourceKmsKeyArns", _kms_any_key),
    ("kms_decrypt_only_through_s3", "unconditional kms statement", _kms_unconditional),
    ("kms_decrypt_only_through_s3", "no SourceKmsKeyArns parameter", _delete("Parameters.SourceKmsKeyArns")),
    ("functions_get_the_lists_they_check", "replicate without destinations", _drop_env("ReplicateFunction", "XCR_ALLOWED_DESTINATIONS")),
    ("functions_get_the_lists_they_check", "replicate without sources", _drop_env("ReplicateFunction", "XCR_ALLOWED_SOURCE_BUCKETS")),
    ("functions_get_the_lists_they_check", "api without destinations", _drop_env("ApiFunction", "XCR_ALLOWED_DESTINATIONS")),
    ("migrate_has_no_google_credential", "migrate with a credential", _set(f"{R}.MigrateFunction.{P}.Environment.Variables.XCR_GCP_CREDENTIALS", {"Ref": "GcpCredentials"})),
    ("source_notifications_include_lifecycle_expirations", "no lifecycle events", _no_lifecycle_events),
    ("source_bucket_tls_only", "no bucket policy", _delete(f"{R}.SourceBucketPolicy")),
    ("source_bucket_tls_only", "TLS condition inverted", _set(f"{R}.SourceBucketPolicy.{P}.PolicyDocument.Statement.0.Condition.Bool.aws:SecureTransport", "true")),
    ("alarms_notify_and_explain", "alarm without actions", _delete(f"{R}.Api5xxAlarm.{P}.AlarmActions")),
    ("alarms_notify_and_explain", "alarm that never clears", _delete(f"{R}.DLQAgeAlarm.{P}.OKActions")),
    ("alarms_notify_and_explain", "missing data breaches", _set(f"{R}.ThrottlesAlarm.{P}.TreatMissingData", "breaching")),
    ("alarms_notify_and_explain", "unexplained alarm", _delete(f"{R}.ReplicationLatencyAlarm.{P}.AlarmDescription")),
    ("replication_latency_alarm_on_the_objective", "p50 instead of p99", _set(f"{R}.ReplicationLatencyAlarm.{P}.ExtendedStatistic", "p50")),
    ("replication_latency_alarm_on_the_objective", "threshold not the objective", _set(f"{R}.ReplicationLatencyAlarm.{P}.Threshold", 3600)),
    ("replication_latency_alarm_on_the_objective", "no latency alarm", _drop_resource("ReplicationLatencyAlarm")),
    ("per_record_failure_alarm", "tolerates failures", _set(f"{R}.ReplicationFailuresAlarm.{P}.Threshold", 5)),
    ("per_record_failure_alarm", "averaged", _set(f"{R}.ReplicationFailuresAlarm.{P}.Metrics.0.MetricStat.Stat", "Average")),
    ("per_record_failure_alarm", "job tasks left out", _without_job_task_failures),
    ("per_record_failure_alarm", "no failure alarm", _drop_resource("ReplicationFailuresAlarm")),
    ("operational_alarms_exist", "no DLQ age alarm", _drop_resource("DLQAgeAlarm")),
    ("operational_alarms_exist", "no throttles alarm", _drop_resource("ThrottlesAlarm")),
    ("operational_alarms_exist", "no 5xx alarm", _drop_resource("Api5xxAlarm")),
    ("alarm_topic_mails_the_operator", "topic always created", _delete(f"{R}.AlarmTopic.Condition")),
    ("alarm_topic_mails_the_operator", "not an e-mail", _set(f"{R}.AlarmTopic.{P}.Subscription.0.Protocol", "http")),
    ("one_dashboard", "no dashboard", _drop_resource("Dashboard")),
    ("one_dashboard", "two dashboards", _add_resource("Extra", {"Type": "AWS::CloudWatch::Dashboard", "Properties": {"DashboardBody": "{}"}})),
]


@pytest.mark.parametrize("rule,how,mutate", BREAKAGES, ids=[f"{r}:{h}" for r, h, _ in BREAKAGES])
def test_rule_fails_on_a_broken_template(cfn_guard, template, tmp_path, rule, how, mutate):
    mutate(template)
    data = tmp_path / "broken.json"
    data.write_text(json.dumps(template))
    results = guard(cfn_guard, data)
    failed = {name for name, status in results.items() if status == "FAIL"}
    assert failed == {rule}, f"breaking {how!r} should fail exactly {rule}, failed: {sorted(failed)}"


def test_every_rule_has_a_breakage():
    assert {rule for rule, _, _ in BREAKAGES} == RULES
