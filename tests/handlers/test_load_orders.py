"""The load generator against a local stand-in of the order API: the real handler behind an HTTP server on 127.0.0.1.

The stand-in turns each HTTP request into the REST proxy event API Gateway would send (the bearer token as a
Cognito ``sub``) and the handler's answer back into HTTP, so the script's requests, keys, repeats and reads are
exercised end to end against moto's DynamoDB.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from scripts import load_orders
from tests.handlers.test_order_api_handler import api, api_event  # noqa: F401 - the handler fixture, and its event shape


@pytest.fixture
def server(api, lambda_context):  # noqa: F811 - the fixture imported above
    lock = threading.Lock()  # one invocation at a time, as one Lambda instance would take them

    class Gateway(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else None
            path = "/" + self.path.split("/v1/", 1)[1]
            headers = {k: v for k, v in self.headers.items() if k.lower() in ("idempotency-key", "content-type")}
            event = api_event(self.command, path, caller={"cognito": self.headers["Authorization"]}, body=body, headers=headers)
            with lock:
                response = api.lambda_handler(event, lambda_context)
            payload = response["body"].encode()
            self.send_response(response["statusCode"])
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _answer

        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1/"
    httpd.shutdown()


def test_the_generator_places_orders_at_its_rate_and_repeats_get_the_first_answer(server, capsys):
    assert load_orders.main(["--url", server, "--token", "load-test-customer", "--rate", "20", "--duration", "1", "--repeat", "0.5"]) == 0
    printed = capsys.readouterr().out
    assert "asked: 20 orders at 20/s for 1 s" in printed
    assert "answers: 202: 20" in printed
    assert "repeats answered the same: 10, differently: 0" in printed
    assert "accept latency ms: p50 " in printed


def test_following_reads_each_order_until_the_timeout_and_reports_the_open_ones(server, capsys):
    client = load_orders.Client(server, token="load-test-follower")
    results = load_orders.run(client, rate=10, duration=0.3)
    assert results.statuses == {"202": 3} and len(set(results.order_ids)) == 3
    ended, times = load_orders.follow(client, results.order_ids, timeout=0.5)
    assert ended == {"still open": 3} and times == []  # nothing runs their sagas here: they stay ACCEPTED


def test_refused_requests_make_the_exit_status_fail(server, capsys):
    client = load_orders.Client(server, token="")  # an empty sub: the API answers 401
    results = load_orders.run(client, rate=10, duration=0.2)
    assert set(results.statuses) == {"401"}
    assert "401: 2" in load_orders.report(results, 10, 0.2)
    assert json.dumps(dict(results.statuses))
