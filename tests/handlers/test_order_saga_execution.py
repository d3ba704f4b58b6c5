"""The order saga executed, not only asserted: CapstoneOrders' synthesized state machine run by moto's Step Functions.

moto runs the definition from the template (retries, catches, the choice of
compensations, the merchant's task token on a real SQS queue, timeouts). Its
``lambda:invoke`` tasks call the blueprint's real handlers in this process,
against moto's DynamoDB: the only stand-in is the hop from Step Functions to
Lambda (moto runs no Lambda code without Docker). Retry pauses are skipped;
the merchant's timeout is cut to 1 second.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from types import SimpleNamespace
from unittest.mock import patch

import boto3
import pytest
from moto import mock_aws
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

from messaging_runtime.checkout import OrderStore
from messaging_runtime.contracts.checkout import ORDER_ACCEPTED
from messaging_runtime.outbox import Outbox
from messaging_runtime.saga_steps import saga_input

ACCOUNT, REGION = "123456789012", "us-east-1"
TABLES = {"orders": "order_id", "outbox": "aggregate_id", "stock": "pk", "payments": "pk", "breakers": "pk"}
ORDER_NUMBERS = itertools.count(1)


def _definition(template: dict, queue_url: str) -> tuple[str, dict[str, str]]:
    """The saga's definition with every reference resolved for moto, and {function logical id: its code folder}."""
    resources = template["Resources"]
    (machine,) = [r for r in resources.values() if r["Type"] == "AWS::StepFunctions::StateMachine"]
    folders = {
        logical_id: r["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
        for logical_id, r in resources.items()
        if r["Type"] == "AWS::Lambda::Function" and "POWERTOOLS_SERVICE_NAME" in r["Properties"].get("Environment", {}).get("Variables", {})
    }
    parts = []
    for part in machine["Properties"]["DefinitionString"]["Fn::Join"][1]:
        if isinstance(part, str):
            parts.append(part)
        elif "Fn::GetAtt" in part:
            parts.append(f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{part['Fn::GetAtt'][0]}")
        elif part.get("Ref") == "AWS::Partition":
            parts.append("aws")
        elif "Ref" in part and resources[part["Ref"]]["Type"] == "AWS::SQS::Queue":
            parts.append(queue_url)
        else:
            raise AssertionError(f"unexpected reference in the definition: {part}")
    return "".join(parts), folders


@pytest.fixture(scope="module")
def saga(handler_env, load_handler, template_json):
    template = template_json("sandbox", "CapstoneOrders")
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}):
        dynamodb = boto3.client("dynamodb")
        for table, key in TABLES.items():
            dynamodb.create_table(
                TableName=table,
                KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        queue_url = boto3.client("sqs").create_queue(QueueName="merchant-requests")["QueueUrl"]
        for name, value in {
            "ORDERS_TABLE_NAME": "orders",
            "OUTBOX_TABLE_NAME": "outbox",
            "STOCK_TABLE_NAME": "stock",
            "PAYMENTS_TABLE_NAME": "payments",
            "BREAKER_TABLE_NAME": "breakers",
            "DEFAULT_STOCK": "10",
            "PROVIDER_DECLINE_ABOVE": "1000",
        }.items():
            handler_env.setenv(name, value)
        definition, folders = _definition(template, queue_url)
        # The sandbox waits 5 minutes for the merchant; a test waits 1 second.
        definition = re.sub(r'("AwaitMerchant":\{.*?"TimeoutSeconds":)\d+', r"\g<1>1", definition)
        handlers = {logical_id: load_handler(folder) for logical_id, folder in folders.items() if folder in ("order_status", "stock_reservations", "payments")}
        calls: list[tuple[str, dict]] = []
        faults: dict[tuple[str, str], list[str]] = {}  # (function's logical id, action or status) -> errors its next calls raise
        faults_after: dict[tuple[str, str], list[str]] = {}  # the same, raised after the handler ran (a timeout after the write)

        def invoke(self, function_name, qualifier, body, headers, response_headers):
            logical_id = function_name.rsplit(":", 1)[-1]
            payload = json.loads(body or "{}")
            calls.append((logical_id, payload))
            injected = faults.get((logical_id, payload.get("action") or payload.get("to")))
            if injected:
                response_headers["x-amz-function-error"] = "Unhandled"
                return json.dumps({"errorType": injected.pop(0), "errorMessage": "injected"}).encode()
            try:
                result = handlers[logical_id].lambda_handler(payload, SimpleNamespace(**_CONTEXT))
            except Exception as error:  # what Lambda reports for an unhandled exception: its class name is the error
                response_headers["x-amz-function-error"] = "Unhandled"
                return json.dumps({"errorType": type(error).__name__, "errorMessage": str(error)}).encode()
            injected = faults_after.get((logical_id, payload.get("action") or payload.get("to")))
            if injected:
                response_headers["x-amz-function-error"] = "Unhandled"
                return json.dumps({"errorType": injected.pop(0), "errorMessage": "injected after the call"}).encode()
            return json.dumps(result, default=str).encode()

        with patch.object(LambdaSimpleBackend, "invoke", invoke), patch.object(retrier_decl, "time", SimpleNamespace(sleep=lambda seconds: None)):
            client = boto3.client("stepfunctions")
            arn = client.create_state_machine(name="order-saga", definition=definition, roleArn=f"arn:aws:iam::{ACCOUNT}:role/saga")["stateMachineArn"]
            yield SimpleNamespace(
                client=client,
                arn=arn,
                queue_url=queue_url,
                calls=calls,
                faults=faults,
                faults_after=faults_after,
                handlers=handlers,
                store=OrderStore(dynamodb, "orders", Outbox("outbox")),
                dynamodb=dynamodb,
                function=lambda folder: next(i for i, f in folders.items() if f == folder),
            )


_CONTEXT = dict(
    function_name="saga-step",
    function_version="$LATEST",
    invoked_function_arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:saga-step",
    memory_limit_in_mb=256,
    aws_request_id="req-1",
    log_group_name="/aws/lambda/saga-step",
    log_stream_name="s",
    get_remaining_time_in_millis=lambda: 30_000,
)


def place(saga, *, quantity=2, total=12.5) -> dict:
    order_id = f"o-saga-{next(ORDER_NUMBERS)}"
    order = ORDER_ACCEPTED.current(
        version=1,
        order_id=order_id,
        seq=1,
        customer_id="c-1",
        items=[{"sku": "SKU-1", "quantity": quantity}],
        total=total,
        currency="EUR",
        accepted_at="2026-01-01T00:00:00Z",
    )
    saga.store.place(order, idempotency_key=order_id, request_digest="h", deadline_seconds=1800, now=time.time())
    return {"order": order.model_dump(mode="json", include={"order_id", "customer_id", "items", "total", "currency"})}


def start(saga, saga_input: dict) -> str:
    return saga.client.start_execution(stateMachineArn=saga.arn, name=saga_input["order"]["order_id"], input=json.dumps(saga_input))["executionArn"]


def merchant_request(saga, order_id: str, timeout: float = 10) -> str:
    """The task token the saga sent the merchant for ``order_id``."""
    sqs, deadline = boto3.client("sqs"), time.time() + timeout
    while time.time() < deadline:
        for message in sqs.receive_message(QueueUrl=saga.queue_url, MaxNumberOfMessages=10).get("Messages", []):
            body = json.loads(message["Body"])
            sqs.delete_message(QueueUrl=saga.queue_url, ReceiptHandle=message["ReceiptHandle"])
            if body["order"]["order_id"] == order_id:
                return body["task_token"]
        time.sleep(0.05)
    raise AssertionError(f"no merchant request for {order_id}")


def finish(saga, execution_arn: str, timeout: float = 20) -> dict:
    deadline = time.time() + timeout
    while (described := saga.client.describe_execution(executionArn=execution_arn))["status"] == "RUNNING":
        assert time.time() < deadline, "the execution did not finish"
        time.sleep(0.05)
    return described


def path(saga, execution_arn: str) -> list[str]:
    events = saga.client.get_execution_history(executionArn=execution_arn)["events"]
    return [e["stateEnteredEventDetails"]["name"] for e in events if e["type"].endswith("StateEntered")]


def stock(saga) -> int:
    item = saga.dynamodb.get_item(TableName="stock", Key={"pk": {"S": "sku#SKU-1"}}, ConsistentRead=True).get("Item")
    return int(item["available"]["N"]) if item else 10


def payment_status(saga, order_id: str) -> str | None:
    item = saga.dynamodb.get_item(TableName="payments", Key={"pk": {"S": f"payment#{order_id}"}}, ConsistentRead=True).get("Item")
    return item["status"]["S"] if item else None


def statuses(saga, order_id: str) -> list[str]:
    """Every status the order's events announced, from the calls the saga made to the status steps, in order."""
    status_fn = saga.function("order_status")
    return [payload["to"] for fn, payload in saga.calls if fn == status_fn and payload["order_id"] == order_id]


def test_an_order_the_merchant_accepts_is_confirmed_with_stock_taken_and_payment_authorized(saga):
    order = place(saga)
    order_id, before = order["order"]["order_id"], stock(saga)
    execution = start(saga, order)
    saga.client.send_task_success(taskToken=merchant_request(saga, order_id), output=json.dumps({"accepted": True}))
    assert finish(saga, execution)["status"] == "SUCCEEDED"
    assert path(saga, execution) == [
        "Start",
        "ReserveStock",
        "RecordStockReserved",
        "AuthorizePayment",
        "RecordAwaitingMerchant",
        "AwaitMerchant",
        "RecordConfirmed",
        "Completed",
    ]
    record = saga.store.get(order_id)
    assert (record["status"], record["seq"]) == ("CONFIRMED", 4)
    assert stock(saga) == before - 2 and payment_status(saga, order_id) == "AUTHORIZED"


def test_a_stock_shortage_compensates_and_never_touches_the_payment(saga):
    order = place(saga, quantity=11)
    order_id, before = order["order"]["order_id"], stock(saga)
    execution = start(saga, order)
    assert finish(saga, execution)["status"] == "SUCCEEDED"
    assert path(saga, execution) == [
        "Start",
        "ReserveStock",
        "ReserveStock failed",
        "RecordCompensating",
        "Compensate from",
        "ReleaseStock",
        "RecordCompensated",
        "Compensated",
    ]
    record = saga.store.get(order_id)
    assert record["status"] == "COMPENSATED" and record["reason"] == "some items are out of stock"
    assert stock(saga) == before and payment_status(saga, order_id) is None


def test_a_declined_payment_voids_and_releases_in_reverse_order(saga):
    order = place(saga, total=5000)
    order_id, before = order["order"]["order_id"], stock(saga)
    execution = start(saga, order)
    assert finish(saga, execution)["status"] == "SUCCEEDED"
    assert path(saga, execution)[3:] == [
        "AuthorizePayment",
        "AuthorizePayment failed",
        "RecordCompensating",
        "Compensate from",
        "VoidPayment",
        "ReleaseStock",
        "RecordCompensated",
        "Compensated",
    ]
    assert saga.store.get(order_id)["reason"] == "the payment was declined"
    assert stock(saga) == before and payment_status(saga, order_id) == "VOIDED"


def test_a_merchant_that_declines_gets_the_order_compensated(saga):
    order = place(saga)
    order_id, before = order["order"]["order_id"], stock(saga)
    execution = start(saga, order)
    saga.client.send_task_failure(taskToken=merchant_request(saga, order_id), error="MerchantDeclined", cause="closed today")
    assert finish(saga, execution)["status"] == "SUCCEEDED"
    record = saga.store.get(order_id)
    assert (record["status"], record["reason"]) == ("COMPENSATED", "the merchant declined the order")
    assert stock(saga) == before and payment_status(saga, order_id) == "VOIDED"
    assert statuses(saga, order_id) == ["STOCK_RESERVED", "AWAITING_MERCHANT", "COMPENSATING", "FINISHED"]


def test_a_merchant_that_never_answers_times_out_into_compensation(saga):
    order = place(saga)
    order_id, before = order["order"]["order_id"], stock(saga)
    execution = start(saga, order)
    merchant_request(saga, order_id)  # taken, never answered
    assert finish(saga, execution)["status"] == "SUCCEEDED"
    assert saga.store.get(order_id)["reason"] == "the merchant did not answer in time"
    assert stock(saga) == before and payment_status(saga, order_id) == "VOIDED"


def test_a_cancel_while_the_merchant_decides_wins_over_the_acceptance(saga):
    order = place(saga)
    order_id, before = order["order"]["order_id"], stock(saga)
    execution = start(saga, order)
    token = merchant_request(saga, order_id)
    saga.store.request_cancel(order_id, "c-1")
    saga.client.send_task_success(taskToken=token, output="{}")
    assert finish(saga, execution)["status"] == "SUCCEEDED"
    assert "RecordConfirmed failed" in path(saga, execution)
    assert saga.store.get(order_id)["status"] == "CANCELLED"
    assert stock(saga) == before and payment_status(saga, order_id) == "VOIDED"


def test_a_duplicate_start_is_refused_once_the_first_has_finished(saga):
    order = place(saga, quantity=11)
    execution = start(saga, order)
    assert start(saga, order) == execution  # same name and input while running: the same execution
    finish(saga, execution)
    with pytest.raises(saga.client.exceptions.ExecutionAlreadyExists):
        start(saga, order)


def test_transient_lambda_errors_are_retried_and_the_step_runs_once(saga):
    order = place(saga, quantity=11)
    saga.faults[(saga.function("stock_reservations"), "reserve")] = ["Lambda.ServiceException", "Lambda.TooManyRequestsException"]
    execution = start(saga, order)
    assert finish(saga, execution)["status"] == "SUCCEEDED"
    assert path(saga, execution).count("ReserveStock") == 1  # one state, retried inside it
    assert saga.store.get(order["order"]["order_id"])["status"] == "COMPENSATED"


def calls_of(saga, folder: str, action: str, order_id: str) -> int:
    fn = saga.function(folder)
    return sum(1 for called, payload in saga.calls if called == fn and payload.get("action") == action and payload["order"]["order_id"] == order_id)


def test_a_compensation_that_fails_is_retried_until_it_succeeds(saga):
    order = place(saga, total=5000)
    order_id, before = order["order"]["order_id"], stock(saga)
    saga.faults[(saga.function("payments"), "void")] = ["PaymentProviderUnavailable", "ProviderTimeout"]
    execution = start(saga, order)
    assert finish(saga, execution)["status"] == "SUCCEEDED"
    assert calls_of(saga, "payments", "void", order_id) == 3
    assert saga.store.get(order_id)["status"] == "COMPENSATED" and stock(saga) == before and payment_status(saga, order_id) == "VOIDED"


def test_a_compensation_that_keeps_failing_abandons_the_saga_marks_the_order_failed_and_fails_the_execution(saga):
    order = place(saga, total=5000)
    order_id = order["order"]["order_id"]
    saga.faults[(saga.function("stock_reservations"), "release")] = ["StockTableUnavailable"] * 7
    execution = start(saga, order)
    described = finish(saga, execution)
    assert described["status"] == "FAILED" and described["error"] == "SagaAbandoned"
    assert calls_of(saga, "stock_reservations", "release", order_id) == 7  # the first try and 6 retries
    assert path(saga, execution)[-2:] == ["RecordFailed", "Abandoned"]
    assert saga.store.get(order_id)["status"] == "FAILED"


def test_a_confirmation_that_times_out_after_its_write_ends_the_saga_succeeded_with_nothing_undone(saga):
    order = place(saga)
    order_id, before = order["order"]["order_id"], stock(saga)
    saga.faults_after[(saga.function("order_status"), "CONFIRMED")] = ["Sandbox.Timedout"]
    execution = start(saga, order)
    saga.client.send_task_success(taskToken=merchant_request(saga, order_id), output=json.dumps({"accepted": True}))
    assert finish(saga, execution)["status"] == "SUCCEEDED"
    assert path(saga, execution)[-4:] == ["RecordConfirmed", "RecordConfirmed failed", "RecordCompensating", "Completed after all"]
    # Compensation asked once, answered SagaAlreadyCompleted and not retried; nothing released or voided.
    assert statuses(saga, order_id)[-2:] == ["CONFIRMED", "COMPENSATING"] and statuses(saga, order_id).count("COMPENSATING") == 1
    assert saga.store.get(order_id)["status"] == "CONFIRMED"
    assert stock(saga) == before - 2 and payment_status(saga, order_id) == "AUTHORIZED"


def test_a_saga_started_to_compensate_undoes_what_a_stuck_one_did_and_runs_no_step(saga):
    # The stuck saga must still be waiting for the merchant when the reconciler's runs: a machine whose wait outlasts any
    # load on the test machine (15 s; the shared one gives up after 1 second, which a busy machine can pass first).
    definition = saga.client.describe_state_machine(stateMachineArn=saga.arn)["definition"]
    patient = re.sub(r'("AwaitMerchant":\{.*?"TimeoutSeconds":)\d+', r"\g<1>15", definition)
    assert patient != definition
    arn = saga.client.create_state_machine(name="order-saga-patient", definition=patient, roleArn=f"arn:aws:iam::{ACCOUNT}:role/saga")["stateMachineArn"]
    saga = SimpleNamespace(**{**vars(saga), "arn": arn})
    order = place(saga)
    order_id, before = order["order"]["order_id"], stock(saga)
    stuck = start(saga, order)
    token = merchant_request(saga, order_id)  # stock taken, payment authorized, waiting for the merchant
    expired = {"Error": "OrderExpired", "Cause": "the order passed its deadline"}
    name = f"{order_id}-reconciled"
    execution = saga.client.start_execution(stateMachineArn=saga.arn, name=name, input=saga_input(saga.store.get(order_id), compensate=expired))["executionArn"]
    assert finish(saga, execution)["status"] == "SUCCEEDED"
    assert path(saga, execution) == [
        "Start",
        "Compensation requested",
        "Compensate everything",
        "RecordCompensating",
        "Compensate from",
        "VoidPayment",
        "ReleaseStock",
        "RecordCompensated",
        "Compensated",
    ]
    record = saga.store.get(order_id)
    assert (record["status"], record["reason"]) == ("COMPENSATED", "the order passed its deadline")
    assert stock(saga) == before and payment_status(saga, order_id) == "VOIDED"
    # The stuck saga's merchant answers late: its confirmation is refused and its own compensation changes nothing.
    saga.client.send_task_success(taskToken=token, output="{}")
    assert finish(saga, stuck)["status"] == "SUCCEEDED"
    assert saga.store.get(order_id)["status"] == "COMPENSATED" and stock(saga) == before and payment_status(saga, order_id) == "VOIDED"
