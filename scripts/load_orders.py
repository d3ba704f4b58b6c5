"""Place orders against a deployed CapstoneOrders at a given rate for a given time; print counts and latencies.

    python -m scripts.load_orders --url https://<api>.execute-api.<region>.amazonaws.com/v1/ --rate 20 --duration 60
    python -m scripts.load_orders --stack CapstoneOrders --rate 5 --duration 30 --follow

The URL comes from ``--url`` or from the stack's ``OrderApiUrl`` output. In the
sandbox the API takes IAM authorization: requests are signed (SigV4) with the
credentials boto3 finds. In production it takes Cognito: pass an ID token with
``--token``. Each order has its own ``Idempotency-Key``; ``--repeat`` sends a
share of them twice, to see the second answer equal the first.

``--follow`` then reads each order until it ends (CONFIRMED, COMPENSATED,
CANCELLED, FAILED) or ``--follow-timeout`` passes, and prints the time from
acceptance to the end. An order the merchant never answers ends COMPENSATED
after the merchant timeout (5 minutes in the sandbox).

Prices: every request is an API Gateway request, a Lambda invocation, a
DynamoDB transaction and, downstream, a pipe, a bus event, a queue message and
a Step Functions execution (about 8 state transitions to the merchant's wait).
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib import request as urlrequest
from urllib.error import HTTPError, URLError

TERMINAL = {"CONFIRMED", "COMPENSATED", "CANCELLED", "FAILED"}


@dataclass
class Results:
    statuses: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    order_ids: list[str] = field(default_factory=list)
    repeats_equal: int = 0
    repeats_different: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Client:
    """HTTP to the order API: signed with SigV4 (IAM), or with a bearer ID token (Cognito)."""

    def __init__(self, url: str, *, token: str | None = None, region: str | None = None, timeout: float = 10.0) -> None:
        self.url, self.token, self.timeout = url.rstrip("/") + "/", token, timeout
        self.region = region
        self._credentials = None

    def _signed(self, method: str, url: str, body: bytes | None, headers: dict[str, str]) -> dict[str, str]:
        if self.token is not None:
            return {**headers, "Authorization": self.token}
        import boto3
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        session = boto3.session.Session()
        if self._credentials is None:
            self._credentials = session.get_credentials()
        region = self.region or session.region_name or url.split(".execute-api.")[1].split(".")[0]
        aws_request = AWSRequest(method=method, url=url, data=body, headers=headers)
        SigV4Auth(self._credentials, "execute-api", region).add_auth(aws_request)
        return dict(aws_request.headers.items())

    def send(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        url = self.url + path.lstrip("/")
        data = json.dumps(body).encode() if body is not None else None
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        prepared = urlrequest.Request(url, data=data, method=method, headers=self._signed(method, url, data, all_headers))
        try:
            with urlrequest.urlopen(prepared, timeout=self.timeout) as answer:
                return answer.status, answer.read()
        except HTTPError as error:
            return error.code, error.read()


def an_order(index: int) -> dict[str, Any]:
    return {"items": [{"sku": f"SKU-{index % 20}", "quantity": 1 + index % 3}], "total": round(5 + index % 50 * 1.5, 2), "currency": "EUR"}


def place(client: Client, index: int, repeat: bool, results: Results) -> None:
    key, order = str(uuid.uuid4()), an_order(index)
    started = time.perf_counter()
    try:
        status, body = client.send("POST", "orders", order, {"Idempotency-Key": key})
    except (URLError, TimeoutError, OSError) as error:
        with results.lock:
            results.statuses[f"error: {type(error).__name__}"] += 1
        return
    elapsed = (time.perf_counter() - started) * 1000
    with results.lock:
        results.statuses[str(status)] += 1
        results.latencies_ms.append(elapsed)
        if status == 202:
            results.order_ids.append(json.loads(body)["order_id"])
    if repeat and status == 202:
        again_status, again = client.send("POST", "orders", order, {"Idempotency-Key": key})
        with results.lock:
            if (again_status, again) == (status, body):
                results.repeats_equal += 1
            else:
                results.repeats_different += 1


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def run(client: Client, *, rate: float, duration: float, repeat_share: float = 0.0) -> Results:
    """Place ``rate`` orders a second for ``duration`` seconds, each on its own thread at its own time."""
    results, threads, total = Results(), [], int(rate * duration)
    start = time.perf_counter()
    for index in range(total):
        pause = start + index / rate - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        repeat = repeat_share > 0 and (index * repeat_share) % 1 + repeat_share >= 1
        thread = threading.Thread(target=place, args=(client, index, repeat, results), daemon=True)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join(timeout=client.timeout * 3)
    return results


def follow(client: Client, order_ids: list[str], timeout: float) -> tuple[Counter[str], list[float]]:
    """Poll each order until it ends; the terminal statuses, and seconds from the first poll to each end."""
    ended: Counter[str] = Counter()
    times: list[float] = []
    pending, start = set(order_ids), time.perf_counter()
    while pending and time.perf_counter() - start < timeout:
        for order_id in list(pending):
            status, body = client.send("GET", f"orders/{order_id}")
            if status == 200 and (state := json.loads(body).get("status")) in TERMINAL:
                ended[state] += 1
                times.append(time.perf_counter() - start)
                pending.discard(order_id)
        time.sleep(1)
    ended["still open"] += len(pending)
    return ended, times


def report(results: Results, rate: float, duration: float) -> str:
    latencies = results.latencies_ms
    lines = [
        f"asked: {int(rate * duration)} orders at {rate:g}/s for {duration:g} s",
        "answers: " + ", ".join(f"{status}: {count}" for status, count in sorted(results.statuses.items())),
        f"accept latency ms: p50 {percentile(latencies, 0.5):.1f}, p99 {percentile(latencies, 0.99):.1f}, "
        f"mean {statistics.fmean(latencies) if latencies else float('nan'):.1f}, max {max(latencies, default=float('nan')):.1f}",
    ]
    if results.repeats_equal or results.repeats_different:
        lines.append(f"repeats answered the same: {results.repeats_equal}, differently: {results.repeats_different}")
    return "\n".join(lines)


def api_url_of(stack: str) -> str:
    import boto3

    outputs = boto3.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0].get("Outputs", [])
    return next(o["OutputValue"] for o in outputs if o["OutputKey"] == "OrderApiUrl")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="the order API's URL (default: the stack's OrderApiUrl output)")
    parser.add_argument("--stack", default="CapstoneOrders")
    parser.add_argument("--rate", type=float, default=5.0, help="orders a second (default 5)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds (default 10)")
    parser.add_argument("--repeat", type=float, default=0.0, help="share of orders sent twice with the same key (0 to 1)")
    parser.add_argument("--token", help="a Cognito ID token (production); without it requests are signed with SigV4")
    parser.add_argument("--follow", action="store_true", help="then read each order until it ends")
    parser.add_argument("--follow-timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0 or not 0 <= args.repeat <= 1:
        parser.error("rate and duration must be positive, repeat between 0 and 1")
    client = Client(args.url or api_url_of(args.stack), token=args.token)
    results = run(client, rate=args.rate, duration=args.duration, repeat_share=args.repeat)
    print(report(results, args.rate, args.duration))
    if args.follow:
        ended, times = follow(client, results.order_ids, args.follow_timeout)
        print("ended: " + ", ".join(f"{status}: {count}" for status, count in sorted(ended.items())))
        if times:
            print(f"seconds to end, from the first read: p50 {percentile(times, 0.5):.1f}, p99 {percentile(times, 0.99):.1f}")
    return 0 if all(status.startswith("2") for status in results.statuses) else 1


if __name__ == "__main__":
    raise SystemExit(main())
