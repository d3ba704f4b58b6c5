"""The invoice consumer: each ERP invoice event on the bus once, bad messages fail the whole batch by name."""

import base64
import dataclasses
import hashlib
import json

import boto3
import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from messaging_runtime.amazon_mq import BatchFailed
from messaging_runtime.contracts.invoices import InvoiceV1
from tests.handlers.conftest import FUNCTION_NAME
from tests.handlers.mq_events import OMIT, ActiveMQEvents, new_invoice

FAST = settings(max_examples=30, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
TABLE_NAME = "invoice-idempotency"
BUS_NAME = "legacy-bridge"
BASE_DELAY = 0.05


@pytest.fixture(scope="module")
def world(moto_module, create_idempotency_table, event_bus_with_queues):
    """The idempotency table and the bus, with a queue behind a rule on the ERP source to see what is forwarded."""
    create_idempotency_table(TABLE_NAME)
    bus = event_bus_with_queues(BUS_NAME, {"invoices": {"source": ["legacy.erp"]}})
    moto_module.setenv("IDEMPOTENCY_TABLE_NAME", TABLE_NAME)
    moto_module.setenv("EVENT_BUS_NAME", bus.arn)
    moto_module.setenv("PUT_RETRY_BASE_DELAY_SECONDS", str(BASE_DELAY))
    return bus


@pytest.fixture(scope="module")
def loaded(world, load_handler):
    module = load_handler("invoice_consumer")
    module.pauses = []
    module.bus.retry = dataclasses.replace(module.bus.retry, sleep=module.pauses.append)
    module.calls = []

    def count(params, **_):
        module.calls.append(params["Entries"])

    module.eventbridge.meta.events.register("before-parameter-build.events.PutEvents", count)
    return module


@pytest.fixture
def consumer(loaded, world, received_events, capsys):
    """The handler, with no PutEvents call, pause, forwarded event or printed metric left over from another test."""
    loaded.calls.clear()
    loaded.pauses.clear()
    received_events(world.queue_urls["invoices"])
    capsys.readouterr()
    return loaded


@pytest.fixture
def forwarded(world, received_events):
    """``forwarded()``: the events put on the bus since the last call (taken off the queue)."""
    return lambda: received_events(world.queue_urls["invoices"])


@pytest.fixture(scope="module")
def amq():
    return ActiveMQEvents()


def metric_totals(output):
    """{metric name: sum of values} over the EMF lines printed."""
    totals = {}
    for line in output.splitlines():
        if '"_aws"' not in line:
            continue
        blob = json.loads(line)
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                values = blob[metric["Name"]]
                totals[metric["Name"]] = totals.get(metric["Name"], 0) + sum(values if isinstance(values, list) else [values])
    return totals


def failing(module, event, context):
    with pytest.raises(BatchFailed) as raised:
        module.lambda_handler(event, context)
    return raised.value


def ids(messages):
    return [message["messageID"] for message in messages]


# --- a good batch --------------------------------------------------------------


def test_a_batch_of_text_and_bytes_messages_is_forwarded_to_the_bus(consumer, forwarded, amq, lambda_context, capsys):
    issued = new_invoice(status="issued")
    paid = new_invoice(status="paid", amount="0.5", currency="USD", issued_at="2025-03-14T09:26:53+00:00")
    voided = new_invoice(status="voided", amount="1000000")
    messages = [
        amq.invoice_message(issued),
        amq.invoice_message(paid, message_type="jms/bytes-message", properties=None),
        amq.invoice_message(voided, correlation_id="erp-batch-17"),
    ]

    assert consumer.lambda_handler(amq.event(messages), lambda_context) == {"messages": 3}

    events = forwarded()
    assert sorted((e["source"], e["detail-type"], e["detail"]["invoice_id"]) for e in events) == sorted(
        [
            ("legacy.erp", "InvoiceIssued", issued["invoice_id"]),
            ("legacy.erp", "InvoicePaid", paid["invoice_id"]),
            ("legacy.erp", "InvoiceVoided", voided["invoice_id"]),
        ]
    )
    [paid_event] = [e for e in events if e["detail-type"] == "InvoicePaid"]
    assert paid_event["detail"] == {
        "schema_version": 1,
        "invoice_id": paid["invoice_id"],
        "order_id": paid["order_id"],
        "customer_id": paid["customer_id"],
        "amount": "0.5",  # as sent, not a float
        "currency": "USD",
        "status": "paid",
        "issued_at": "2025-03-14T09:26:53.000000Z",
    }
    totals = metric_totals(capsys.readouterr().out)
    assert totals["InvoicesForwarded"] == 3
    assert "DuplicateInvoicesSkipped" not in totals and (totals["RejectedMessages"], totals["FailedMessages"]) == (0, 0)
    assert len(consumer.calls) == 1  # one PutEvents for the three


def test_unknown_fields_are_ignored_and_not_forwarded(consumer, forwarded, amq, lambda_context):
    invoice = new_invoice(erp_internal_ref="X-99")

    consumer.lambda_handler(amq.event([amq.invoice_message(invoice)]), lambda_context)

    [event] = forwarded()
    assert "erp_internal_ref" not in event["detail"]


# --- duplicates -------------------------------------------------------------------


def test_a_redelivered_batch_has_one_effect(consumer, forwarded, amq, lambda_context, capsys):
    event = amq.event([amq.invoice_message(new_invoice(status=status)) for status in ("issued", "paid", "voided")])
    consumer.lambda_handler(event, lambda_context)
    assert len(forwarded()) == 3
    capsys.readouterr()

    assert consumer.lambda_handler(amq.redelivery(event), lambda_context) == {"messages": 3}

    assert forwarded() == []
    totals = metric_totals(capsys.readouterr().out)
    assert totals["DuplicateInvoicesSkipped"] == 3 and "InvoicesForwarded" not in totals


def test_the_same_invoice_event_sent_again_under_a_new_message_id_is_skipped(consumer, forwarded, amq, lambda_context):
    invoice = new_invoice()
    batch = [amq.invoice_message(invoice), amq.invoice_message(invoice)]
    assert batch[0]["messageID"] != batch[1]["messageID"]

    consumer.lambda_handler(amq.event(batch), lambda_context)
    consumer.lambda_handler(amq.event([amq.invoice_message(dict(invoice, amount="999.99"))]), lambda_context)

    assert [e["detail"]["amount"] for e in forwarded()] == [invoice["amount"]]


def test_each_status_of_an_invoice_is_its_own_event(consumer, forwarded, amq, lambda_context):
    invoice = new_invoice()

    for status in ("issued", "paid", "paid", "voided"):
        consumer.lambda_handler(amq.event([amq.invoice_message(dict(invoice, status=status))]), lambda_context)

    assert [e["detail-type"] for e in forwarded()] == ["InvoiceIssued", "InvoicePaid", "InvoiceVoided"]


def test_the_idempotency_record_is_keyed_on_invoice_and_status_and_expires(consumer, forwarded, amq, lambda_context):
    invoice = new_invoice(status="paid")

    consumer.lambda_handler(amq.event([amq.invoice_message(invoice)]), lambda_context)

    [event] = forwarded()
    items = boto3.client("dynamodb").scan(TableName=TABLE_NAME)["Items"]
    [item] = [item for item in items if event["id"] in item.get("data", {}).get("S", "")]
    assert item["status"]["S"] == "COMPLETED"
    assert json.loads(item["data"]["S"]) == {"event_id": event["id"]}
    # The key @idempotent_function gave the records when each event was forwarded on its own (the module is "handler" on Lambda).
    digest = hashlib.md5(json.dumps(f"{invoice['invoice_id']}/paid").encode(), usedforsecurity=False).hexdigest()
    assert item["id"]["S"] == f"{FUNCTION_NAME}.handler.forward_once#{digest}"
    assert int(item["expiration"]["N"]) > 0


# --- bad input ------------------------------------------------------------------

BAD_MESSAGES = {
    "not base64": (dict(data="eyJzY2hlbWFfdmVyc2lvbiI6!!"), "data is not base64"),
    "bytes not UTF-8": (dict(body=b"\xac\xed\x00\x05sr", message_type="jms/bytes-message"), "body is not UTF-8 text"),
    "not JSON": (dict(body="invoice inv-1 paid"), "body: Invalid JSON: expected value at line 1 column 1"),
    "JSON but not an object": (dict(body='"inv-1"'), "body: Input should be an object"),
    "a list": (dict(body="[1, 2]"), "body: Input should be an object"),
    "a number": (dict(body="42"), "body: Input should be an object"),
    "null": (dict(body="null"), "body: Input should be an object"),
    "deeply nested": (dict(body="[" * 1000 + "]" * 1000), "body: Invalid JSON: recursion limit exceeded"),
    "deeply nested field": (dict(body='{"schema_version": 1, "amount": ' + "[" * 1000 + "]" * 1000 + "}"), "body: Invalid JSON: recursion limit"),
    "unknown status": (dict(body=new_invoice(status="refunded")), "status: Input should be 'issued', 'paid' or 'voided'"),
    "amount as a number": (dict(body=new_invoice(amount=123.45)), "amount: Value error, must be a decimal written as text, such as 123.45"),
    "negative amount": (dict(body=new_invoice(amount="-5.00")), "amount: Value error, must be a decimal written as text, such as 123.45"),
    "lower-case currency": (dict(body=new_invoice(currency="eur")), "currency: String should match pattern"),
    "missing customer": (dict(body=new_invoice(customer_id=OMIT)), "customer_id: Field required"),
    "time not in UTC": (dict(body=new_invoice(issued_at="2025-03-14T09:26:53-05:00")), "issued_at: Value error, must be a UTC time"),
    "unsupported version": (dict(body=new_invoice(schema_version=2)), "schema_version: Input should be 1"),
    "version as a float": (dict(body=new_invoice(schema_version=1.0)), "schema_version: Value error, must be a whole number"),
    "map message": (dict(body=new_invoice(), message_type="jms/map-message"), "message type 'jms/map-message' is not supported"),
    "object message": (dict(body=new_invoice(), message_type="jms/object-message"), "message type 'jms/object-message' is not supported"),
    "no message type": (dict(body=new_invoice(), message_type=None), "message type None is not supported"),
}


@pytest.mark.parametrize("kind", sorted(BAD_MESSAGES))
def test_a_bad_message_fails_the_batch_by_its_id_and_the_good_ones_are_forwarded(consumer, forwarded, amq, lambda_context, capsys, log_records, kind):
    logs = log_records(consumer)
    options, reason = BAD_MESSAGES[kind]
    options = dict(options)
    body = options.pop("body", b"")
    good = [new_invoice(), new_invoice(status="paid")]
    bad = amq.message(json.dumps(body) if isinstance(body, dict) else body, **options)
    event = amq.event([amq.invoice_message(good[0]), bad, amq.invoice_message(good[1])])

    error = failing(consumer, event, lambda_context)

    assert error.failed_message_ids == [bad["messageID"]]
    assert reason in error.failures[0].reason
    assert str(error).startswith(f"1 of 3 messages failed; the broker redelivers the batch: messages[1] ({bad['messageID']}): ")
    assert sorted(e["detail"]["invoice_id"] for e in forwarded()) == sorted(invoice["invoice_id"] for invoice in good)
    totals = metric_totals(capsys.readouterr().out)
    assert (totals["RejectedMessages"], totals["FailedMessages"], totals["InvoicesForwarded"]) == (1, 1, 2)
    [logged] = [r for r in logs if r.getMessage() == "Message failed"]
    assert (logged.levelname, logged.message_id, logged.place, logged.queue, logged.redelivered) == ("ERROR", bad["messageID"], "messages[1]", amq.queue, False)
    assert logged.reason == error.failures[0].reason


def test_a_batch_with_many_bad_messages_names_exactly_those_in_order(consumer, forwarded, amq, lambda_context):
    bad = [
        amq.message(data="not base64 at all"),
        amq.message(json.dumps(new_invoice(schema_version=0))),
        amq.message(json.dumps(new_invoice()), message_type="jms/stream-message"),
    ]
    good = [amq.invoice_message(new_invoice()) for _ in range(3)]
    batch = [good[0], bad[0], bad[1], good[1], good[2], bad[2]]

    error = failing(consumer, amq.event(batch), lambda_context)

    assert error.failed_message_ids == ids(bad)
    assert str(error).startswith("3 of 6 messages failed")
    assert len(forwarded()) == 3

    # The broker redelivers the batch as it is: the same messages fail, nothing is forwarded twice.
    again = failing(consumer, amq.redelivery(amq.event(batch)), lambda_context)
    assert again.failed_message_ids == ids(bad)
    assert forwarded() == []


def test_a_message_without_an_id_is_named_by_its_place(consumer, amq, lambda_context):
    anonymous = amq.message("nope")
    del anonymous["messageID"]

    error = failing(consumer, amq.event([amq.invoice_message(new_invoice()), anonymous]), lambda_context)

    assert error.failed_message_ids == ["messages[1]"]


def test_any_exception_while_reading_a_message_is_its_rejection(consumer, forwarded, amq, lambda_context, monkeypatch, capsys):
    # The contract reads JSON text in one pass and falls back to decoded values: fail both ways.
    def failing_on_it(real):
        def validate(document):
            if "inv-unreadable" in str(document):
                raise RecursionError("maximum recursion depth exceeded")
            return real(document)

        return validate

    for method in ("model_validate", "model_validate_json"):
        monkeypatch.setattr(InvoiceV1.Consumer, method, failing_on_it(getattr(InvoiceV1.Consumer, method)))
    bad = amq.invoice_message(new_invoice(invoice_id="inv-unreadable"))
    capsys.readouterr()

    error = failing(consumer, amq.event([bad, amq.invoice_message(new_invoice())]), lambda_context)

    assert [(f.message_id, f.reason) for f in error.failures] == [
        (bad["messageID"], "the body cannot be read: RecursionError: maximum recursion depth exceeded")
    ]
    assert len(forwarded()) == 1
    assert metric_totals(capsys.readouterr().out)["RejectedMessages"] == 1


@pytest.mark.parametrize(
    ("odd", "reason"),
    [("an invoice", "not a message object (str)"), (None, "not a message object (NoneType)"), (["messageID", "ID:1"], "not a message object (list)")],
    ids=["text", "null", "list"],
)
def test_a_message_lambda_would_never_send_fails_the_batch_by_its_place_with_a_clear_reason(consumer, forwarded, amq, lambda_context, capsys, odd, reason):
    capsys.readouterr()

    error = failing(consumer, amq.event([amq.invoice_message(new_invoice()), odd]), lambda_context)

    assert [(f.label, f.reason) for f in error.failures] == [("messages[1]", reason)]
    assert len(forwarded()) == 1
    assert metric_totals(capsys.readouterr().out)["RejectedMessages"] == 1


@pytest.mark.parametrize("event", [{}, {"Records": []}, {"eventSource": "aws:rmq", "rmqMessagesByQueue": {}}, {"messages": {}}])
def test_an_event_that_is_not_from_activemq_is_refused(consumer, lambda_context, event):
    with pytest.raises(ValueError, match="not an Amazon MQ for ActiveMQ event"):
        consumer.lambda_handler(event, lambda_context)


# Values wrong for each field (None and leaving the field out are tried too).
WRONG_VALUES = {
    "schema_version": [0, 2, "1", 1.5, True],
    "invoice_id": ["", "inv-", "42", 42],
    "order_id": ["", "o-", 7],
    "customer_id": ["c-", "customer"],
    "amount": [-1, 12.5, "1,00", "12.345678", "", "1e3", "-0.01"],
    "currency": ["eur", "EURO", 978],
    "status": ["refunded", "", "PAID"],
    "issued_at": ["yesterday", "2025-03-14", 1741942800, "2025-03-14T09:26:53+01:00"],
}


@st.composite
def broken_invoice(draw):
    invoice = new_invoice()
    field = draw(st.sampled_from(sorted(WRONG_VALUES)))
    if draw(st.booleans()):
        del invoice[field]
    else:
        invoice[field] = draw(st.sampled_from([None, *WRONG_VALUES[field]]))
    return json.dumps(invoice).encode()


@FAST
@given(data=st.data())
def test_no_message_is_lost_whatever_the_bodies(consumer, forwarded, amq, lambda_context, data):
    good = data.draw(st.lists(st.sampled_from(["issued", "paid", "voided"]).map(lambda status: new_invoice(status=status)), max_size=4))
    junk = st.one_of(st.binary(max_size=40), st.text(max_size=40).map(str.encode), broken_invoice())
    bad_bodies = data.draw(st.lists(junk, min_size=1, max_size=4))
    items = data.draw(st.permutations([(True, amq.invoice_message(invoice)) for invoice in good] + [(False, amq.message(raw)) for raw in bad_bodies]))

    error = failing(consumer, amq.event([message for _, message in items]), lambda_context)

    assert error.failed_message_ids == [message["messageID"] for is_good, message in items if not is_good]
    assert sorted(e["detail"]["invoice_id"] for e in forwarded()) == sorted(invoice["invoice_id"] for invoice in good)


# --- forwarding when EventBridge fails ---------------------------------------------


def fail_put_events(module, monkeypatch, results, only=lambda entry: True):
    """Answer the entries ``only`` picks from ``results`` (one result per entry attempt) while it lasts; the rest go through for real."""
    real_put_events = module.eventbridge.put_events
    pending = list(results)

    def put_events(**params):
        module.calls.append(params["Entries"])
        failing = {i: pending.pop(0) for i, entry in enumerate(params["Entries"]) if only(entry) and pending}
        passing = [entry for i, entry in enumerate(params["Entries"]) if i not in failing]
        real = iter(real_put_events(Entries=passing)["Entries"] if passing else [])
        if passing:
            module.calls.pop()  # the real call counted itself
        return {"FailedEntryCount": len(failing), "Entries": [failing[i] if i in failing else next(real) for i in range(len(params["Entries"]))]}

    monkeypatch.setattr(module.eventbridge, "put_events", put_events)


THROTTLED = {"ErrorCode": "ThrottlingException", "ErrorMessage": "Rate exceeded"}


def test_a_put_events_failure_fails_the_batch_and_the_redelivery_forwards_once(consumer, forwarded, amq, lambda_context, monkeypatch, capsys):
    unlucky, lucky = new_invoice(), new_invoice()
    event = amq.event([amq.invoice_message(unlucky), amq.invoice_message(lucky)])
    fail_put_events(consumer, monkeypatch, [THROTTLED] * 3, only=lambda entry: unlucky["invoice_id"] in entry["Detail"])

    error = failing(consumer, event, lambda_context)

    assert error.failed_message_ids == [event["messages"][0]["messageID"]]
    assert "ForwardFailed: PutEvents did not take the InvoiceIssued event after 3 attempt(s): ThrottlingException: Rate exceeded" in str(error)
    assert len(consumer.pauses) == 2 and all(0 <= pause <= 2 * BASE_DELAY for pause in consumer.pauses)
    assert [e["detail"]["invoice_id"] for e in forwarded()] == [lucky["invoice_id"]]
    statuses = [item["status"]["S"] for item in boto3.client("dynamodb").scan(TableName=TABLE_NAME)["Items"]]
    assert "INPROGRESS" not in statuses  # nothing left to block the redelivery
    capsys.readouterr()

    # The broker redelivers the whole batch; EventBridge takes the event this time.
    assert consumer.lambda_handler(amq.redelivery(event), lambda_context) == {"messages": 2}
    assert [e["detail"]["invoice_id"] for e in forwarded()] == [unlucky["invoice_id"]]
    totals = metric_totals(capsys.readouterr().out)
    assert totals["InvoicesForwarded"] == 1 and totals["DuplicateInvoicesSkipped"] == 1

    consumer.lambda_handler(amq.redelivery(event), lambda_context)
    assert forwarded() == []


def test_a_failed_entry_that_gets_through_on_a_retry_succeeds(consumer, forwarded, amq, lambda_context, monkeypatch):
    fail_put_events(consumer, monkeypatch, [{"ErrorCode": "InternalFailure", "ErrorMessage": "Internal Service Failure"}])

    consumer.lambda_handler(amq.event([amq.invoice_message(new_invoice())]), lambda_context)

    assert len(consumer.calls) == 2 and len(consumer.pauses) == 1
    assert len(forwarded()) == 1


def test_a_non_retryable_entry_error_fails_at_once(consumer, amq, lambda_context, monkeypatch):
    fail_put_events(consumer, monkeypatch, [{"ErrorCode": "NotAuthorizedForDetailTypeException", "ErrorMessage": "not allowed"}])

    error = failing(consumer, amq.event([amq.invoice_message(new_invoice(status="voided"))]), lambda_context)

    assert len(consumer.calls) == 1 and consumer.pauses == []
    assert "InvoiceVoided event after 1 attempt(s): NotAuthorizedForDetailTypeException: not allowed" in error.failures[0].reason


def test_a_failing_call_fails_its_message_and_the_redelivery_forwards(consumer, forwarded, amq, lambda_context, monkeypatch):
    real_put_events = consumer.eventbridge.put_events

    def refuse(**params):
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "denied"}}, "PutEvents")

    monkeypatch.setattr(consumer.eventbridge, "put_events", refuse)
    event = amq.event([amq.invoice_message(new_invoice())])

    error = failing(consumer, event, lambda_context)

    assert error.failures[0].reason == "ForwardFailed: PutEvents did not take the InvoiceIssued event after 1 attempt(s): AccessDeniedException: denied"
    statuses = [item["status"]["S"] for item in boto3.client("dynamodb").scan(TableName=TABLE_NAME)["Items"]]
    assert "INPROGRESS" not in statuses
    monkeypatch.setattr(consumer.eventbridge, "put_events", real_put_events)
    consumer.lambda_handler(amq.redelivery(event), lambda_context)
    assert len(forwarded()) == 1


