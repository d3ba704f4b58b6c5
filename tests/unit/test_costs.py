"""The cost model (messaging_constructs.costs): the price table, the idle figure and the hops of a path, on small templates."""

from __future__ import annotations

import math

import pytest

from messaging_constructs.costs import (
    HOURS_PER_MONTH,
    BusEvents,
    Function,
    KmsCalls,
    Path,
    PriceTable,
    Publish,
    Queue,
    StreamRecords,
    TableWrites,
    Traffic,
    idle_cost,
    total,
    unpriced,
)

PRICES = PriceTable.load()


def price(key: str) -> float:
    return PRICES[key].usd


def template(**resources: dict) -> dict:
    return {"Resources": resources}


def res(resource_type: str, **properties) -> dict:
    return {"Type": resource_type, "Properties": properties}


def test_every_price_names_its_source_page_and_the_day_it_was_checked():
    assert PRICES.region == "us-east-1" and PRICES.currency == "USD"
    for entry in PRICES.prices.values():
        assert entry.usd > 0 and entry.unit and entry.source.startswith("https://aws.amazon.com/")
    assert PRICES.oldest.year >= 2026


def test_a_missing_price_or_an_undated_one_is_a_clear_error(tmp_path):
    with pytest.raises(KeyError, match="no price 'sqs.nothing'"):
        PRICES["sqs.nothing"]
    table = tmp_path / "prices.toml"
    table.write_text('region = "us-east-1"\ncurrency = "USD"\n[prices."x.y"]\nusd = 1.0\nunit = "thing"\nsource = "https://example.com"\n')
    with pytest.raises(ValueError, match=r"price 'x.y' lacks \['read'\]"):
        PriceTable.load(table)


def test_idle_prices_what_is_billed_by_the_hour_or_month_from_the_template():
    lines = idle_cost(
        template(
            Key=res("AWS::KMS::Key"),
            Single=res("AWS::CloudWatch::Alarm", MetricName="Errors", Namespace="AWS/Lambda", Period=60),
            Fast=res("AWS::CloudWatch::Alarm", MetricName="Errors", Namespace="AWS/Lambda", Period=10),
            Math=res(
                "AWS::CloudWatch::Alarm",
                Metrics=[{"Id": "e", "Expression": "a + b"}, {"Id": "a", "MetricStat": {"Period": 60}}, {"Id": "b", "MetricStat": {"Period": 60}}],
            ),
            Insights=res("AWS::CloudWatch::Alarm", Metrics=[{"Id": "q", "Expression": "SELECT MAX(x) FROM SCHEMA(y)", "Period": 60}]),
            Board=res("AWS::CloudWatch::Dashboard"),
            Sqs=res("AWS::EC2::VPCEndpoint", VpcEndpointType="Interface", SubnetIds=["a", "b", "c"]),
            S3=res("AWS::EC2::VPCEndpoint", VpcEndpointType="Gateway"),
            Pair=res("AWS::AmazonMQ::Broker", EngineType="ACTIVEMQ", HostInstanceType="mq.m5.large", DeploymentMode="ACTIVE_STANDBY_MULTI_AZ"),
            Kafka=res(
                "AWS::MSK::Cluster",
                NumberOfBrokerNodes=3,
                BrokerNodeGroupInfo={"InstanceType": "kafka.t3.small", "StorageInfo": {"EBSStorageInfo": {"VolumeSize": 50}}},
            ),
            OnDemand=res("AWS::Kinesis::Stream", StreamModeDetails={"StreamMode": "ON_DEMAND"}),
            Shards=res("AWS::Kinesis::Stream", StreamModeDetails={"StreamMode": "PROVISIONED"}, ShardCount=4, RetentionPeriodHours=168),
            Day=res("AWS::Kinesis::Stream", ShardCount=2),
            Provisioned=res(
                "AWS::DynamoDB::Table",
                BillingMode="PROVISIONED",
                ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 2},
                GlobalSecondaryIndexes=[{"ProvisionedThroughput": {"ReadCapacityUnits": 1, "WriteCapacityUnits": 1}}],
            ),
            OnDemandTable=res("AWS::DynamoDB::Table", BillingMode="PAY_PER_REQUEST"),
            Acl=res("AWS::WAFv2::WebACL", Rules=[{}, {}]),
            Secret=res("AWS::SecretsManager::Secret"),
            Function=res("AWS::Lambda::Function", MemorySize=256),
        ),
        PRICES,
    )
    by_item = {line.item: line.usd for line in lines}
    month = HOURS_PER_MONTH
    assert by_item["KMS customer-managed keys"] == price("kms.key")
    # single + 2 MetricStats of the expression + the Insights query; the 10-second alarm at the high-resolution rate
    assert by_item["alarm metrics"] == pytest.approx(4 * price("cloudwatch.alarm_metric"))
    assert by_item["high-resolution alarm metrics"] == price("cloudwatch.alarm_metric_high_resolution")
    assert by_item["interface endpoint-AZ hours"] == pytest.approx(3 * month * 0.01)
    assert by_item["Pair: 2 × activemq mq.m5.large broker hours"] == pytest.approx(2 * month * price("mq.activemq.mq.m5.large"))
    assert by_item["Kafka: 3 × kafka.t3.small broker hours"] == pytest.approx(3 * month * price("msk.kafka.t3.small"))
    assert by_item["Kafka: 3 × 50 GB broker storage"] == pytest.approx(150 * price("msk.storage"))
    assert by_item["OnDemand: on-demand stream hours"] == pytest.approx(month * price("kinesis.on_demand_stream"))
    assert by_item["Shards: 4 shard hours"] == pytest.approx(4 * month * price("kinesis.shard"))
    assert by_item["Shards: 4 shards' retention past 24 hours"] == pytest.approx(4 * month * price("kinesis.extended_retention_shard"))
    assert "Day: 2 shards' retention past 24 hours" not in by_item  # the default 24 hours
    assert by_item["Provisioned: read capacity unit hours"] == pytest.approx(6 * month * price("dynamodb.read_capacity_unit"))
    assert by_item["Provisioned: write capacity unit hours"] == pytest.approx(3 * month * price("dynamodb.write_capacity_unit"))
    assert not any(item.startswith("OnDemandTable") for item in by_item)
    assert by_item["WAF rules"] == 2 * price("waf.rule") and by_item["Secrets Manager secrets"] == price("secretsmanager.secret")
    assert total(lines) == pytest.approx(sum(by_item.values()))


