"""scripts/moto_server.py, the moto the local stack runs: its two DynamoDB fixes
(atomic requests, transactions that back up only the items they touch) checked
with boto3 against a real server, as DynamoDB documents the behaviour."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
import urllib.request

import boto3
import pytest
from botocore.config import Config

from conftest import PY, ROOT

SERVER = ROOT / "scripts" / "moto_server.py"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The URL of a moto_server.py of its own, stopped after the module."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")
    proc = subprocess.Popen([PY, str(SERVER), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=2).read()
                break
            except OSError:
                assert proc.poll() is None, "moto_server.py exited"
                assert time.monotonic() < deadline, "moto_server.py did not answer"
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def client(url: str, service: str):
    return boto3.client(
        service, endpoint_url=url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x",
        config=Config(max_pool_connections=32, retries={"max_attempts": 1}),
    )


@pytest.fixture(scope="module")
def ddb(server):
    ddb = client(server, "dynamodb")
    ddb.create_table(
        TableName="t", BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
    )
    return ddb


def key(pk: str, sk: str) -> dict:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def get(ddb, pk: str, sk: str) -> dict | None:
    return ddb.get_item(TableName="t", Key=key(pk, sk), ConsistentRead=True).get("Item")


def marker(pk: str, sk: str) -> dict:
    return {"Put": {"TableName": "t", "Item": key(pk, sk), "ConditionExpression": "attribute_not_exists(pk)"}}


def add(pk: str, n: int) -> dict:
    return {"Update": {"TableName": "t", "Key": key(pk, "counter"), "UpdateExpression": "ADD n :n",
                       "ExpressionAttributeValues": {":n": {"N": str(n)}}}}


def test_a_transaction_applies_all_its_actions(ddb):
    ddb.transact_write_items(TransactItems=[marker("ok", "a"), marker("ok", "b"), add("ok", 2)])
    assert get(ddb, "ok", "a") and get(ddb, "ok", "b")
    assert get(ddb, "ok", "counter")["n"] == {"N": "2"}


def test_a_cancelled_transaction_leaves_every_item_as_it_was(ddb):
    # Many unrelated items, so a backup of the whole table would be noticed if it were restored wrongly.
    for i in range(50):
        ddb.put_item(TableName="t", Item={**key("other", f"{i:03}"), "v": {"N": str(i)}})
    ddb.put_item(TableName="t", Item={**key("rb", "counter"), "n": {"N": "5"}, "note": {"S": "before"}})
    ddb.put_item(TableName="t", Item=key("rb", "taken"))

    # New marker, an in-place update of an existing item, then a marker that already exists.
    with pytest.raises(ddb.exceptions.TransactionCanceledException) as err:
        ddb.transact_write_items(TransactItems=[marker("rb", "new"), add("rb", 3), marker("rb", "taken")])
    reasons = [r.get("Code") for r in err.value.response["CancellationReasons"]]
    assert reasons == ["None", "None", "ConditionalCheckFailed"], reasons

    assert get(ddb, "rb", "new") is None, "a put of the cancelled transaction was left behind"
    assert get(ddb, "rb", "counter") == {**key("rb", "counter"), "n": {"N": "5"}, "note": {"S": "before"}}
    assert get(ddb, "rb", "taken") == key("rb", "taken")
    others = ddb.query(TableName="t", KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "other"}})
    assert [int(i["v"]["N"]) for i in others["Items"]] == list(range(50))

    # A write after the rollback lands on the live table (the rollback did not swap in a copy).
    ddb.transact_write_items(TransactItems=[marker("rb", "new"), add("rb", 3)])
    assert get(ddb, "rb", "counter")["n"] == {"N": "8"}


def test_a_transaction_naming_one_item_twice_is_refused_whole(ddb):
    with pytest.raises(ddb.exceptions.ClientError) as err:
        ddb.transact_write_items(TransactItems=[marker("dup", "x"), add("dup", 1), add("dup", 1)])
    assert "ValidationException" in str(err.value)
    assert get(ddb, "dup", "x") is None and get(ddb, "dup", "counter") is None


def test_concurrent_conditional_writes_have_one_winner_and_lose_no_update(ddb):
    threads, rounds = 8, 40
    wins = [0] * rounds
    lock = threading.Lock()

    def worker() -> None:
        for r in range(rounds):
            try:
                ddb.put_item(TableName="t", Item=key("race", f"{r:03}"), ConditionExpression="attribute_not_exists(pk)")
                with lock:
                    wins[r] += 1
            except ddb.exceptions.ConditionalCheckFailedException:
                pass
            ddb.update_item(TableName="t", Key=key("race", "counter"), UpdateExpression="ADD n :one",
                            ExpressionAttributeValues={":one": {"N": "1"}})

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert wins == [1] * rounds, "every conditional put has exactly one winner"
    assert get(ddb, "race", "counter")["n"] == {"N": str(threads * rounds)}, "no ADD was lost"


def test_a_query_returns_its_partition_in_order_and_pages_through_it(ddb):
    for pk in ("qa", "qb", "qc"):
        for i in (3, 1, 4, 0, 2):
            ddb.put_item(TableName="t", Item={**key(pk, f"s{i}"), "v": {"S": pk}})

    def query(**kw) -> dict:
        return ddb.query(TableName="t", KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "qb"}}, **kw)

    assert [i["sk"]["S"] for i in query()["Items"]] == ["s0", "s1", "s2", "s3", "s4"]
    assert [i["sk"]["S"] for i in query(ScanIndexForward=False)["Items"]] == ["s4", "s3", "s2", "s1", "s0"]
    assert all(i["v"]["S"] == "qb" for i in query()["Items"])
    pages, start = [], None
    while True:
        page = query(Limit=2, **({"ExclusiveStartKey": start} if start else {}))
        pages.append([i["sk"]["S"] for i in page["Items"]])
        start = page.get("LastEvaluatedKey")
        if not start:
            break
    assert [k for p in pages for k in p] == ["s0", "s1", "s2", "s3", "s4"] and len(pages) >= 3
    assert ddb.query(TableName="t", KeyConditionExpression="pk = :p",
                     ExpressionAttributeValues={":p": {"S": "nothing"}})["Items"] == []


def test_sqs_counts_and_receives_follow_visibility_and_delay(server):
    sqs = client(server, "sqs")
    url = sqs.create_queue(QueueName="counts")["QueueUrl"]

    def counts() -> tuple[int, int, int]:
        a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        return (int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"]),
                int(a["ApproximateNumberOfMessagesDelayed"]))

    for i in range(5):
        sqs.send_message(QueueUrl=url, MessageBody=f"now-{i}")
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=2)
    assert counts() == (5, 0, 1)
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=3, VisibilityTimeout=30)["Messages"]
    assert len(got) == 3 and all(m["Body"].startswith("now-") for m in got)
    assert counts() == (2, 3, 1)
    rest = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30)["Messages"]
    assert sorted(m["Body"] for m in rest) == sorted({f"now-{i}" for i in range(5)} - {m["Body"] for m in got})
    time.sleep(2.2)
    late = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=1)["Messages"]
    assert [m["Body"] for m in late] == ["later"], "the delayed message shows once its delay is over"
    assert counts() == (0, 6, 0)
    time.sleep(1.2)
    assert counts() == (1, 5, 0), "a message whose visibility timeout ran out is visible again"