def test_the_events_of_a_batch_go_on_the_bus_ten_per_call(consumer, forwarded, amq, lambda_context, capsys):
    invoices = [new_invoice(status=("issued", "paid", "voided")[i % 3]) for i in range(25)]

    assert consumer.lambda_handler(amq.event([amq.invoice_message(invoice) for invoice in invoices]), lambda_context) == {"messages": 25}

    assert [len(call) for call in consumer.calls] == [10, 10, 5]
    assert sorted(e["detail"]["invoice_id"] for e in forwarded()) == sorted(invoice["invoice_id"] for invoice in invoices)
    totals = metric_totals(capsys.readouterr().out)
    assert (totals["InvoicesForwarded"], totals["FailedMessages"]) == (25, 0)


def test_an_invoice_event_twice_in_a_failing_batch_is_forwarded_once_on_its_redelivery(consumer, forwarded, amq, lambda_context, monkeypatch):
    invoice = new_invoice()
    event = amq.event([amq.invoice_message(invoice), amq.invoice_message(invoice)])
    fail_put_events(consumer, monkeypatch, [{"ErrorCode": "InternalFailure", "ErrorMessage": "down"}] * 3)

    error = failing(consumer, event, lambda_context)

    assert error.failed_message_ids == [event["messages"][0]["messageID"]]
    assert [len(call) for call in consumer.calls] == [1, 1, 1]  # one entry for the two messages
    assert forwarded() == []
    consumer.lambda_handler(amq.redelivery(event), lambda_context)
    assert [e["detail"]["invoice_id"] for e in forwarded()] == [invoice["invoice_id"]]


def test_an_invoice_event_another_invocation_is_forwarding_fails_its_message(consumer, forwarded, amq, lambda_context):
    busy, free = new_invoice(), new_invoice()
    consumer.persistence_layer.save_inprogress(data=f"{busy['invoice_id']}/issued", remaining_time_in_millis=60_000)
    event = amq.event([amq.invoice_message(busy), amq.invoice_message(free)])

    error = failing(consumer, event, lambda_context)

    assert [(f.label, f.reason) for f in error.failures] == [
        (
            event["messages"][0]["messageID"],
            f"IdempotencyAlreadyInProgressError: {busy['invoice_id']}/issued is being handled by another invocation (its record is INPROGRESS)",
        )
    ]
    assert [e["detail"]["invoice_id"] for e in forwarded()] == [free["invoice_id"]]


def test_the_message_data_is_the_base64_of_the_body(amq):
    invoice = new_invoice()
    message = amq.invoice_message(invoice)
    assert json.loads(base64.b64decode(message["data"])) == invoice
    assert message["messageID"].startswith(f"ID:{amq.broker_id}-1.mq.us-east-1.amazonaws.com-")
    assert message["destination"] == {"physicalName": "erp.invoices"}
