"""SecureRestApi.add_stream_route's mapping templates, rendered: what Kinesis is sent and what the client is answered.

The templates are taken from the synthesized method and rendered with airspeed (Velocity for Python), with ``$input``,
``$util`` and ``$context`` standing in as API Gateway documents them
(https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-mapping-template-reference.html):
``$input.path`` gives the value at a JSONPath, ``$input.json`` its JSON text, ``$util.base64Encode`` base64,
``$util.escapeJavaScript`` a string's JavaScript escapes, ``$context.responseOverride.status`` the status answered.
What API Gateway itself adds (its own JSON serializer's spacing, the request's size limits) is not reproduced.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import airspeed
import pytest
from aws_cdk.assertions import Template

from messaging_constructs import EventStream, SecureRestApi
from messaging_runtime.contracts.analytics import ANALYTICS_EVENT
from stacks.capstone_analytics import ingest_model
from tests.unit.helpers import new_stack

STREAM = "events-stream"


class Input:
    def __init__(self, body: Any) -> None:
        self.body = body

    def _at(self, path: str) -> Any:
        value = self.body
        for name, index in re.findall(r"\.(\w+)|\[(\d+)\]", path.removeprefix("$")):
            value = value[name] if name else value[int(index)]
        return value

    def path(self, path: str) -> Any:
        return self._at(path)

    def json(self, path: str) -> str:
        return json.dumps(self._at(path), separators=(",", ":"))


class Util:
    @staticmethod
    def base64Encode(text: str) -> str:  # noqa: N802 - API Gateway's name
        return base64.b64encode(text.encode()).decode()

    @staticmethod
    def escapeJavaScript(text: str) -> str:  # noqa: N802 - API Gateway's name
        return json.dumps(text)[1:-1]


@pytest.fixture(scope="module")
def templates() -> tuple[str, str]:
    stack = new_stack()
    api = SecureRestApi(stack, "Api")
    api.add_stream_route("POST", "/events", EventStream(stack, "Events"), request_model=ingest_model())
    (method,) = [r["Properties"] for r in Template.from_stack(stack).to_json()["Resources"].values() if r["Type"] == "AWS::ApiGateway::Method"]
    integration = method["Integration"]
    request = integration["RequestTemplates"]["application/json"]
    if isinstance(request, dict):  # the stream's name is a token: the template is a join around its Ref
        request = "".join(part if isinstance(part, str) else STREAM for part in request["Fn::Join"][1])
    (ok,) = [r for r in integration["IntegrationResponses"] if r["StatusCode"] == "200"]
    return request, ok["ResponseTemplates"]["application/json"]


def render(template: str, body: Any) -> tuple[str, dict]:
    context: dict = {"responseOverride": {}}
    return airspeed.Template(template).merge({"input": Input(body), "util": Util(), "context": context}), context


def event(n: int, **changes: Any) -> dict:
    return {
        "schema_version": 1,
        "event_id": f"00000000-0000-4000-8000-{n:012d}",
        "event_type": "page_view",
        "event_time": "2026-12-01T10:00:00Z",
        "user_id": f"u-{n}",
        "platform": "web",
        **changes,
    }


def test_each_event_is_one_record_its_json_the_data_its_user_the_partition_key(templates):
    request, _ = templates
    events = [event(1), event(2, page='/search?q="quoted"', properties={"note": "line\nbreak", "price": 9.5, "new": True})]
    rendered, _ = render(request, {"events": events})
    call = json.loads(rendered)  # PutRecords' request: valid JSON whatever the events hold
    assert call["StreamName"] == STREAM
    assert [record["PartitionKey"] for record in call["Records"]] == ["u-1", "u-2"]
    assert [json.loads(base64.b64decode(record["Data"])) for record in call["Records"]] == events
    assert [ANALYTICS_EVENT.parse(base64.b64decode(record["Data"])).user_id for record in call["Records"]] == ["u-1", "u-2"]


def test_five_hundred_events_make_five_hundred_records(templates):
    request, _ = templates
    rendered, _ = render(request, {"events": [event(n) for n in range(500)]})
    assert len(json.loads(rendered)["Records"]) == 500


def test_the_client_is_answered_200_when_every_record_was_stored_and_207_with_each_result_otherwise(templates):
    _, response = templates
    stored = {"FailedRecordCount": 0, "Records": [{"SequenceNumber": "1", "ShardId": "shardId-000000000000"}]}
    rendered, context = render(response, stored)
    assert json.loads(rendered) == {"failed": 0, "results": stored["Records"]} and "status" not in context["responseOverride"]
    partial = {
        "FailedRecordCount": 1,
        "Records": [
            {"SequenceNumber": "1", "ShardId": "shardId-000000000000"},
            {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded"},
        ],
    }
    rendered, context = render(response, partial)
    assert json.loads(rendered) == {"failed": 1, "results": partial["Records"]} and context["responseOverride"]["status"] == 207
