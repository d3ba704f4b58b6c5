"""CaseSpotify's experiment: erase one listener of 50 by deleting their key; their 200 rows stop opening, no other
row changes; KMS is called about once per user, not once per record. Figures printed (run with ``-s``)."""

from __future__ import annotations

import os

import pytest
from moto import mock_aws

from experiments.case_spotify import key_costs, one_time_costs, run_shredding
from tests.experiments.figures import figures

USERS, EVENTS_PER_USER = 50, 200
ENVIRONMENT = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_CONFIG_FILE": "/nonexistent/aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_NAMESPACE": "CaseSpotify",
    # The figures are printed; the handlers' metric and log lines would bury them.
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "ERROR",
}


@pytest.fixture(scope="module")
def shredding():
    saved = dict(os.environ)
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KMS", "AWS_ENDPOINT_URL_DYNAMODB"):
        os.environ.pop(name, None)
    os.environ.update(ENVIRONMENT)
    try:
        with mock_aws():
            yield run_shredding(USERS, EVENTS_PER_USER)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_every_row_of_the_erased_user_fails_and_every_other_row_opens_to_what_was_sent(shredding):
    r = shredding
    rows = sum(len(v) for t, v in r.rows.items() if not t.endswith("_quarantine"))
    opened = r.victim_failures["victim's row opened"]
    with figures("case-spotify"):
        print(f"\nCaseSpotify crypto-shredding, measured on this machine (moto KMS and DynamoDB), {r.users} users x {EVENTS_PER_USER} events:")
        print(f"  rows written: {rows} in {r.invocations} transformation invocations ({', '.join(f'{t} {len(v)}' for t, v in sorted(r.rows.items()))})")
        print(f"  erased {r.victim}: {r.victim_failures['key erased']} of its {r.victim_rows} rows fail (key erased), {opened} open")
        print(f"  other users: {r.others_matching} of {r.others_rows} rows open to the values sent")
        print(f"  sealed values moved to another row or column: {r.swapped_rejected} of {r.swapped_tried} fail authentication")
        print(f"  rows naming {r.victim} in the clear: {r.victim_in_clear}")
    assert rows == USERS * EVENTS_PER_USER and r.quarantined == 0
    assert r.victim_rows == EVENTS_PER_USER
    assert r.victim_failures["key erased"] == r.victim_rows
    assert r.victim_failures["victim's row opened"] == 0 and r.victim_failures["authentication failed"] == 0
    assert r.victim_failures["other user's key erased"] == 0
    assert r.others_matching == r.others_rows == (USERS - 1) * EVENTS_PER_USER
    assert r.swapped_rejected == r.swapped_tried > 0
    assert r.victim_in_clear == 0


def test_kms_is_called_once_per_user_and_family_with_the_cache_not_once_per_record(shredding):
    r = shredding
    with figures("case-spotify"):
        print("  KMS requests to write the history:")
        print(f"    key cache kept between invocations (as deployed, 5 min): {r.write_calls_total} ({dict(r.write_calls)})")
        print(f"    key cache emptied at every invocation: {r.write_calls_cold_cache}")
        print(f"    one per record: {r.events}")
        print(f"  KMS requests of a reader opening every row with a cold cache: {sum(r.reader_calls.values())} ({dict(r.reader_calls)})")
    # A key made per user (by the first family to see them); the other family unwraps it once.
    assert r.write_calls["GenerateDataKey"] == r.users
    assert r.write_calls["Decrypt"] <= r.users
    assert r.write_calls_total < r.write_calls_cold_cache < r.events
    assert r.reader_calls == {"Decrypt": r.users - 1}


def test_per_user_data_keys_cost_a_fraction_of_per_user_kms_keys_and_per_table_keys_cannot_shred():
    users = 1_000_000
    costs = key_costs(users)
    with figures("case-spotify"):
        print(f"\nCaseSpotify, keys for {users:,} listeners a month (messaging_constructs/costs/prices.toml):")
        for cost in costs:
            parts = ", ".join(f"{name} ${usd:,.2f}" for name, usd in cost.usd.items())
            print(f"  {cost.design}: ${cost.total:,.2f} ({parts}); can erase one user: {'yes' if cost.can_shred_one_user else 'no'}")
        for what, usd in one_time_costs(users).items():
            print(f"  once: {what}: ${usd:,.6g}")
    per_user_kms, cached, hour, uncached, per_table = costs
    assert per_user_kms.total > 100 * cached.total
    assert hour.total < cached.total < uncached.total
    assert per_table.total < hour.total and not per_table.can_shred_one_user
    assert all(c.can_shred_one_user for c in costs[:4])


def test_sealing_a_row_costs_cpu_and_bytes_printed_not_asserted_in_time():
    from experiments.case_spotify import history, sealing_cost

    cost = sealing_cost(history(20, 100))
    with figures("case-spotify"):
        print(
            f"\nCaseSpotify sealing, this machine: read {cost['read_us']:.0f} µs per record, read and seal "
            f"{cost['read_and_seal_us']:.0f} µs; event {cost['event_bytes']:.0f} bytes, sealed row {cost['row_bytes']:.0f} bytes"
        )
    # Five AES-GCM values per row, each nonce + tag + base64: the row is larger than the event it came from.
    assert cost["row_bytes"] > cost["event_bytes"]
