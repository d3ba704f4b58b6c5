"""CaseSpotify's handlers against moto: the transformation seals each row under its user's key and quarantines what is
not an event of its family; the erasure deletes the key once, records it without the user, and repeats nothing."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import boto3
import pytest

from messaging_runtime import listening
from messaging_runtime.crypto_shredding import InvalidTag, KeyCache, KeyErased, UserKeys, open_value, seal

KEYS, ERASURES, DATABASE = "user-keys", "erasures", "casespotify_lake"
TRACK = "spotify:track:4uLU6hMCjMI75M1A2tKUQC"


@pytest.fixture(scope="module")
def aws(moto_module):
    from experiments.case_spotify import create_tables

    key_arn = boto3.client("kms").create_key()["KeyMetadata"]["Arn"]
    create_tables(boto3.client("dynamodb"), KEYS, ERASURES)
    for name, value in {"LAKE_DATABASE": DATABASE, "USER_KEYS_TABLE": KEYS, "USER_KEYS_KMS_KEY": key_arn, "ERASURES_TABLE": ERASURES}.items():
        moto_module.setenv(name, value)
    return key_arn


@pytest.fixture(scope="module")
def playback(aws, handler_env, load_handler):
    handler_env.setenv("EVENT_FAMILY", "playback")
    return load_handler("case_spotify_transform")


@pytest.fixture(scope="module")
def erasure(aws, load_handler):
    return load_handler("case_spotify_erasure")


def _event(user: str = "u-ada", **overrides: Any) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "event_id": str(uuid.uuid4()),
        "event_type": "play",
        "event_time": "2026-12-01T10:00:00Z",
        "user_id": user,
        "device": "ios",
        "country": "SE",
        "track_id": TRACK,
        "ms_played": 215_000,
        **overrides,
    }


def _buffer(*payloads: bytes | str) -> dict[str, Any]:
    records = []
    for number, payload in enumerate(payloads):
        data = payload if isinstance(payload, str) else base64.b64encode(payload).decode()
        records.append(
            {
                "recordId": f"r{number}",
                "approximateArrivalTimestamp": 1_764_583_201_000,
                "data": data,
                "kinesisRecordMetadata": {"shardId": "s-0", "sequenceNumber": str(number)},
            }
        )
    return {"invocationId": "i", "records": records}


def _rows(answer: dict[str, Any]) -> list[tuple[str, str, dict[str, Any] | None]]:
    return [
        (
            a["result"],
            a.get("metadata", {}).get("otfMetadata", {}).get("destinationTableName"),
            json.loads(base64.b64decode(a["data"])) if a["result"] == "Ok" else None,
        )
        for a in answer["records"]
    ]


def _reader(key_arn: str) -> UserKeys:
    return UserKeys(dynamodb=boto3.client("dynamodb"), kms=boto3.client("kms"), table_name=KEYS, kms_key_id=key_arn, cache=KeyCache(ttl_seconds=0))


def test_an_event_becomes_a_row_of_its_table_with_only_its_pseudonymous_key_id_in_the_clear(playback, aws, lambda_context):
    event = _event("u-grace", event_type="skip", ms_played=4_000)
    ((result, table, row),) = _rows(playback.lambda_handler(_buffer(json.dumps(event).encode()), lambda_context))
    assert (result, table) == ("Ok", "skips")
    assert set(row) == {name for name, _ in listening.columns("skips")}
    assert "u-grace" not in json.dumps(row) and TRACK not in json.dumps(row)
    assert row["event_id"] == event["event_id"] and row["event_date"] == "2026-12-01"
    opened = listening.open_row("skips", row, _reader(aws).for_key)
    assert opened == {"user_id": "u-grace", "track_id": TRACK, "ms_played": "4000", "device": "ios", "country": "SE"}


def test_one_key_per_user_made_once_and_reused(playback, lambda_context):
    before = playback.keys.keys_created
    answer = playback.lambda_handler(_buffer(*(json.dumps(_event("u-lin")).encode() for _ in range(3))), lambda_context)
    key_ids = {row["key_id"] for _, _, row in _rows(answer)}
    assert len(key_ids) == 1 and playback.keys.keys_created == before + 1


def test_what_is_not_an_event_of_the_family_is_quarantined_its_payload_sealed_under_the_user_it_names(playback, aws, lambda_context):
    like = json.dumps(_event("u-mae", event_type="like", ms_played=None)).encode()
    no_track = json.dumps({k: v for k, v in _event("u-mae").items() if k != "track_id"}).encode()
    answer = playback.lambda_handler(_buffer(like, no_track, b"not json", "%%% not base64"), lambda_context)
    rows = _rows(answer)
    assert [(result, table) for result, table, _ in rows] == [("Ok", "playback_quarantine")] * 4
    reasons = [row["reason"] for _, _, row in rows]
    assert "does not belong on the playback stream" in reasons[0] and "track_id" in reasons[1]
    sealed, unsealed = rows[0][2], rows[2][2]
    assert sealed["key_id"] and "u-mae" not in sealed["payload"]
    aead = _reader(aws).for_key(sealed["key_id"])
    assert json.loads(open_value(aead, sealed["key_id"], "payload", sealed["record_id"], sealed["payload"]))["user_id"] == "u-mae"
    assert unsealed["key_id"] is None and unsealed["payload"] == "not json"


def test_a_second_copy_in_the_buffer_is_dropped(playback, lambda_context):
    event = json.dumps(_event("u-ada")).encode()
    assert [r for r, _, _ in _rows(playback.lambda_handler(_buffer(event, event), lambda_context))] == ["Ok", "Dropped"]


@pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")
def test_a_buffer_that_is_not_a_transformation_event_fails_the_invocation(playback, lambda_context):
    with pytest.raises(ValueError, match="Firehose transformation event"):
        playback.lambda_handler({"records": [{"data": "e30="}]}, lambda_context)


def test_a_user_item_left_pointing_at_an_erased_key_gets_a_new_key(aws):
    dynamodb = boto3.client("dynamodb")
    dynamodb.put_item(TableName=KEYS, Item={"pk": {"S": "user#u-restored"}, "key_id": {"S": "gone"}})
    keys = _reader(aws)
    key_id, _ = keys.for_user("u-restored")
    assert key_id != "gone" and dynamodb.get_item(TableName=KEYS, Key={"pk": {"S": "user#u-restored"}})["Item"]["key_id"]["S"] == key_id


def test_two_writers_making_the_same_users_key_agree_on_one(aws):
    first, second = _reader(aws), _reader(aws)
    key_id, _ = first.for_user("u-race")
    # The second lost the race: its conditional put fails and it takes the key the first made.
    assert second._create("u-race", replacing=None)[0] == key_id and second.keys_created == 0


def test_a_sealed_value_opens_only_for_its_key_field_and_row():
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    mine, theirs = AESGCM(AESGCM.generate_key(256)), AESGCM(AESGCM.generate_key(256))
    token = seal(mine, "k1", "track_id", "e1", TRACK)
    assert open_value(mine, "k1", "track_id", "e1", token) == TRACK
    for aead, key_id, field, row in (
        (theirs, "k1", "track_id", "e1"),
        (mine, "k2", "track_id", "e1"),
        (mine, "k1", "device", "e1"),
        (mine, "k1", "track_id", "e2"),
    ):
        with pytest.raises(InvalidTag):
            open_value(aead, key_id, field, row, token)


def test_the_key_cache_forgets_after_its_period_and_past_its_size():
    now = [0.0]
    cache = KeyCache(ttl_seconds=10, max_keys=2, clock=lambda: now[0])
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (None, 2, 3)
    now[0] = 10.0
    assert cache.get("b") is None


def _request(request_id: str, user: str) -> dict[str, Any]:
    body = {"schema_version": 1, "request_id": request_id, "user_id": user, "requested_at": "2026-12-01T09:00:00Z"}
    return {
        "messageId": request_id,
        "receiptHandle": "h",
        "body": json.dumps(body),
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:erasure-requests",
        "awsRegion": "us-east-1",
    }


def test_erasure_deletes_the_key_records_it_without_the_user_and_repeats_nothing(playback, erasure, aws, lambda_context):
    ((_, _, row),) = _rows(playback.lambda_handler(_buffer(json.dumps(_event("u-zoe")).encode()), lambda_context))
    answer = erasure.lambda_handler({"Records": [_request("er-1", "u-zoe"), _request("er-1", "u-zoe"), _request("er-2", "u-nobody")]}, lambda_context)
    assert answer == {"batchItemFailures": []}
    with pytest.raises(KeyErased):
        listening.open_row("plays", row, _reader(aws).for_key)
    records = boto3.client("dynamodb").scan(TableName=ERASURES)["Items"]
    outcomes = {r["request_id"]["S"]: (r["outcome"]["S"], r.get("key_id", {}).get("S")) for r in records}
    assert outcomes == {"er-1": ("erased", row["key_id"]), "er-2": ("no key", None)}
    assert "u-zoe" not in json.dumps(records) and all(int(r["expires_at"]["N"]) > 0 for r in records)


def test_erasure_reports_a_request_that_is_not_one(erasure, lambda_context):
    bad = _request("er-3", "not-a-user")
    assert erasure.lambda_handler({"Records": [bad]}, lambda_context) == {"batchItemFailures": [{"itemIdentifier": "er-3"}]}
