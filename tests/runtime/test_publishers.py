"""The batch publishers: moto for the happy paths, a scripted fake client for everything that fails."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ParamValidationError, ReadTimeoutError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from messaging_runtime.publishers import (
    DynamoDbPublisher,
    EventBridgePublisher,
    FailedEntry,
    FirehosePublisher,
    KinesisPublisher,
    PublishError,
    PublishResult,
    Retry,
    SnsPublisher,
    SqsPublisher,
    entry_size,
    item_size,
)

KIB = 1024
MIB = 1024 * 1024
QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/orders"
FIFO_QUEUE_URL = QUEUE_URL + ".fifo"
TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:orders"
FIFO_TOPIC_ARN = TOPIC_ARN + ".fifo"
ENV = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_CONFIG_FILE": "/nonexistent/aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
}
CLEARED = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_SNS", "AWS_SECURITY_TOKEN")


# --- the scripted fake ---------------------------------------------------------------------------------------------


class Fake:
    """A boto3 client for the six batch APIs that answers from a script.

    ``verdict(call_number, entry)`` returns None to accept the entry or ``(code, sender_fault)`` to fail it
    (DynamoDB: any verdict leaves the write unprocessed); ``raises`` maps a call number to the exception
    that call raises instead. ``calls`` keeps (method, entries) per call, ``accepted`` every entry accepted.
    """

    def __init__(self, verdict=None, raises=None):
        self.verdict = verdict or (lambda call, entry: None)
        self.raises = raises or {}
        self.calls: list[tuple[str, list[Any]]] = []
        self.accepted: list[Any] = []

    def _call(self, method, entries):
        self.calls.append((method, list(entries)))
        number = len(self.calls)
        error = self.raises(number) if callable(self.raises) else self.raises.get(number)
        if error is not None:
            raise error
        verdicts = [self.verdict(number, entry) for entry in entries]
        self.accepted.extend(entry for entry, verdict in zip(entries, verdicts, strict=True) if verdict is None)
        return number, verdicts

    def _by_id(self, method, entries):
        number, verdicts = self._call(method, entries)
        response = {"Successful": [], "Failed": []}
        for entry, verdict in zip(entries, verdicts, strict=True):
            if verdict is None:
                response["Successful"].append({"Id": entry["Id"], "MessageId": f"m-{number}-{entry['Id']}"})
            else:
                response["Failed"].append({"Id": entry["Id"], "Code": verdict[0], "Message": "injected", "SenderFault": verdict[1]})
        return response

    def send_message_batch(self, QueueUrl, Entries):  # noqa: N803 - boto3's parameter names
        return self._by_id("send_message_batch", Entries)

    def publish_batch(self, TopicArn, PublishBatchRequestEntries):  # noqa: N803
        return self._by_id("publish_batch", PublishBatchRequestEntries)

    def put_events(self, Entries, **options):  # noqa: N803
        number, verdicts = self._call("put_events", Entries)
        results = [{"EventId": f"e-{number}-{i}"} if v is None else {"ErrorCode": v[0], "ErrorMessage": "injected"} for i, v in enumerate(verdicts)]
        return {"FailedEntryCount": sum(v is not None for v in verdicts), "Entries": results}

    def put_records(self, Records, **stream):  # noqa: N803
        number, verdicts = self._call("put_records", Records)
        results = [
            {"SequenceNumber": f"{number:04d}{i:04d}", "ShardId": "shardId-000000000000"} if v is None else {"ErrorCode": v[0], "ErrorMessage": "injected"}
            for i, v in enumerate(verdicts)
        ]
        return {"FailedRecordCount": sum(v is not None for v in verdicts), "Records": results}

    def put_record_batch(self, DeliveryStreamName, Records):  # noqa: N803
        number, verdicts = self._call("put_record_batch", Records)
        results = [{"RecordId": f"r-{number}-{i}"} if v is None else {"ErrorCode": v[0], "ErrorMessage": "injected"} for i, v in enumerate(verdicts)]
        return {"FailedPutCount": sum(v is not None for v in verdicts), "RequestResponses": results}

    def batch_write_item(self, RequestItems):  # noqa: N803
        ((table, writes),) = RequestItems.items()
        _, verdicts = self._call("batch_write_item", writes)
        unprocessed = [write for write, verdict in zip(writes, verdicts, strict=True) if verdict is not None]
        return {"UnprocessedItems": {table: unprocessed} if unprocessed else {}}

    def sizes(self):
        return [len(entries) for _, entries in self.calls]


class Pauses(list):
    """Retry(sleep=pauses.append, jitter=0.5): every pause is half its ceiling, recorded here."""


def retry(pauses=None, **options):
    return Retry(sleep=(pauses if pauses is not None else Pauses()).append, jitter=lambda: 0.5, **options)


def client_error(code, message="denied", status=400, **extra):
    return ClientError({"Error": {"Code": code, "Message": message, **extra}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Batch")


def messages(count, size=10, **fields):
    return [{"MessageBody": f"{i:0{size}d}", **fields} for i in range(count)]


def sns_messages(count, size=10, **fields):
    return [{"Message": f"{i:0{size}d}", **fields} for i in range(count)]


def ids_of(entries):
    return [entry["Id"] for entry in entries]


def failures(result: PublishResult):
    return {f.index: (f.code, f.reason, f.attempts) for f in result.failed}


# --- moto: the happy paths ------------------------------------------------------------------------------------------


@pytest.fixture
def aws(monkeypatch):
    for name in CLEARED:
        monkeypatch.delenv(name, raising=False)
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield


def recorded(client, event_name, key):
    """The entries of every call the client makes for ``event_name`` (``service.Operation``)."""
    calls = []
    client.meta.events.register(f"before-parameter-build.{event_name}", lambda params, **_: calls.append(params[key] if key else params))
    return calls


def drain(sqs, queue_url):
    received = []
    while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"], MessageAttributeNames=["All"]).get("Messages"):
        received.extend(batch)
        sqs.delete_message_batch(QueueUrl=queue_url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)])
    return received


def test_sqs_sends_25_messages_in_3_calls_and_each_arrives_once(aws):
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="orders")["QueueUrl"]
    calls = recorded(sqs, "sqs.SendMessageBatch", "Entries")
    attribute = {"kind": {"DataType": "String", "StringValue": "order"}}

    result = SqsPublisher(sqs, url).publish(messages(25, MessageAttributes=attribute))

    assert (result.sent_count, result.failed_count, result.calls, result.rounds) == (25, 0, 3, 1)
    assert [len(entries) for entries in calls] == [10, 10, 5]
    assert [s.id for s in result.sent] == [str(i) for i in range(25)]
    assert all(s.result["MessageId"] for s in result.sent)
    received = drain(sqs, url)
    assert sorted(m["Body"] for m in received) == [f"{i:010d}" for i in range(25)]
    assert {m["MessageAttributes"]["kind"]["StringValue"] for m in received} == {"order"}


def test_sqs_fifo_keeps_each_group_in_order(aws):
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="orders.fifo", Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"})["QueueUrl"]
    calls = recorded(sqs, "sqs.SendMessageBatch", "Entries")
    groups = ["a", "b", "a", "a", "c", "b", "a", "c", "a", "a", "b", "a"]
    entries = [{"MessageBody": f"{group}-{i:02d}", "MessageGroupId": group} for i, group in enumerate(groups)]

    result = SqsPublisher(sqs, url).publish(entries)

    assert result.ok and result.calls == 7  # "a" has seven messages, one per call
    assert [[e["MessageGroupId"] for e in call] for call in calls] == [["a", "b", "c"], ["a", "b", "c"], ["a", "b"], ["a"], ["a"], ["a"], ["a"]]
    received = [m["Body"] for m in drain(sqs, url)]
    for group in "abc":
        assert [b for b in received if b.startswith(group)] == [e["MessageBody"] for e in entries if e["MessageGroupId"] == group]


def test_sns_publishes_to_a_subscribed_queue(aws):
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic = sns.create_topic(Name="orders")["TopicArn"]
    url = sqs.create_queue(QueueName="audit")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
    calls = recorded(sns, "sns.PublishBatch", "PublishBatchRequestEntries")

    result = SnsPublisher(sns, topic).publish(sns_messages(12))

    assert (result.sent_count, result.calls) == (12, 2)
    assert [len(entries) for entries in calls] == [10, 2]
    assert sorted(m["Body"] for m in drain(sqs, url)) == [f"{i:010d}" for i in range(12)]


def test_eventbridge_puts_15_events_in_2_calls_onto_the_bus(aws):
    events, sqs = boto3.client("events"), boto3.client("sqs")
    events.create_event_bus(Name="blueprints")
    url = sqs.create_queue(QueueName="all-orders")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="orders", EventBusName="blueprints", EventPattern=json.dumps({"source": ["blueprints.orders"]}))
    events.put_targets(Rule="orders", EventBusName="blueprints", Targets=[{"Id": "queue", "Arn": arn}])
    calls = recorded(events, "events.PutEvents", "Entries")
    entries = [{"Source": "blueprints.orders", "DetailType": "OrderPlaced", "Detail": json.dumps({"n": i})} for i in range(15)]

    result = EventBridgePublisher(events, event_bus_name="blueprints").publish(entries)

    assert (result.sent_count, result.calls, result.target) == (15, 2, "blueprints")
    assert [len(entries) for entries in calls] == [10, 5]
    assert {e["EventBusName"] for call in calls for e in call} == {"blueprints"}
    assert all("EventBusName" not in e for e in entries)  # the caller's entries are left as they were
    assert len({s.result["EventId"] for s in result.sent}) == 15
    assert sorted(json.loads(m["Body"])["detail"]["n"] for m in drain(sqs, url)) == list(range(15))


def test_kinesis_puts_600_records_in_calls_of_500_and_100(aws):
    kinesis = boto3.client("kinesis")
    kinesis.create_stream(StreamName="clicks", ShardCount=1)
    calls = recorded(kinesis, "kinesis.PutRecords", "Records")
    records = [{"Data": f"click-{i}".encode(), "PartitionKey": f"user-{i % 7}"} for i in range(600)]

    result = KinesisPublisher(kinesis, stream_name="clicks").publish(records)

    assert (result.sent_count, result.calls) == (600, 2)
    assert [len(entries) for entries in calls] == [500, 100]
    shard = kinesis.describe_stream(StreamName="clicks")["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(StreamName="clicks", ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    stored = kinesis.get_records(ShardIterator=iterator, Limit=10000)["Records"]
    assert [r["Data"] for r in stored] == [f"click-{i}".encode() for i in range(600)]
    assert [s.result["SequenceNumber"] for s in result.sent] == [r["SequenceNumber"] for r in stored]


def test_firehose_puts_records_into_the_stream(aws):
    s3, firehose = boto3.client("s3"), boto3.client("firehose")
    s3.create_bucket(Bucket="clicks-lake")
    firehose.create_delivery_stream(
        DeliveryStreamName="clicks",
        S3DestinationConfiguration={"RoleARN": "arn:aws:iam::123456789012:role/firehose", "BucketARN": "arn:aws:s3:::clicks-lake"},
    )

    result = FirehosePublisher(firehose, "clicks").publish([{"Data": f"{i}\n".encode()} for i in range(3)])

    assert (result.sent_count, result.calls) == (3, 1)
    assert all(s.result["RecordId"] for s in result.sent)
    [stored] = s3.list_objects_v2(Bucket="clicks-lake")["Contents"]
    assert s3.get_object(Bucket="clicks-lake", Key=stored["Key"])["Body"].read() == b"0\n1\n2\n"


def test_dynamodb_writes_60_items_in_calls_of_25(aws):
    dynamodb = boto3.client("dynamodb")
    dynamodb.create_table(
        TableName="projection",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "N"}],
        BillingMode="PAY_PER_REQUEST",
    )
    calls = recorded(dynamodb, "dynamodb.BatchWriteItem", "RequestItems")
    puts = [{"PutRequest": {"Item": {"pk": {"S": f"order-{i % 3}"}, "sk": {"N": str(i)}, "total": {"N": "12.5"}}}} for i in range(60)]
    deletes = [{"DeleteRequest": {"Key": {"pk": {"S": "order-0"}, "sk": {"N": str(i)}}}} for i in (0, 3)]

    result = DynamoDbPublisher(dynamodb, "projection", key_attributes=("pk", "sk")).publish(puts + deletes)

    assert (result.sent_count, result.calls) == (62, 3)
    assert [len(items["projection"]) for items in calls] == [25, 25, 12]
    assert dynamodb.scan(TableName="projection", Select="COUNT")["Count"] == 58


# --- calls within both limits ---------------------------------------------------------------------------------------


def test_ten_30_kib_messages_take_two_calls_to_a_topic_and_one_to_a_queue():
    """SNS: 256 KiB per call by default (8 x 30 KiB fit, 9 do not). SQS: 1 MiB per call since 2025."""
    topic, queue = Fake(), Fake()

    SnsPublisher(topic, TOPIC_ARN, retry=retry()).publish(sns_messages(10, size=30 * KIB))
    SqsPublisher(queue, QUEUE_URL, retry=retry()).publish(messages(10, size=30 * KIB))

    assert topic.sizes() == [8, 2]
    assert queue.sizes() == [10]


def test_ten_120_kib_messages_take_two_calls_to_a_queue():
    fake = Fake()

    result = SqsPublisher(fake, QUEUE_URL, retry=retry()).publish(messages(10, size=120 * KIB))

    assert fake.sizes() == [8, 2]  # 8 x 122,880 = 983,040 bytes; a ninth would make 1,105,920 > 1,048,576
    assert result.sent_count == 10


def test_a_topic_with_a_larger_maximum_message_size_takes_larger_calls():
    fake = Fake()

    SnsPublisher(fake, TOPIC_ARN, max_message_bytes=MIB, retry=retry()).publish(sns_messages(10, size=120 * KIB))

    assert fake.sizes() == [8, 2]


def test_a_message_size_counts_its_attributes_names_types_and_values():
    fake = Fake()
    attributes = {"kind": {"DataType": "String", "StringValue": "é"}, "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01\x02"}}
    body_exactly_at_the_limit = "x" * (1024 - (4 + 6 + 2) - (4 + 6 + 3))
    entries = [
        {"MessageBody": body_exactly_at_the_limit, "MessageAttributes": attributes},
        {"MessageBody": body_exactly_at_the_limit + "x", "MessageAttributes": attributes},
        {"MessageBody": "y" * 1024, "MessageSystemAttributes": {"AWSTraceHeader": {"DataType": "String", "StringValue": "Root=1-abc"}}},
    ]

    result = SqsPublisher(fake, QUEUE_URL, max_message_bytes=1024, retry=retry()).publish(entries)

    assert [s.index for s in result.sent] == [0, 2]  # system attributes do not count
    assert failures(result) == {1: ("EntryTooLarge", "EntryTooLarge: the entry is 1025 bytes, over the 1024-byte SQS SendMessageBatch limit", 0)}


def test_an_entry_over_the_per_entry_limit_is_reported_and_the_rest_are_sent():
    fake = Fake()
    entries = sns_messages(5)
    entries[2] = {"Message": "z" * (256 * KIB + 1)}

    result = SnsPublisher(fake, TOPIC_ARN, retry=retry()).publish(entries)

    assert fake.sizes() == [4]
    assert ids_of(fake.calls[0][1]) == ["0", "1", "3", "4"]
    assert failures(result) == {2: ("EntryTooLarge", "EntryTooLarge: the entry is 262145 bytes, over the 262144-byte SNS PublishBatch limit", 0)}
    assert (result.sent_count, result.calls, result.rounds) == (4, 1, 1)


def test_eventbridge_counts_entry_sizes_as_eventbridge_does():
    entry = {"Source": "s", "DetailType": "dé", "Detail": '{"a":"€"}', "Resources": ["ab", "c"], "EventBusName": "not-counted"}

    assert entry_size(entry) == 1 + 3 + 11 + 3
    assert entry_size({**entry, "Time": "2025-01-01T00:00:00Z"}) == 14 + 18


def test_eventbridge_calls_stay_under_the_request_size():
    fake = Fake()
    entries = [{"Source": "s", "DetailType": "d", "Detail": json.dumps({"pad": "x" * 300, "n": i})} for i in range(12)]
    largest = max(entry_size(e) for e in entries)

    EventBridgePublisher(fake, max_request_bytes=3 * largest, retry=retry()).publish(entries)

    assert fake.sizes() == [3, 3, 3, 3]
    assert all(sum(entry_size(e) for e in call) <= 3 * largest for _, call in fake.calls)


def test_eventbridge_fills_calls_up_to_ten_entries_and_one_mib():
    fake = Fake()
    big = [{"Source": "s", "DetailType": "d", "Detail": json.dumps({"pad": "x" * (300 * KIB), "n": i})} for i in range(4)]
    small = [{"Source": "s", "DetailType": "d", "Detail": json.dumps({"n": i})} for i in range(21)]

    result = EventBridgePublisher(fake, retry=retry()).publish(big + small)

    # Three big entries fit in 1 MiB, a fourth does not: it waits for the next call while small ones fill this one.
    assert fake.sizes() == [10, 10, 5]
    assert fake.calls[0][1] == big[:3] + small[:7]
    assert fake.calls[1][1] == big[3:] + small[7:16]
    assert result.sent_count == 25


def test_kinesis_counts_the_partition_key_in_the_record_size():
    fake = Fake()
    records = [
        {"Data": b"x" * (MIB - 7), "PartitionKey": "user-01"},  # exactly 1 MiB with its key
        {"Data": b"x" * (MIB - 6), "PartitionKey": "user-01"},
        {"Data": "ü" * 10, "PartitionKey": "k"},
    ]

    result = KinesisPublisher(fake, stream_name="clicks", retry=retry()).publish(records)

    assert [s.index for s in result.sent] == [0, 2]
    assert failures(result) == {1: ("EntryTooLarge", "EntryTooLarge: the entry is 1048577 bytes, over the 1048576-byte Kinesis PutRecords limit", 0)}


def test_kinesis_calls_stay_within_the_request_size():
    fake = Fake()
    records = [{"Data": b"x" * (MIB - 2), "PartitionKey": "pk"} for _ in range(6)] + [{"Data": b"y", "PartitionKey": "pk"}] * 600

    KinesisPublisher(fake, stream_arn="arn:aws:kinesis:us-east-1:123456789012:stream/clicks", retry=retry()).publish(records)

    assert fake.sizes() == [5, 500, 101]  # 5 MiB; then 500 records; then what is left


def test_kinesis_streams_of_large_records_take_larger_records_and_calls():
    fake = Fake()
    records = [{"Data": b"x" * (3 * MIB), "PartitionKey": "pk"} for _ in range(4)]

    result = KinesisPublisher(fake, stream_name="clicks", max_record_bytes=10 * MIB, max_request_bytes=10 * MIB, retry=retry()).publish(records)

    assert result.ok and fake.sizes() == [3, 1]


def test_firehose_calls_stay_within_500_records_and_4_mib():
    fake = Fake()
    big = [{"Data": b"x" * (1000 * KIB)} for _ in range(5)]
    over = {"Data": b"x" * (1000 * KIB + 1)}

    result = FirehosePublisher(fake, "clicks", retry=retry()).publish(big + [over] + [{"Data": b"y"}] * 1000)

    assert fake.sizes() == [500, 500, 5]  # 4 x 1,024,000 bytes fit in 4 MiB, a fifth does not: it goes in the next call
    assert fake.calls[0][1][:5] == big[:4] + [{"Data": b"y"}]
    assert fake.calls[1][1][0] is big[4]
    assert failures(result) == {5: ("EntryTooLarge", "EntryTooLarge: the entry is 1024001 bytes, over the 1024000-byte Firehose PutRecordBatch limit", 0)}


def test_dynamodb_counts_item_sizes_as_dynamodb_does():
    item = {
        "pk": {"S": "é"},  # 2 + 2
        "n": {"N": "-0012.3400"},  # 1 + (4 digits: 2 bytes) + 1
        "b": {"B": b"\x00\x01"},  # 1 + 2
        "t": {"BOOL": True},  # 1 + 1
        "z": {"NULL": True},  # 1 + 1
        "ss": {"SS": ["a", "bc"]},  # 2 + 3
        "l": {"L": [{"S": "ab"}, {"N": "7"}]},  # 1 + 3 + (1 + 2) + (1 + 2)
        "m": {"M": {"k": {"S": "v"}}},  # 1 + 3 + (1 + 1 + 1)
    }

    assert item_size(item) == 4 + 4 + 3 + 2 + 2 + 5 + 10 + 7


def test_dynamodb_refuses_an_item_over_400_kb_and_a_key_over_its_limit():
    fake = Fake()
    ok = {"PutRequest": {"Item": {"pk": {"S": "a"}, "body": {"S": "x" * (400 * KIB - 7)}}}}  # (2 + 1) + (4 + 409,593) = 409,600
    too_big = {"PutRequest": {"Item": {"pk": {"S": "b"}, "body": {"S": "x" * (400 * KIB - 6)}}}}
    long_key = {"PutRequest": {"Item": {"pk": {"S": "k" * 2049}}}}

    result = DynamoDbPublisher(fake, "projection", key_attributes=["pk"], retry=retry()).publish([ok, too_big, long_key])

    assert [s.index for s in result.sent] == [0]
    assert failures(result) == {
        1: ("EntryTooLarge", "EntryTooLarge: the entry is 409601 bytes, over the 409600-byte DynamoDB BatchWriteItem limit", 0),
        2: ("InvalidEntry", "InvalidEntry: key attribute 'pk' is 2049 bytes, over DynamoDB's 2048-byte limit", 0),
    }


def test_dynamodb_never_puts_two_writes_of_one_item_in_a_call_and_keeps_their_order():
    fake = Fake()
    writes = [
        {"PutRequest": {"Item": {"pk": {"N": "1"}, "v": {"S": "first"}}}},
        {"PutRequest": {"Item": {"pk": {"N": "2"}}}},
        {"PutRequest": {"Item": {"pk": {"N": "1.0"}, "v": {"S": "second"}}}},  # the same number, so the same item
        {"DeleteRequest": {"Key": {"pk": {"N": "1"}}}},
    ]

    result = DynamoDbPublisher(fake, "projection", key_attributes=["pk"], retry=retry()).publish(writes)

    assert result.ok
    assert [[writes.index(w) for w in call] for _, call in fake.calls] == [[0, 1], [2], [3]]


def test_a_topic_message_size_counts_the_subject_too():
    fake = Fake()
    body = "x" * (256 * KIB - 5)

    result = SnsPublisher(fake, TOPIC_ARN, retry=retry()).publish([{"Message": body, "Subject": "hello"}, {"Message": body, "Subject": "hello!"}])

    assert [s.index for s in result.sent] == [0]
    assert failures(result) == {1: ("EntryTooLarge", "EntryTooLarge: the entry is 262145 bytes, over the 262144-byte SNS PublishBatch limit", 0)}


def test_a_fifo_queue_refuses_a_per_message_delay():
    fake = Fake()

    result = SqsPublisher(fake, FIFO_QUEUE_URL, retry=retry()).publish(
        [{"MessageBody": "a", "MessageGroupId": "g", "DelaySeconds": 5}, {"MessageBody": "b", "MessageGroupId": "g"}]
    )

    assert failures(result) == {
        0: ("InvalidEntry", "InvalidEntry: a FIFO queue takes no DelaySeconds per message", 0),
        1: ("GroupStopped", "GroupStopped: an earlier message of its group was not sent", 0),
    }
    assert fake.calls == []


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ({"DeleteRequest": {"Key": {"pk": {"S": "a"}, "other": {"S": "b"}}}}, "a DeleteRequest's Key must hold exactly pk"),
        ({"PutRequest": {"Item": {"other": {"S": "b"}}}}, "key attribute 'pk' must be an S, N or B value"),
        ({"PutRequest": {"Item": {"pk": {"S": "a"}, "x": {"Q": "?"}}}}, "unknown attribute value type 'Q'"),
        ({"PutRequest": {"Item": {"pk": {"N": "one"}}}}, "key attribute 'pk' is not a number: 'one'"),
        ({"UpdateRequest": {}}, "an entry must be {'PutRequest': {'Item': ...}} or {'DeleteRequest': {'Key': ...}}"),
    ],
)
def test_a_write_dynamodb_would_refuse_whole_is_reported_and_not_sent(entry, reason):
    fake = Fake()

    result = DynamoDbPublisher(fake, "projection", key_attributes=["pk"], retry=retry()).publish([entry, {"PutRequest": {"Item": {"pk": {"S": "z"}}}}])

    assert failures(result) == {0: ("InvalidEntry", f"InvalidEntry: {reason}", 0)}
    assert fake.sizes() == [1]


def test_eventbridge_sends_the_endpoint_id_with_every_call():
    seen = []

    class Endpoint(Fake):
        def put_events(self, Entries, **options):  # noqa: N803
            seen.append(options)
            return super().put_events(Entries, **options)

    EventBridgePublisher(Endpoint(), endpoint_id="abcde.veo", retry=retry()).publish([{"Source": "s", "DetailType": "d", "Detail": "{}"}] * 11)

    assert seen == [{"EndpointId": "abcde.veo"}] * 2


# --- retry only what failed, regrouped ------------------------------------------------------------------------------


def test_25_entries_with_7_failures_are_retried_in_one_call_of_7():
    failing = {"1", "3", "5", "11", "14", "20", "24"}
    fake = Fake(lambda call, entry: ("InternalError", False) if call <= 3 and entry["Id"] in failing else None)
    pauses = Pauses()

    result = SqsPublisher(fake, QUEUE_URL, retry=retry(pauses)).publish(messages(25))

    assert fake.sizes() == [10, 10, 5, 7]
    assert ids_of(fake.calls[3][1]) == ["1", "3", "5", "11", "14", "20", "24"]
    assert fake.calls[3][1] == [e for _, call in fake.calls[:3] for e in call if e["Id"] in failing]  # the very entries
    assert (result.sent_count, result.failed_count, result.calls, result.rounds) == (25, 0, 4, 2)
    assert pauses == [0.1]  # half (jitter 0.5) of the first ceiling, 0.2 s
    assert {s.index: s.attempts for s in result.sent if s.attempts > 1} == {int(i): 2 for i in failing}
    assert Counter(e["Id"] for e in fake.accepted) == Counter(str(i) for i in range(25))


def test_a_persistent_failure_is_reported_after_max_attempts_with_growing_pauses():
    fake = Fake(lambda call, entry: ("InternalError", False) if entry["Id"] in {"4", "17"} else None)
    pauses = Pauses()

    result = SqsPublisher(fake, QUEUE_URL, retry=retry(pauses)).publish(messages(25))

    assert fake.sizes() == [10, 10, 5, 2, 2]
    assert pauses == [0.1, 0.2]
    assert failures(result) == {
        4: ("InternalError", "InternalError: injected (after 3 attempts)", 3),
        17: ("InternalError", "InternalError: injected (after 3 attempts)", 3),
    }
    assert (result.sent_count, result.calls, result.rounds) == (23, 5, 3)


def test_max_attempts_one_means_no_retry():
    fake = Fake(lambda call, entry: ("InternalError", False) if entry["Id"] == "2" else None)
    pauses = Pauses()

    result = SqsPublisher(fake, QUEUE_URL, retry=retry(pauses, max_attempts=1)).publish(messages(3))

    assert failures(result) == {2: ("InternalError", "InternalError: injected (after 1 attempts)", 1)}
    assert (result.calls, result.rounds, pauses) == (1, 1, [])


@pytest.mark.parametrize("publisher", ["sqs", "sns"])
def test_a_sender_fault_is_not_retried(publisher):
    fake = Fake(lambda call, entry: ("InvalidParameter", True) if entry["Id"] == "1" else None)
    pauses = Pauses()
    make = {"sqs": lambda: SqsPublisher(fake, QUEUE_URL, retry=retry(pauses)), "sns": lambda: SnsPublisher(fake, TOPIC_ARN, retry=retry(pauses))}
    entries = messages(3) if publisher == "sqs" else sns_messages(3)

    result = make[publisher]().publish(entries)

    assert failures(result) == {1: ("InvalidParameter", "InvalidParameter: injected", 1)}
    assert (result.calls, result.rounds, pauses) == (1, 1, [])


@pytest.mark.parametrize(
    "code",
    [
        "AccessDeniedException",
        "InvalidAccountIdException",
        "InvalidArgument",
        "MalformedDetail",
        "RedactionFailure",
        "NotAuthorizedForSourceException",
        "NotAuthorizedForDetailTypeException",
    ],
)
def test_eventbridge_does_not_retry_the_codes_its_reference_calls_non_retryable(code):
    fake = Fake(lambda call, entry: (code, False) if entry["Detail"] == '{"n":1}' else None)

    result = EventBridgePublisher(fake, retry=retry()).publish([{"Source": "s", "DetailType": "d", "Detail": f'{{"n":{i}}}'} for i in range(3)])

    assert failures(result) == {1: (code, f"{code}: injected", 1)}
    assert fake.sizes() == [3]


@pytest.mark.parametrize("code", ["InternalFailure", "ThrottlingException", "SomeNewCode"])
def test_eventbridge_retries_every_other_code(code):
    fake = Fake(lambda call, entry: (code, False) if call == 1 and entry["Detail"] == '{"n":1}' else None)

    result = EventBridgePublisher(fake, retry=retry()).publish([{"Source": "s", "DetailType": "d", "Detail": f'{{"n":{i}}}'} for i in range(3)])

    assert result.ok and fake.sizes() == [3, 1]


def test_eventbridge_matches_results_to_entries_by_position():
    fake = Fake(lambda call, entry: ("InternalFailure", False) if call == 1 and json.loads(entry["Detail"])["n"] in (0, 9) else None)
    entries = [{"Source": "s", "DetailType": "d", "Detail": json.dumps({"n": i})} for i in range(10)]

    result = EventBridgePublisher(fake, retry=retry()).publish(entries)

    assert fake.calls[1][1] == [entries[0], entries[9]]
    assert [s.result["EventId"] for s in result.sent] == ["e-2-0"] + [f"e-1-{i}" for i in range(1, 9)] + ["e-2-1"]


@pytest.mark.parametrize("code", ["ProvisionedThroughputExceededException", "InternalFailure"])
def test_kinesis_retries_failed_records_in_one_call(code):
    fake = Fake(lambda call, entry: (code, False) if call == 1 and entry["PartitionKey"] in ("k3", "k7") else None)

    result = KinesisPublisher(fake, stream_name="clicks", retry=retry()).publish([{"Data": b"d", "PartitionKey": f"k{i}"} for i in range(10)])

    assert result.ok and fake.sizes() == [10, 2]
    assert [r["PartitionKey"] for r in fake.calls[1][1]] == ["k3", "k7"]


def test_firehose_retries_failed_records_in_one_call():
    fake = Fake(lambda call, entry: ("ServiceUnavailableException", False) if call == 1 and entry["Data"] in (b"2", b"5", b"6") else None)

    result = FirehosePublisher(fake, "clicks", retry=retry()).publish([{"Data": str(i).encode()} for i in range(8)])

    assert result.ok and fake.sizes() == [8, 3]
    assert [s.result["RecordId"] for s in result.sent][2] == "r-2-0"


def test_dynamodb_unprocessed_items_of_several_calls_are_retried_together():
    unprocessed = {3, 7, 10, 26, 29}
    fake = Fake(lambda call, entry: "unprocessed" if call <= 2 and int(entry["PutRequest"]["Item"]["pk"]["S"]) in unprocessed else None)
    pauses = Pauses()

    result = DynamoDbPublisher(fake, "projection", key_attributes=["pk"], retry=retry(pauses)).publish(
        [{"PutRequest": {"Item": {"pk": {"S": str(i)}}}} for i in range(30)]
    )

    assert result.ok and fake.sizes() == [25, 5, 5]
    assert [int(w["PutRequest"]["Item"]["pk"]["S"]) for w in fake.calls[2][1]] == sorted(unprocessed)
    assert pauses == [0.1]


def test_an_entry_missing_from_the_response_is_retried():
    class Forgetful(Fake):
        def send_message_batch(self, QueueUrl, Entries):  # noqa: N803
            response = super().send_message_batch(QueueUrl, Entries)
            if len(self.calls) == 1:
                response["Successful"] = [r for r in response["Successful"] if r["Id"] != "1"]
            return response

    fake = Forgetful()

    result = SqsPublisher(fake, QUEUE_URL, retry=retry()).publish(messages(3))

    assert result.ok and fake.sizes() == [3, 1]
    assert ids_of(fake.calls[1][1]) == ["1"]


# --- whole calls that fail -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        client_error("RequestThrottled", "slow down", status=403),  # SQS throttling comes as a 403
        client_error("KMS.ThrottlingException", "kms", QueryErrorCode="KmsThrottled"),
        client_error("ThrottlingException", "Rate exceeded"),
        client_error("InternalError", "oops", status=500),
        client_error("Whatever", "unavailable", status=503),
        EndpointConnectionError(endpoint_url="https://sqs.us-east-1.amazonaws.com"),
        ReadTimeoutError(endpoint_url="https://sqs.us-east-1.amazonaws.com"),
    ],
    ids=["throttled-403", "kms-throttled", "throttling", "500", "503", "connection", "timeout"],
)
def test_a_throttled_or_failed_call_is_retried_in_the_next_round(error):
    fake = Fake(raises={2: error})
    pauses = Pauses()

    result = SqsPublisher(fake, QUEUE_URL, retry=retry(pauses)).publish(messages(25))

    assert fake.sizes() == [10, 10, 5, 10]
    assert ids_of(fake.calls[3][1]) == [str(i) for i in range(10, 20)]
    assert (result.sent_count, result.calls, result.rounds, pauses) == (25, 4, 2, [0.1])


def test_a_call_that_keeps_failing_reports_its_entries_after_max_attempts():
    fake = Fake(raises=lambda call: client_error("ThrottlingException", "Rate exceeded") if call != 1 else None)

    result = EventBridgePublisher(fake, retry=retry()).publish([{"Source": "s", "DetailType": "d", "Detail": "{}"}] * 12)

    assert fake.sizes() == [10, 2, 2, 2]
    assert failures(result) == {i: ("ThrottlingException", "ThrottlingException: Rate exceeded (after 3 attempts)", 3) for i in (10, 11)}


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        (client_error("AccessDeniedException", "denied"), "AccessDeniedException: denied"),
        (
            client_error("AWS.SimpleQueueService.NonExistentQueue", "no queue", QueryErrorCode="QueueDoesNotExist"),
            "AWS.SimpleQueueService.NonExistentQueue: no queue",
        ),
        (ParamValidationError(report="bad"), "ParamValidationError: Parameter validation failed:\nbad"),
    ],
    ids=["access-denied", "no-queue", "param-validation"],
)
def test_a_client_error_fails_the_call_and_stops_publishing(error, cause):
    fake = Fake(raises={2: error})

    result = SqsPublisher(fake, QUEUE_URL, retry=retry()).publish(messages(25))

    code = cause.split(":")[0]
    assert fake.sizes() == [10, 10]
    assert failures(result) == {
        **{i: (code, cause, 1) for i in range(10, 20)},
        **{i: ("NotSent", f"NotSent: publishing stopped after {cause}", 0) for i in range(20, 25)},
    }
    assert (result.sent_count, result.calls, result.rounds) == (10, 2, 1)


def test_a_stop_reports_the_entries_waiting_for_a_retry_with_their_last_error():
    fake = Fake(
        lambda call, entry: ("InternalFailure", False) if call == 1 and entry["Detail"] == '{"n":2}' else None,
        raises={2: client_error("AccessDeniedException", "denied")},
    )

    result = EventBridgePublisher(fake, retry=retry()).publish([{"Source": "s", "DetailType": "d", "Detail": f'{{"n":{i}}}'} for i in range(15)])

    assert result.sent_count == 9 and result.calls == 2
    assert result.reasons[2] == "InternalFailure: injected (not retried: publishing stopped after AccessDeniedException: denied)"
    assert {i: result.reasons[i] for i in range(10, 15)} == {i: "AccessDeniedException: denied" for i in range(10, 15)}


def test_no_retry_round_starts_past_the_time_budget():
    now = [100.0]
    pauses = Pauses()

    def sleep(seconds):
        pauses.append(seconds)
        now[0] += seconds

    fake = Fake(lambda call, entry: ("InternalError", False) if entry["Id"] == "1" else None)
    policy = Retry(sleep=sleep, jitter=lambda: 0.5, clock=lambda: now[0], max_attempts=5)

    result = SqsPublisher(fake, QUEUE_URL, retry=policy).publish(messages(3), time_budget_seconds=0.25)

    assert pauses == [0.1]  # the next pause (0.2 s) would end at 0.3 s
    assert failures(result) == {1: ("InternalError", "InternalError: injected (not retried: no time left for another round)", 2)}


# --- FIFO: each group in order ----------------------------------------------------------------------------------------


def fifo_entries(groups):
    return [{"Message": f"o-{i}", "MessageGroupId": group, "MessageDeduplicationId": f"o-{i}"} for i, group in enumerate(groups)]


def test_a_fifo_call_carries_at_most_one_message_per_group():
    fake = Fake()
    groups = ["c-a", "c-b", "c-a", "c-a", "c-b", "c-c"] * 2

    result = SnsPublisher(fake, FIFO_TOPIC_ARN, retry=retry()).publish(fifo_entries(groups))

    assert result.ok and result.calls == 6  # c-a has six messages
    for _, call in fake.calls:
        assert len({e["MessageGroupId"] for e in call}) == len(call)
    for group in set(groups):
        assert [e["Message"] for e in fake.accepted if e["MessageGroupId"] == group] == [
            e["Message"] for e in fifo_entries(groups) if e["MessageGroupId"] == group
        ]


def test_a_message_lost_for_good_stops_the_rest_of_its_group():
    fake = Fake(lambda call, entry: ("InternalError", False) if entry["Message"] == "o-2" else None)

    result = SnsPublisher(fake, FIFO_TOPIC_ARN, retry=retry()).publish(fifo_entries(["c-a", "c-b"] * 3))

    assert [[e["Message"] for e in call] for _, call in fake.calls] == [["o-0", "o-1"], ["o-2", "o-3"], ["o-5"], ["o-2"], ["o-2"]]
    assert failures(result) == {
        2: ("InternalError", "InternalError: injected (after 3 attempts)", 3),
        4: ("GroupStopped", "GroupStopped: an earlier message of its group was not sent", 0),
    }
    assert [s.index for s in result.sent] == [0, 1, 3, 5]


def test_a_sender_fault_stops_the_rest_of_its_group_at_once():
    fake = Fake(lambda call, entry: ("InvalidParameter", True) if entry["MessageBody"] == "o-2" else None)

    result = SqsPublisher(fake, FIFO_QUEUE_URL, retry=retry()).publish(
        [{"MessageBody": f"o-{i}", "MessageGroupId": g} for i, g in enumerate(["a", "b", "a", "b", "a", "a"])]
    )

    assert [[e["MessageBody"] for e in call] for _, call in fake.calls] == [["o-0", "o-1"], ["o-2", "o-3"]]
    assert failures(result) == {
        2: ("InvalidParameter", "InvalidParameter: injected", 1),
        4: ("GroupStopped", "GroupStopped: an earlier message of its group was not sent", 0),
        5: ("GroupStopped", "GroupStopped: an earlier message of its group was not sent", 0),
    }
    assert result.rounds == 1


def test_a_retried_message_keeps_the_later_ones_of_its_group_behind_it():
    fake = Fake(lambda call, entry: ("InternalError", False) if call == 2 and entry["Message"] == "o-2" else None)

    result = SnsPublisher(fake, FIFO_TOPIC_ARN, retry=retry()).publish(fifo_entries(["c-a", "c-b"] * 3))

    assert result.ok
    assert [[e["Message"] for e in call] for _, call in fake.calls] == [["o-0", "o-1"], ["o-2", "o-3"], ["o-5"], ["o-2"], ["o-4"]]
    assert [e["Message"] for e in fake.accepted if e["MessageGroupId"] == "c-a"] == ["o-0", "o-2", "o-4"]


def test_a_fifo_entry_refused_before_sending_stops_its_group():
    fake = Fake()
    entries = [
        {"MessageBody": "o-0", "MessageGroupId": "a"},
        {"MessageBody": "o-1", "MessageGroupId": "a", "Id": "not valid!"},
        {"MessageBody": "o-2", "MessageGroupId": "a"},
        {"MessageBody": "o-3"},
        {"MessageBody": "o-4", "MessageGroupId": "b"},
    ]

    result = SqsPublisher(fake, FIFO_QUEUE_URL, retry=retry()).publish(entries)

    assert [s.index for s in result.sent] == [0, 4]
    assert failures(result) == {
        1: ("InvalidEntry", "InvalidEntry: Id must be 1 to 80 letters, digits, hyphens or underscores, got 'not valid!'", 0),
        2: ("GroupStopped", "GroupStopped: an earlier message of its group was not sent", 0),
        3: ("InvalidEntry", "InvalidEntry: every entry for a FIFO target needs a MessageGroupId", 0),
    }


def test_a_standard_queue_ignores_message_groups_for_order():
    fake = Fake()

    SqsPublisher(fake, QUEUE_URL, retry=retry()).publish(messages(12, MessageGroupId="tenant-1"))  # fair queues

    assert fake.sizes() == [10, 2]


def test_kinesis_ordered_sends_one_record_per_partition_key_per_call():
    fake = Fake(lambda call, entry: ("ProvisionedThroughputExceededException", False) if entry["Data"] == b"1" else None)
    records = [{"Data": str(i).encode(), "PartitionKey": key} for i, key in enumerate(["a", "a", "b", "a", "b"])]

    result = KinesisPublisher(fake, stream_name="clicks", ordered=True, retry=retry()).publish(records)

    assert [[r["Data"] for r in call] for _, call in fake.calls] == [[b"0", b"2"], [b"1", b"4"], [b"1"], [b"1"]]
    assert failures(result) == {
        1: ("ProvisionedThroughputExceededException", "ProvisionedThroughputExceededException: injected (after 3 attempts)", 3),
        3: ("GroupStopped", "GroupStopped: an earlier record of its partition key was not sent", 0),
    }


# --- ids, entries, results ------------------------------------------------------------------------------------------


def test_ids_are_generated_when_missing_and_the_callers_entries_are_not_changed():
    fake = Fake()
    entries = [{"MessageBody": "a"}, {"MessageBody": "b", "Id": "order-7"}, {"MessageBody": "c"}]

    result = SqsPublisher(fake, QUEUE_URL, retry=retry()).publish(entries)

    assert ids_of(fake.calls[0][1]) == ["0", "order-7", "2"]
    assert fake.calls[0][1][1] is entries[1]
    assert "Id" not in entries[0] and "Id" not in entries[2]
    assert [(s.index, s.id, s.result["MessageId"]) for s in result.sent] == [(0, "0", "m-1-0"), (1, "order-7", "m-1-order-7"), (2, "2", "m-1-2")]


def test_equal_ids_never_share_a_call():
    fake = Fake()
    entries = [{"MessageBody": "a", "Id": "1"}, {"MessageBody": "b", "Id": "dup"}, {"MessageBody": "c"}, {"MessageBody": "d", "Id": "dup"}]

    result = SqsPublisher(fake, QUEUE_URL, retry=retry()).publish(entries)

    assert result.ok
    assert [ids_of(call) for _, call in fake.calls] == [["1", "dup", "2"], ["dup"]]


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ({"MessageBody": "x", "Id": "x" * 81}, "Id must be 1 to 80 letters, digits, hyphens or underscores, got '" + "x" * 81 + "'"),
        ({"MessageBody": "x", "Id": 7}, "Id must be 1 to 80 letters, digits, hyphens or underscores, got 7"),
        ({"MessageBody": ""}, "MessageBody must be a non-empty string"),
        ({"Message": "wrong field"}, "MessageBody must be a non-empty string"),
        ({"MessageBody": "x", "MessageAttributes": {"a": "b"}}, "message attribute 'a' must be a dict with a DataType"),
        ("a string", "an entry must be a dict in the SQS SendMessageBatch request shape, got str"),
    ],
)
def test_an_entry_the_call_would_refuse_is_reported_and_not_sent(entry, reason):
    fake = Fake()

    result = SqsPublisher(fake, QUEUE_URL, retry=retry()).publish([{"MessageBody": "ok"}, entry])

    assert failures(result) == {1: ("InvalidEntry", f"InvalidEntry: {reason}", 0)}
    assert fake.sizes() == [1]


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ({"Source": "s", "DetailType": "d"}, "Detail must be non-empty strings"),
        ({"Detail": "{}"}, "Source, DetailType must be non-empty strings"),
        ({"Source": "s", "DetailType": "d", "Detail": "{}", "Resources": "arn"}, "Resources must be a list of strings"),
    ],
)
def test_an_event_without_source_detail_type_or_detail_is_not_sent(entry, reason):
    fake = Fake()

    result = EventBridgePublisher(fake, retry=retry()).publish([entry])

    assert failures(result) == {0: ("InvalidEntry", f"InvalidEntry: {reason}", 0)}
    assert (fake.calls, result.calls, result.rounds) == ([], 0, 0)


def test_nothing_to_publish_makes_no_call():
    result = SqsPublisher(Fake(), QUEUE_URL, retry=retry()).publish([])

    assert result == PublishResult(api="SQS SendMessageBatch", target=QUEUE_URL, sent=(), failed=(), calls=0, rounds=0)
    assert result.ok
    result.raise_for_failures()


def test_raise_for_failures_lists_the_failed_entries():
    fake = Fake(lambda call, entry: ("InvalidParameter", True) if entry["Id"] in ("1", "order-9") else None)

    result = SqsPublisher(fake, QUEUE_URL, retry=retry()).publish([{"MessageBody": "a"}, {"MessageBody": "b"}, {"MessageBody": "c", "Id": "order-9"}])

    with pytest.raises(PublishError) as raised:
        result.raise_for_failures()
    assert str(raised.value) == (
        f"2 of 3 entries not sent by SQS SendMessageBatch to {QUEUE_URL} (1 were): "
        "entries[1] (1): InvalidParameter: injected; entries[2] (order-9): InvalidParameter: injected"
    )
    assert raised.value.result is result


def test_the_error_message_lists_up_to_100_failures():
    failed = tuple(FailedEntry(i, None, "ThrottlingException", "", 3, "ThrottlingException", {}) for i in range(130))
    result = PublishResult(api="EventBridge PutEvents", target="bus", sent=(), failed=failed, calls=39, rounds=3)

    message = str(PublishError(result))

    assert message.startswith("130 of 130 entries not sent by EventBridge PutEvents to bus (0 were): entries[0]: ThrottlingException; entries[1]: ")
    assert message.endswith("entries[99]: ThrottlingException; and 30 more")


def test_backoff_is_full_jitter_below_a_growing_capped_ceiling():
    policy = Retry(base_delay_seconds=0.05, max_delay_seconds=1.0)

    assert [policy.ceiling(n) for n in range(1, 7)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0]
    assert policy.ceiling(10_000) == 1.0
    assert all(0 <= policy.delay(n) <= policy.ceiling(n) for n in range(1, 12) for _ in range(50))
    assert Retry(jitter=lambda: 0.0).delay(3) == 0.0


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: SqsPublisher(Fake(), QUEUE_URL, max_message_bytes=MIB + 1), "max_message_bytes must be 1024 to 1048576 bytes, got 1048577"),
        (lambda: SnsPublisher(Fake(), TOPIC_ARN, max_message_bytes=512), "max_message_bytes must be 1024 to 1048576 bytes, got 512"),
        (lambda: EventBridgePublisher(Fake(), max_request_bytes=2 * MIB), "max_request_bytes must be 1 to 1048576 bytes, got 2097152"),
        (lambda: KinesisPublisher(Fake(), stream_name="s", max_record_bytes=11 * MIB), "max_record_bytes must be 1 to 10485760 bytes, got 11534336"),
        (lambda: KinesisPublisher(Fake()), "give stream_name or stream_arn"),
        (lambda: DynamoDbPublisher(Fake(), "t", key_attributes=("a", "b", "c")), "key_attributes must name the partition key and, if any, the sort key"),
        (lambda: Retry(max_attempts=0), "max_attempts must be at least 1, got 0"),
    ],
)
def test_fails_when_a_setting_is_outside_what_the_api_allows(make, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make()


def test_fifo_follows_the_target_name_unless_told():
    assert SqsPublisher(Fake(), FIFO_QUEUE_URL).fifo and not SqsPublisher(Fake(), QUEUE_URL).fifo
    assert SnsPublisher(Fake(), FIFO_TOPIC_ARN).fifo and not SnsPublisher(Fake(), FIFO_TOPIC_ARN, fifo=False).fifo


# --- the property: whatever fails, every entry is sent once or reported, and no call breaks a limit ---------------------

LIMIT = 4096
GROUPS = ["g0", "g1", "g2"]
ENTRY_VERDICTS = [None, None, None, ("InternalError", False), ("InvalidParameter", True)]
CALL_ERRORS = [None] * 6 + [client_error("Throttled", "slow"), client_error("InternalError", "oops", status=500), client_error("AuthorizationError", "no")]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    fifo=st.booleans(),
    shapes=st.lists(st.tuples(st.integers(1, 5000), st.sampled_from(GROUPS), st.sampled_from([None, None, "x", "y"])), max_size=40),
    max_attempts=st.integers(1, 4),
    data=st.data(),
)
def test_every_entry_is_sent_once_or_reported_and_no_call_breaks_a_limit(fifo, shapes, max_attempts, data):
    entries = [
        {"Message": f"{i:05d}" + "m" * (length - 5 if length > 5 else 0), "MessageGroupId": group, **({"Id": given_id} if given_id else {})}
        for i, (length, group, given_id) in enumerate(shapes)
    ]
    position = {id(entry): i for i, entry in enumerate(entries)}

    def index_of(wire):
        return int(wire["Message"][:5])

    fake = Fake(
        lambda call, entry: data.draw(st.sampled_from(ENTRY_VERDICTS)),
        raises=lambda call: data.draw(st.sampled_from(CALL_ERRORS)),
    )
    publisher = SnsPublisher(fake, TOPIC_ARN, fifo=fifo, max_message_bytes=LIMIT, retry=Retry(max_attempts=max_attempts, sleep=lambda s: None))

    result = publisher.publish(entries)

    sent, failed = [s.index for s in result.sent], [f.index for f in result.failed]
    assert sorted(sent + failed) == list(range(len(entries)))  # each entry exactly once in the result
    accepted = Counter(index_of(e) for e in fake.accepted)
    assert accepted == Counter(sent)  # accepted once if sent, never if reported
    tries = Counter(index_of(e) for _, call in fake.calls for e in call)
    assert all(tries[s.index] == s.attempts <= max_attempts for s in result.sent)
    assert all(tries[f.index] == f.attempts <= max_attempts for f in result.failed)
    assert result.calls == len(fake.calls)
    for _, call in fake.calls:
        assert 1 <= len(call) <= 10
        assert sum(len(e["Message"].encode()) for e in call) <= LIMIT
        assert len({e["Id"] for e in call}) == len(call)
        if fifo:
            assert len({e["MessageGroupId"] for e in call}) == len(call)
    for f in result.failed:
        if f.code == "EntryTooLarge":
            assert len(entries[f.index]["Message"]) > LIMIT and tries[f.index] == 0
    if fifo:
        by_group = defaultdict(list)
        for e in fake.accepted:
            by_group[e["MessageGroupId"]].append(index_of(e))
        for group in GROUPS:
            indexes = [i for i, (_, g, _) in enumerate(shapes) if g == group]
            # in input order, and nothing after an entry of the group that was not sent
            assert by_group[group] == indexes[: len(by_group[group])]
    assert all(position[id(f.entry)] == f.index for f in result.failed)