def test_idle_names_what_it_leaves_out():
    t = template(
        Bucket=res("AWS::S3::Bucket"),
        Table=res("AWS::DynamoDB::Table", BillingMode="PAY_PER_REQUEST"),
        Mapping=res("AWS::Lambda::EventSourceMapping", ProvisionedPollerConfig={"MinimumPollers": 1}),
    )
    assert idle_cost(t, PRICES) == []
    left_out = unpriced(t, PRICES)
    assert any("S3 storage" in what for what in left_out) and any("event poller units" in what for what in left_out)


def _queue_template(*, fifo: bool = False, reuse: int | None = None, batch: int = 10, key: object = None) -> dict:
    queue = {"KmsMasterKeyId": key if key is not None else {"Fn::GetAtt": ["Key1234ABCD", "Arn"]}}
    if fifo:
        queue["FifoQueue"] = True
    if reuse:
        queue["KmsDataKeyReusePeriodSeconds"] = reuse
    return template(
        Work12345678=res("AWS::SQS::Queue", **queue),
        Mapping=res(
            "AWS::Lambda::EventSourceMapping", EventSourceArn={"Fn::GetAtt": ["Work12345678", "Arn"]}, FunctionName={"Ref": "Consumer12345678"}, BatchSize=batch
        ),
        Consumer12345678=res("AWS::Lambda::Function", MemorySize=256, Architectures=["arm64"], TracingConfig={"Mode": "Active"}),
        Orders12345678=res("AWS::SNS::Topic", KmsMasterKeyId="k"),
        OrdersFifo12345678=res("AWS::SNS::Topic", FifoTopic=True),
        Sub=res("AWS::SNS::Subscription", TopicArn={"Ref": "OrdersFifo12345678"}, Endpoint={"Fn::GetAtt": ["Work12345678", "Arn"]}),
        Table12345678=res("AWS::DynamoDB::Table", BillingMode="PAY_PER_REQUEST"),
        Fixed12345678=res("AWS::DynamoDB::Table", BillingMode="PROVISIONED"),
    )


def _one(lines, prefix):
    found = [line for line in lines if line.item.startswith(prefix)]
    assert len(found) == 1, (prefix, [line.item for line in lines])
    return found[0]


def test_a_queue_costs_its_send_and_a_receive_and_delete_per_batch_of_the_mapping_that_reads_it():
    traffic = Traffic(rate=100, message_bytes=1024)
    lines = Path("p", [Queue("Work")]).cost(_queue_template(batch=10), PRICES, traffic)
    requests = _one(lines, "SQS requests")
    assert requests.quantity == pytest.approx(1_000_000 * (1 + 2 / 10)) and requests.price == "sqs.request"
    fifo = _one(Path("p", [Queue("Work", send_batch=10)]).cost(_queue_template(fifo=True), PRICES, traffic), "SQS requests")
    assert fifo.quantity == pytest.approx(1_000_000 * (1 / 10 + 2 / 10)) and fifo.price == "sqs.fifo_request"
    # 64 KB chunks: a batch of ten 10 KB messages is two requests.
    big = _one(Path("p", [Queue("Work", send_batch=10)]).cost(_queue_template(batch=10), PRICES, Traffic(message_bytes=10 * 1024)), "SQS requests")
    assert big.quantity == pytest.approx(1_000_000 * (2 / 10 + 2 * 2 / 10))


