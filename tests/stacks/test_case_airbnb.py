"""CaseAirbnb: the blueprint's wiring, on templates synthesized once per profile for this module."""

from __future__ import annotations

import json

import pytest
from aws_cdk import App

from messaging_constructs import Profile
from stacks.case_airbnb import LEASE, RETRYABLE_ERRORS, CaseAirbnbStack
from tests.stacks.helpers import actions, function, props

STACK = "CaseAirbnb"


@pytest.fixture(scope="module", params=["sandbox", "production"])
def template(request, tmp_path_factory):
    app = App(outdir=str(tmp_path_factory.mktemp(f"airbnb-{request.param}")), context={"profile": request.param})
    CaseAirbnbStack(app, STACK, profile=Profile.of(app))
    return app.synth().get_stack_by_name(STACK).template


def _granted(template: dict, service: str) -> dict[str, set]:
    """action -> the resources it is granted on, for the function of ``service``."""
    _, fn = function(template, service)
    role = fn["Role"]["Fn::GetAtt"][0]
    granted: dict[str, set] = {}
    for policy in props(template, "AWS::IAM::ManagedPolicy").values():
        if {"Ref": role} in policy.get("Roles", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                for action in actions(statement):
                    resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
                    granted.setdefault(action, set()).update(json.dumps(r, sort_keys=True) for r in resources)
    return granted


def _definition(template: dict) -> dict:
    (machine,) = props(template, "AWS::StepFunctions::StateMachine").values()
    return json.loads("".join(p if isinstance(p, str) else "X" for p in machine["DefinitionString"]["Fn::Join"][1]))


def _table(template: dict, logical_prefix: str) -> str:
    (logical_id,) = [k for k in props(template, "AWS::DynamoDB::Table") if k.startswith(logical_prefix)]
    return logical_id


def test_every_table_is_encrypted_with_a_customer_key_and_recoverable(template):
    tables = props(template, "AWS::DynamoDB::Table")
    assert len(tables) == 5  # event store, outbox, payment requests, ledger, rebuilt ledger
    for table in tables.values():
        assert table["SSESpecification"]["SSEEnabled"] is True and "KMSMasterKeyId" in table["SSESpecification"]
        assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True


def test_the_booking_commands_append_to_the_store_and_write_the_outbox_and_nothing_else(template):
    granted = _granted(template, "case_airbnb_bookings")
    dynamodb = {action for action in granted if action.startswith("dynamodb:")}
    assert dynamodb == {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:ConditionCheckItem"}
    store, outbox = _table(template, "EventStore"), _table(template, "OutboxTable")
    assert {json.loads(r)["Fn::GetAtt"][0] for r in granted["dynamodb:PutItem"]} == {store, outbox}
    assert {json.loads(r)["Fn::GetAtt"][0] for r in granted["dynamodb:Query"]} == {store}


def test_the_payments_function_reads_and_writes_only_its_requests_table(template):
    granted = _granted(template, "case_airbnb_payments")
    requests = _table(template, "PaymentRequests")
    dynamodb = {action: resources for action, resources in granted.items() if action.startswith("dynamodb:")}
    assert set(dynamodb) == {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"}
    assert all({json.loads(r)["Fn::GetAtt"][0] for r in resources} == {requests} for resources in dynamodb.values())
    _, fn = function(template, "case_airbnb_payments")
    assert fn["Environment"]["Variables"]["LEASE_SECONDS"] == "35" and fn["Timeout"] < 35


def test_the_saga_retries_the_retryable_errors_with_backoff_and_compensates_everything_else(template):
    states = _definition(template)["States"]
    for step in ("ChargeGuest", "ConfirmBooking"):
        (retrier,) = states[step]["Retry"]
        assert set(RETRYABLE_ERRORS) <= set(retrier["ErrorEquals"]) and "States.ALL" not in retrier["ErrorEquals"]
        assert retrier["BackoffRate"] == 2 and retrier["JitterStrategy"] == "FULL"
        # The retries' pauses, at their longest, outlast a dead function's lease by far (full jitter waits half on average).
        pauses = [min(retrier["IntervalSeconds"] * 2**n, retrier.get("MaxDelaySeconds", 10**9)) for n in range(retrier["MaxAttempts"])]
        assert sum(pauses) / 2 > LEASE.to_seconds() * 2, pauses
        assert states[step]["Catch"][0]["ErrorEquals"] == ["States.ALL"]
    assert not {"PaymentDeclined", "BookingNotConfirmable"} & set(states["ChargeGuest"]["Retry"][0]["ErrorEquals"])
    assert states["ChargeGuest"]["Parameters"]["Payload"] == {"action": "charge", "booking.$": "$.booking"}
    assert states["RefundGuest"]["Parameters"]["Payload"] == {"action": "refund", "booking.$": "$.booking"}
    assert states["RecordRefund"]["Parameters"]["Payload"]["refund.$"] == "$.results.RefundGuest.result"
    assert states["RecordPaymentFailed"]["Catch"][0]["ErrorEquals"] == ["SagaAlreadyCompleted"]


def test_rules_send_requests_and_cancelled_confirmations_to_the_saga_starter(template):
    (pipe,) = props(template, "AWS::Pipes::Pipe").values()
    assert pipe["TargetParameters"]["EventBridgeEventBusParameters"]["Source"] == "blueprints.stays"
    patterns = sorted((r["EventPattern"] for r in props(template, "AWS::Events::Rule").values()), key=json.dumps)
    assert patterns == sorted(
        [
            {"source": ["blueprints.stays"], "detail-type": ["BookingChanged"], "detail": {"type": ["BookingRequested"]}},
            {"source": ["blueprints.stays"], "detail-type": ["BookingChanged"], "detail": {"type": ["BookingCancelled"], "previous_status": ["CONFIRMED"]}},
        ],
        key=json.dumps,
    )
    for rule in props(template, "AWS::Events::Rule").values():
        assert rule["Targets"][0]["DeadLetterConfig"]["Arn"] and rule["Targets"][0]["RetryPolicy"]


def test_the_ledger_reads_new_events_of_the_store_and_can_be_rebuilt(template):
    store = _table(template, "EventStore")
    mappings = [m for m in props(template, "AWS::Lambda::EventSourceMapping").values() if "StreamViewType" not in m]
    (ledger,) = [m for m in mappings if m.get("EventSourceArn", {}).get("Fn::GetAtt", [None])[0] == store]
    assert json.loads(ledger["FilterCriteria"]["Filters"][0]["Pattern"]) == {"eventName": ["INSERT"], "dynamodb": {"NewImage": {"kind": {"S": ["event"]}}}}
    assert ledger["FunctionResponseTypes"] == ["ReportBatchItemFailures"] and ledger["DestinationConfig"]["OnFailure"]["Destination"]
    _, rebuild = function(template, "case_airbnb_ledger-rebuild")
    assert rebuild["Handler"] == "ledger_rebuild.lambda_handler"
    assert _granted(template, "case_airbnb_ledger-rebuild")["dynamodb:Scan"] == {json.dumps({"Fn::GetAtt": [store, "Arn"]}, sort_keys=True)}


def test_every_dead_letter_queue_has_an_alarm(template):
    queues = [k for k, q in props(template, "AWS::SQS::Queue").items() if "RedrivePolicy" not in q]
    watched = {json.dumps(d.get("Value"), sort_keys=True) for a in props(template, "AWS::CloudWatch::Alarm").values() for d in a.get("Dimensions", [])}
    for queue in queues:
        assert json.dumps({"Fn::GetAtt": [queue, "QueueName"]}, sort_keys=True) in watched, queue
