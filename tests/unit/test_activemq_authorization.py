"""The ActiveMQ authorization map from ``activemq_configuration``, enforced by a real ActiveMQ broker.

The configuration gives the application group ``invoices`` to write and
``orders`` to read. The broker (Debian's ActiveMQ 5.17, started by
``tests/local_activemq.py``) runs it with three users: ``app`` (group
``application``), ``admin`` (group ``admin``) and ``console`` (group
``activemq-webconsole``). Refusals are the broker's own: an ERROR frame
answering the SEND or SUBSCRIBE, whose message is checked word for word.

Without ActiveMQ the tests are skipped (``scripts/start_activemq.sh`` installs
it); they fail when ``CI`` is set.
"""

import uuid

import pytest

from messaging_constructs.message_broker import activemq_configuration
from tests.local_activemq import Refused, broker_for

pytest_plugins = ("tests.local_activemq",)


@pytest.fixture(scope="module")
def amazon_mq_configuration() -> str:
    return activemq_configuration({"invoices": {"write"}, "orders": {"read"}})


def _body() -> str:
    return f"message {uuid.uuid4().hex}"


def test_the_broker_runs_the_configuration(activemq):
    assert "Apache ActiveMQ 5." in activemq.log and ") started" in activemq.log
    assert " ERROR " not in activemq.log


def test_the_application_can_send_to_a_queue_it_writes(activemq):
    """The application is the queue's first client and may create nothing: the broker made the queue at start."""
    body = _body()
    with activemq.connect("app") as app:
        app.send("invoices", body)
    with activemq.connect("admin") as admin:
        admin.subscribe("invoices")
        assert admin.receive() == body


def test_the_application_can_consume_a_queue_it_reads(activemq):
    body = _body()
    with activemq.connect("admin") as admin:
        admin.send("orders", body)
    with activemq.connect("app") as app:
        app.subscribe("orders")
        assert app.receive() == body


def test_the_application_cannot_send_to_a_dead_letter_queue(activemq):
    with activemq.connect("app") as app, pytest.raises(Refused, match=r"^User app is not authorized to write to: queue://DLQ\.invoices$"):
        app.send("DLQ.invoices", _body())


def test_the_application_cannot_consume_a_dead_letter_queue(activemq):
    with activemq.connect("app") as app, pytest.raises(Refused, match=r"^User app is not authorized to read from: queue://DLQ\.orders$"):
        app.subscribe("DLQ.orders")


def test_the_application_cannot_send_to_a_queue_it_was_not_given(activemq):
    with activemq.connect("app") as app, pytest.raises(Refused, match=r"^User app is not authorized to write to: queue://other$"):
        app.send("other", _body())


def test_the_application_cannot_consume_a_queue_it_was_not_given(activemq):
    with activemq.connect("app") as app, pytest.raises(Refused, match=r"^User app is not authorized to read from: queue://other$"):
        app.subscribe("other")


def test_write_access_does_not_let_the_application_consume(activemq):
    with activemq.connect("app") as app, pytest.raises(Refused, match=r"^User app is not authorized to read from: queue://invoices$"):
        app.subscribe("invoices")


def test_read_access_does_not_let_the_application_send(activemq):
    with activemq.connect("app") as app, pytest.raises(Refused, match=r"^User app is not authorized to write to: queue://orders$"):
        app.send("orders", _body())


def test_the_application_cannot_publish_to_a_topic(activemq):
    with activemq.connect("app") as app, pytest.raises(Refused, match=r"^User app is not authorized to write to: topic://prices$"):
        app.publish("prices", _body())


@pytest.mark.parametrize("queue", ["DLQ.invoices", "DLQ.orders", "other"])
def test_the_administrator_can_send_to_and_consume_any_queue(activemq, queue):
    body = _body()
    with activemq.connect("admin") as admin:
        admin.send(queue, body)
        admin.subscribe(queue)
        assert admin.receive() == body


def test_the_web_console_group_can_send_to_and_consume_a_dead_letter_queue(activemq):
    body = _body()
    with activemq.connect("console") as console:
        console.send("DLQ.payments", body)
        console.subscribe("DLQ.payments")
        assert console.receive() == body


# ActiveMQ unites the rights of every entry a name matches, so a wildcard name would match the application's own
# queues (and the advisory topics); the application may create nothing, so such a name gets it nothing. Were it
# wrong, the wildcard-named destination would outlive the test and reach other queues' consumers: a broker of its own.
@pytest.fixture(scope="module")
def wildcard_activemq(amazon_mq_configuration):
    with broker_for(amazon_mq_configuration) as broker:
        yield broker


def test_the_application_cannot_send_to_a_wildcard_named_queue(wildcard_activemq):
    with wildcard_activemq.connect("app") as app, pytest.raises(Refused, match=r"^User app is not authorized to (write to|create): queue://\*$"):
        app.send("*", _body())


def test_the_application_cannot_publish_to_a_wildcard_named_topic(wildcard_activemq):
    with wildcard_activemq.connect("app") as app, pytest.raises(Refused, match=r"^User app is not authorized to write to: topic://\*\.\*$"):
        app.publish("*.*", _body())
