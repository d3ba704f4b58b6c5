"""AWS API calls the orders publisher makes per 1,000 events, against the batching floor.

The publisher runs under moto with the custom bus. Every call its EventBridge
client sends is counted through botocore's ``before-call`` event. The floor
is one PutEvents call per 10 entries: 100 calls for 1,000 events.

The second scenario makes EventBridge fail each entry on its first attempt
with a probability of 10% (InternalFailure, which is retryable). Only the
failed entries are sent again, regrouped into full calls after one backoff
pause, so the extra cost is about ceil(failed entries / 10) calls. For
comparison, retrying each call's failed entries on their own (the simpler
design) would cost one extra call per call with a failed entry:
1 - 0.9**10 = 65% of a call per batch of 10. The failure is injected in front of the client (the entries
that pass go to moto for real); the calls are counted at the same place, so a
call whose entries all fail still counts. Several seeds are run and the
median, lowest and highest are shown.

Run from the repository root: ``python benchmarks/eventbridge_api_calls.py``.
"""

import contextlib
import os
import random
import statistics
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _lambda_env import Context, load_handler, prepare_environment  # noqa: E402

EVENTS = 1_000
FLOOR = -(-EVENTS // 10)
FAILURE_RATE = 0.10
SEEDS = range(11)

prepare_environment(
    POWERTOOLS_SERVICE_NAME="exercise02-benchmark",
    POWERTOOLS_METRICS_NAMESPACE="Exercise02Benchmark",
    PUT_RETRY_BASE_DELAY_SECONDS="0.2",
)
os.environ.pop("AWS_ENDPOINT_URL_EVENTS", None)


def request(rng):
    events = []
    for index in range(EVENTS):
        items = [{"sku": f"SKU-{rng.randrange(500):04d}", "quantity": rng.randint(1, 12)} for _ in range(rng.randint(1, 5))]
        detail = {
            "version": 2,
            "order_id": f"o-{index:06d}",
            "customer_id": f"c-{rng.randrange(300):05d}",
            "total": round(rng.uniform(1, 2_000), 2),
            "currency": "EUR",
            "items": items,
        }
        events.append({"detail_type": "OrderPlaced" if rng.random() < 0.8 else "OrderCancelled", "detail": detail})
    return {"events": events}


def inject_first_attempt_failures(publisher, rng, rate):
    """Fail each entry's first attempt with probability ``rate``; count the calls the publisher makes."""
    real_put_events = publisher.eventbridge.put_events
    seen = set()
    counts = Counter()

    def put_events(**params):
        counts["PutEvents"] += 1
        entries = params["Entries"]
        verdicts = []
        for entry in entries:
            first_attempt = entry["Detail"] not in seen
            seen.add(entry["Detail"])
            verdicts.append(first_attempt and rng.random() < rate)
        passing = [entry for entry, failed in zip(entries, verdicts, strict=True) if not failed]
        real = iter(real_put_events(Entries=passing)["Entries"] if passing else [])
        results = [{"ErrorCode": "InternalFailure", "ErrorMessage": "injected"} if failed else next(real) for failed in verdicts]
        counts["entries failed"] += sum(verdicts)
        return {"FailedEntryCount": sum(verdicts), "Entries": results}

    publisher.eventbridge.put_events = put_events
    return counts


def run(number, rng, failure_rate):
    import boto3
    from moto import mock_aws

    with mock_aws():
        os.environ["BUS_NAME"] = boto3.client("events").create_event_bus(Name="blueprints")["EventBusArn"]
        publisher = load_handler("orders_publisher", f"benchmark_orders_publisher_{number}")
        publisher.sleep = lambda seconds: None  # count calls, not wait for backoff
        botocore_calls = Counter()
        publisher.eventbridge.meta.events.register("before-call", lambda model, **_: botocore_calls.update([model.name]))
        injected = inject_first_attempt_failures(publisher, rng, failure_rate) if failure_rate else None
        result = publisher.lambda_handler(request(rng), Context())
        assert result == {"published": EVENTS}, result
        if injected is None:
            return botocore_calls["PutEvents"], sum(botocore_calls.values()) - botocore_calls["PutEvents"], 0
        other = sum(botocore_calls.values()) - botocore_calls["PutEvents"]
        return injected["PutEvents"], other, injected["entries failed"]


def main():
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        clean = [run(seed, random.Random(seed), 0.0) for seed in SEEDS[:1]]
        failing = [run(100 + seed, random.Random(seed), FAILURE_RATE) for seed in SEEDS]

    print(f"AWS API calls per {EVENTS:,} order events; floor = {FLOOR} PutEvents calls (10 entries per call)")
    header = f"{'scenario':34} {'PutEvents':>10} {'other':>6} {'floor':>6} {'calls/floor':>12} {'extra calls':>12} {'entries failed':>15}"
    print(header)
    print("-" * len(header))
    calls, other, _ = clean[0]
    print(f"{'no failures':34} {calls:>10} {other:>6} {FLOOR:>6} {calls / FLOOR:>12.2f} {calls - FLOOR:>12} {0:>15}")
    put_calls = [calls for calls, _, _ in failing]
    median = statistics.median(put_calls)
    label = "10% fail on 1st attempt (median)"
    failed = statistics.median(entries for _, _, entries in failing)
    print(f"{label:34} {median:>10.0f} {max(o for _, o, _ in failing):>6} {FLOOR:>6} {median / FLOOR:>12.2f} {median - FLOOR:>12.0f} {failed:>15.0f}")
    print(f"{'  lowest / highest of ' + str(len(failing)) + ' seeds':34} {min(put_calls):>10} / {max(put_calls)}")
    regrouped = -(-EVENTS * FAILURE_RATE // 10)
    per_call = FLOOR * (1 - (1 - FAILURE_RATE) ** 10)
    print(
        f"expected extra calls at 10%: about {regrouped:.0f} with the failed entries regrouped (this publisher); "
        f"{per_call:.1f} if each call's failed entries were retried on their own"
    )


if __name__ == "__main__":
    main()
