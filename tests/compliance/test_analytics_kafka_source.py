"""CapstoneAnalytics with its optional Kafka source (``-c analytics-kafka-source=true``): clean in every pack and cfn-lint.

``make synth`` checks the app as deployed by default, without the source; this synthesizes the stack with it, in both
profiles, through the same report (the five packs and cfn-lint), and checks the forwarder's wiring: an MSK event source
mapping on the ``clickstream`` topic with an on-failure destination, and a grant to put records on the stream only.
"""

from __future__ import annotations

import json

import pytest
from aws_cdk import App

import scripts.compliance_report as report
from messaging_constructs import Profile
from stacks.capstone_analytics import KAFKA_TOPIC, CapstoneAnalyticsStack
from stacks.compliance import add_packs


@pytest.fixture(scope="module", params=["sandbox", "production"])
def checked(request, tmp_path_factory):
    def build(app: App, compliance: bool = True) -> App:
        CapstoneAnalyticsStack(app, "CapstoneAnalytics", profile=Profile.of(app), kafka_source=True)
        if compliance:
            add_packs(app)
        return app

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(report, "build_app", build)
        return report.check(request.param, tmp_path_factory.mktemp(f"kafka-{request.param}"))


def test_the_stack_with_the_kafka_source_has_no_finding_and_no_lint(checked):
    assert [f"{f.rule} {f.path}" for f in checked.findings] == []
    assert checked.lint == []


def test_the_forwarder_reads_the_topic_and_may_only_put_records_on_the_stream(checked):
    resources = json.loads(checked.templates["CapstoneAnalytics"].read_text())["Resources"]
    functions = {k: r for k, r in resources.items() if r["Type"] == "AWS::Lambda::Function"}
    (forwarder,) = [
        k for k, r in functions.items() if r["Properties"].get("Environment", {}).get("Variables", {}).get("POWERTOOLS_SERVICE_NAME") == "kafka_forwarder"
    ]
    (stream,) = [k for k, r in resources.items() if r["Type"] == "AWS::Kinesis::Stream"]
    assert functions[forwarder]["Properties"]["Environment"]["Variables"]["STREAM_NAME"] == {"Ref": stream}
    (mapping,) = [
        r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::EventSourceMapping" and r["Properties"]["FunctionName"] == {"Ref": forwarder}
    ]
    assert mapping["Topics"] == [KAFKA_TOPIC] and mapping["DestinationConfig"]["OnFailure"]["Destination"]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    role = functions[forwarder]["Properties"]["Role"]["Fn::GetAtt"][0]
    statements = [
        s
        for r in resources.values()
        if r["Type"] == "AWS::IAM::ManagedPolicy" and {"Ref": role} in r["Properties"].get("Roles", [])
        for s in r["Properties"]["PolicyDocument"]["Statement"]
    ]
    kinesis = [s for s in statements if any(str(a).startswith("kinesis:") for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"]))]
    assert kinesis and all(s["Resource"] == {"Fn::GetAtt": [stream, "Arn"]} for s in kinesis)
    assert {a for s in kinesis for a in s["Action"]} == {"kinesis:PutRecord", "kinesis:PutRecords"}