def test_sqs_data_keys_follow_the_reuse_period_and_the_rate_not_the_messages():
    def kms(reuse, rate):
        return _one(Path("p", [Queue("Work")]).cost(_queue_template(reuse=reuse), PRICES, Traffic(rate=rate)), "KMS").quantity

    # A million messages at 100 a second take 10,000 s: 34 periods of 300 s, 3 calls each (2 by the sender, 1 by the reader).
    assert kms(None, 100) == pytest.approx(3 * math.ceil(10_000 / 300))
    assert kms(60, 100) == pytest.approx(3 * math.ceil(10_000 / 60))
    assert kms(60, 1) > kms(300, 1) > kms(86_400, 1)
    aws_managed = Path("p", [Queue("Work")]).cost(_queue_template(key="alias/aws/sqs"), PRICES, Traffic())
    assert not [line for line in aws_managed if line.price == "kms.request"]


def test_a_function_bills_started_milliseconds_at_its_memory_and_scales_cpu_to_its_share_of_a_vcpu():
    lines = Path("p", [Function("Consumer", cpu_us_per_record=100, wait_ms=5, records=10)]).cost(_queue_template(), PRICES, Traffic(rate=100))
    invocations = _one(lines, "Lambda invocations")
    assert invocations.quantity == pytest.approx(100_000)
    duration = _one(lines, "Lambda GB-seconds")
    # 256 MB is 256/1769 of a vCPU: 0.1 ms of CPU takes 0.69 ms; 5 + 10 x 0.69 = 11.9, billed 12 ms.
    assert "12 ms at 256 MB, arm64" in duration.item and duration.price == "lambda.gb_second_arm64"
    assert duration.quantity == pytest.approx(100_000 * 0.012 * 0.25)
    # 10 invocations a second with active tracing: 1 + 5 % of 9 traced a second, per 100 messages.
    assert _one(lines, "X-Ray").quantity == pytest.approx(1_000_000 * 1.45 / 100)
    logs = _one(lines, "CloudWatch Logs")
    assert logs.quantity == pytest.approx(100_000 * (420 + 600) / 1e9)


def test_a_function_takes_the_batch_of_the_queue_it_reads():
    queue = Queue("Work")
    lines = Path("p", [queue, Function("Consumer", cpu_us_per_record=10, batch_of=queue)]).cost(_queue_template(batch=50), PRICES, Traffic())
    assert _one(lines, "Lambda invocations").quantity == pytest.approx(1_000_000 / 50)


def test_topics_standard_fifo_and_encrypted():
    lines = Path("p", [Publish("Orders", batch=10), Publish("OrdersFifo", batch=10)]).cost(_queue_template(), PRICES, Traffic(rate=100))
    assert _one(lines, "SNS publish, Orders").quantity == pytest.approx(100_000)
    assert _one(lines, "KMS, Orders").quantity == pytest.approx(2 * math.ceil(10_000 / 300))
    assert _one(lines, "SNS FIFO publish").quantity == pytest.approx(100_000)
    assert _one(lines, "SNS FIFO deliveries").quantity == pytest.approx(1_000_000)  # one subscription


def test_tables_bill_request_units_on_demand_only():
    lines = Path("p", [TableWrites("Table", write_units=2, read_units=1), TableWrites("Fixed", write_units=5)]).cost(_queue_template(), PRICES, Traffic())
    assert [(line.price, line.quantity) for line in lines] == [
        ("dynamodb.write_request_unit", 2_000_000),
        ("dynamodb.read_request_unit", 1_000_000),
    ]


def test_a_stream_on_demand_bills_bytes_in_and_out_per_reader_in_the_template():
    t = template(
        Events12345678=res("AWS::Kinesis::Stream", StreamModeDetails={"StreamMode": "ON_DEMAND"}),
        A=res("AWS::Lambda::EventSourceMapping", EventSourceArn={"Fn::GetAtt": ["Events12345678", "Arn"]}),
        F=res("AWS::KinesisFirehose::DeliveryStream", KinesisStreamSourceConfiguration={"KinesisStreamARN": {"Fn::GetAtt": ["Events12345678", "Arn"]}}),
    )
    lines = Path("p", [StreamRecords("Events")]).cost(t, PRICES, Traffic(message_bytes=1000))
    assert _one(lines, "Kinesis on-demand GB in").quantity == pytest.approx(1.0)
    out = _one(lines, "Kinesis on-demand GB out")
    assert "2 readers" in out.item and out.quantity == pytest.approx(2.0)


def test_a_name_that_matches_nothing_or_two_resources_is_an_error():
    t = template(Bus1A2B3C4D=res("AWS::Events::EventBus"), BusQueue12345678=res("AWS::SQS::Queue"), Bus12345678=res("AWS::SQS::Queue"))
    assert _one(Path("p", [BusEvents("Bus")]).cost(t, PRICES, Traffic()), "EventBridge events").quantity == 1_000_000
    with pytest.raises(LookupError, match="0 resources of type AWS::Events::EventBus named 'Nope'"):
        Path("p", [BusEvents("Nope")]).cost(t, PRICES, Traffic())
    with pytest.raises(LookupError, match="2 resources of type AWS::SQS::Queue named 'Bus'"):
        Path("p", [Queue("Bus", records=1)]).cost(t, PRICES, Traffic())


def test_kms_calls_of_the_message_itself_are_per_message():
    lines = Path("p", [KmsCalls("a signature made and checked", 2)]).cost(template(), PRICES, Traffic())
    assert lines[0].usd == pytest.approx(2_000_000 * price("kms.request"))
