"""CaseSpotify: the stack's wiring, on its templates synthesized once per module and profile."""

from __future__ import annotations

import pytest
from aws_cdk import App

from messaging_constructs import Profile
from messaging_runtime import listening
from stacks.case_spotify import ERASURE_DELAY, ERASURE_RECORD_DAYS, KEY_CACHE, CaseSpotifyStack
from tests.stacks.helpers import function, props

STACK = "CaseSpotify"


@pytest.fixture(scope="module", params=["sandbox", "production"])
def template(request):
    app = App(context={"profile": request.param})
    stack = CaseSpotifyStack(app, STACK, profile=Profile.of(app))
    return app.synth().get_stack_by_name(stack.stack_name).template


def _transforms(template: dict) -> dict[str, tuple[str, dict]]:
    return {
        f["Environment"]["Variables"]["EVENT_FAMILY"]: (k, f)
        for k, f in props(template, "AWS::Lambda::Function").items()
        if f.get("Environment", {}).get("Variables", {}).get("POWERTOOLS_SERVICE_NAME") == "case_spotify_transform"
    }


def test_one_stream_per_family_each_encrypted_with_the_stacks_key(template):
    streams = props(template, "AWS::Kinesis::Stream")
    assert len(streams) == 2
    assert all(s["StreamEncryption"]["EncryptionType"] == "KMS" for s in streams.values())


def test_one_iceberg_table_per_event_type_and_a_quarantine_per_family_with_the_sealed_columns(template):
    tables = {t["Table"]: t for t in props(template, "Custom::IcebergTable").values()}
    assert set(tables) == {"plays", "skips", "likes", "searches", "playback_quarantine", "interaction_quarantine"}
    assert tables["plays"]["Columns"] == [list(c) for c in listening.columns("plays")]
    assert ["user_id", "string"] in tables["searches"]["Columns"] and ["query", "string"] in tables["searches"]["Columns"]
    assert tables["plays"]["Partitions"] == ["event_date"]


def test_each_familys_delivery_writes_only_its_tables_through_its_own_transformation(template):
    transforms = _transforms(template)
    assert set(transforms) == {"playback", "interaction"}
    for delivery in props(template, "AWS::KinesisFirehose::DeliveryStream").values():
        config = delivery["IcebergDestinationConfiguration"]
        tables = [t["DestinationTableName"] for t in config["DestinationTableConfigurationList"]]
        family = "playback" if "plays" in tables else "interaction"
        assert tables == listening.family_tables(family)
        (processor,) = config["ProcessingConfiguration"]["Processors"]
        arn = next(p["ParameterValue"] for p in processor["Parameters"] if p["ParameterName"] == "LambdaArn")
        assert arn == {"Fn::GetAtt": [transforms[family][0], "Arn"]}


def test_the_transformations_know_the_key_table_and_the_key_and_carry_the_crypto_layer(template):
    (keys_table,) = [k for k in props(template, "AWS::DynamoDB::Table") if k.startswith("UserKeys")]
    layers = {k for k, layer in props(template, "AWS::Lambda::LayerVersion").items() if "cryptography" in layer.get("Description", "")}
    for _, fn in _transforms(template).values():
        variables = fn["Environment"]["Variables"]
        assert variables["USER_KEYS_TABLE"] == {"Ref": keys_table}
        assert variables["KEY_CACHE_SECONDS"] == str(int(KEY_CACHE.to_seconds()))
        assert variables["USER_KEYS_KMS_KEY"]["Fn::GetAtt"][1] == "Arn"
        assert {layer["Ref"] for layer in fn["Layers"] if "Ref" in layer} & layers


def test_the_key_table_is_encrypted_with_the_cmk_and_recoverable(template):
    tables = props(template, "AWS::DynamoDB::Table")
    (keys,) = [t for k, t in tables.items() if k.startswith("UserKeys")]
    assert keys["SSESpecification"]["SSEEnabled"] is True and keys["SSESpecification"]["SSEType"] == "KMS"
    assert keys["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    (erasures,) = [t for k, t in tables.items() if k.startswith("Erasures")]
    assert erasures["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert ERASURE_RECORD_DAYS > 35  # longer than PITR and the backup plan keep the key table


def test_erasure_requests_wait_out_the_events_in_flight_and_dead_letter_with_an_alarm(template):
    key, fn = function(template, "case_spotify_erasure")
    queues = props(template, "AWS::SQS::Queue")
    (requests,) = [q for q in queues.values() if q.get("DelaySeconds") == ERASURE_DELAY.to_seconds()]
    assert requests["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][1] == "Arn"
    (mapping,) = [m for m in props(template, "AWS::Lambda::EventSourceMapping").values() if m["FunctionName"] == {"Ref": key}]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    dlq = requests["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
    alarms = props(template, "AWS::CloudWatch::Alarm").values()
    assert any({"Name": "QueueName", "Value": {"Fn::GetAtt": [dlq, "QueueName"]}} in a.get("Dimensions", []) for a in alarms)


def test_both_families_contracts_are_registered(template):
    assert {s["Name"] for s in props(template, "AWS::Glue::Schema").values()} == {"PlaybackEvent", "InteractionEvent"}


def test_two_deliveries_into_one_lake_expire_its_error_prefix_with_one_rule(template):
    rules = [
        rule
        for bucket in props(template, "AWS::S3::Bucket").values()
        for rule in bucket.get("LifecycleConfiguration", {}).get("Rules", [])
        if rule.get("Prefix") == "delivery-errors/"
    ]
    assert len(rules) == 1 and rules[0]["ExpirationInDays"] == 30


def test_fails_when_a_prefix_is_given_two_expiries():
    from aws_cdk import Duration, Stack

    from messaging_constructs import IcebergLake
    from messaging_constructs.profile import SANDBOX

    lake = IcebergLake(Stack(App(), "Lake"), "Lake", database_name="lake", profile=SANDBOX)
    lake.add_expiry("exports/", Duration.days(7))
    lake.add_expiry("exports/", Duration.days(7))
    with pytest.raises(ValueError, match="already expires after 7 days"):
        lake.add_expiry("exports/", Duration.days(8))
