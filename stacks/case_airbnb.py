"""CaseAirbnb: bookings on an event-sourced ledger, paid by an idempotent saga, every event published through an outbox."""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from constructs import Construct

from messaging_constructs import EventBus, EventStore, Invoke, Outbox, Profile, Projection, QueueEventSource, Saga, SagaStep, StateTable
from messaging_runtime.contracts.bookings import BOOKING_CHANGED, SOURCE

from ._blueprint import Blueprint
from ._paths import lambda_code

#: The payment steps' errors worth another attempt (with backoff): the provider's timeouts and throttles, another
#: attempt holding the request's lease, a lost race on the booking. Any other error of a step is final: compensate.
RETRYABLE_ERRORS = ("ProviderTimeout", "ProviderThrottled", "PaymentInProgress", "BookingConflict")
#: A payment request's lease: longer than the payments function's timeout (30 s), so a live call is never overtaken.
LEASE = Duration.seconds(35)
#: Retries of a step on transient and retryable errors: backoff from 1 s doubling to 30 s with full jitter, about 90 s
#: in all on average, so that a payments function that died holding the lease is retried after the lease lapses (and
#: the provider's idempotency key gives back the charge it made) instead of the booking failing and being refunded.
STEP_ATTEMPTS = 10


class CaseAirbnbStack(Stack):
    """Bookings kept as events, charged once whatever is retried, with a ledger that can be rebuilt from the events.

    - the booking command function (Lambda Invoke API) appends each booking's events to the :class:`EventStore`
      with optimistic concurrency, and in the same transaction writes the event to the booking's :class:`Outbox`
      slot and a command marker: a command is idempotent on its key;
    - the outbox pipe puts every ``BookingChanged`` on the bus, in order per booking; a rule sends requests, and
      cancellations of confirmed bookings, to the saga-starts queue; the starter runs one saga per booking and
      purpose, the execution name being the key;
    - the :class:`Saga` charges the guest (the payments function, idempotency key per request, retryable errors
      retried with backoff, final ones straight to compensation) and confirms the booking; a failure records it,
      refunds whatever was charged and records the refund;
    - a :class:`Projection` keeps the ledger (per booking: charged, refunded, balance) from the store's stream, and
      its rebuild replays the whole store into a fresh table.
    """

    def __init__(self, scope: Construct, construct_id: str, *, profile: Profile | None = None, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        profile = profile or Profile.of(self)
        blueprint = Blueprint.create(self, profile, interface_endpoints=[ec2.InterfaceVpcEndpointAwsService.STEP_FUNCTIONS])
        common, dashboard = blueprint.common, blueprint.dashboard

        store = EventStore(self, "EventStore", **common)
        bus = EventBus(self, "Bus", **common)
        outbox = Outbox(self, "Outbox", bus=bus, event_source=SOURCE, network=blueprint.network, **common)
        requests = StateTable(self, "PaymentRequests", partition_key="pk", **common)
        dashboard.monitor(store).monitor(bus).monitor(outbox).monitor(requests)

        bookings = blueprint.function(
            "BookingCommands",
            "case_airbnb_bookings",
            environment={"EVENT_STORE_TABLE": store.table.table_name, "OUTBOX_TABLE_NAME": outbox.table.table_name},
        )
        store.grant_read(bookings)
        store.grant_append(bookings)
        outbox.grant_write(bookings)
        store.add_conflict_alarm("CommandConflictsAlarm", bookings.metric("ConcurrencyConflicts"))

        payments = blueprint.function(
            "Payments",
            "case_airbnb_payments",
            environment={"REQUESTS_TABLE_NAME": requests.table.table_name, "LEASE_SECONDS": str(int(LEASE.to_seconds()))},
        )
        requests.grant_items(payments, "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem")

        booking = {"booking.$": "$.booking"}
        booking_id = {"booking_id.$": "$.booking.booking_id"}
        saga = Saga(
            self,
            "PaymentSaga",
            steps=[
                SagaStep(
                    Invoke("ChargeGuest", payments, {"action": "charge", **booking}),
                    Invoke("RefundGuest", payments, {"action": "refund", **booking}),
                ),
                SagaStep(Invoke("ConfirmBooking", bookings, {"command": "confirm", **booking_id, "charge.$": "$.results.ChargeGuest.result"})),
            ],
            on_failure=Invoke("RecordPaymentFailed", bookings, {"command": "fail", **booking_id, "error.$": "$.error"}),
            on_compensated=Invoke("RecordRefund", bookings, {"command": "record_refund", **booking_id, "refund.$": "$.results.RefundGuest.result"}),
            retryable_errors=RETRYABLE_ERRORS,
            transient_attempts=STEP_ATTEMPTS,
            timeout=Duration.hours(1),
            **common,
        )
        dashboard.monitor(saga)

        saga_starts = blueprint.queue("SagaStarts")
        starter = blueprint.function("SagaStarter", "case_airbnb_saga_starter", environment={"STATE_MACHINE_ARN": saga.state_machine.state_machine_arn})
        saga.grant_start_execution(starter)
        QueueEventSource(self, "SagaStartsSource", consumer=starter, queue=saga_starts, max_concurrency=5)
        bus.add_rule(
            "ChargesRule",
            description="Booking requests, to the saga starter (a charge saga each)",
            event_pattern=events.EventPattern(source=[SOURCE], detail_type=[BOOKING_CHANGED.name], detail={"type": ["BookingRequested"]}),
            target=saga_starts,
        )
        bus.add_rule(
            "RefundsRule",
            description="Cancellations of confirmed bookings, to the saga starter (a refund saga each)",
            event_pattern=events.EventPattern(
                source=[SOURCE], detail_type=[BOOKING_CHANGED.name], detail={"type": ["BookingCancelled"], "previous_status": ["CONFIRMED"]}
            ),
            target=saga_starts,
        )

        ledger = Projection(
            self,
            "Ledger",
            event_store=store,
            code_path=lambda_code("case_airbnb_ledger"),
            service_name="case_airbnb_ledger",
            read_model_key="booking_id",
            read_model_actions=["dynamodb:UpdateItem"],  # the projection and the rebuild only upsert conditionally
            network=blueprint.network,
            **common,
        )
        rebuild = ledger.add_rebuild(handler="ledger_rebuild.lambda_handler")
        dashboard.monitor(ledger)

        CfnOutput(self, "BookingCommandsFunctionName", value=bookings.function.function_name)
        CfnOutput(self, "StateMachineArn", value=saga.state_machine.state_machine_arn)
        CfnOutput(self, "LedgerTableName", value=ledger.read_model.table_name)
        CfnOutput(self, "RebuildFunctionName", value=rebuild.function.function_name)
        CfnOutput(self, "BusName", value=bus.bus.event_bus_name)
        CfnOutput(self, "AlarmTopicArn", value=blueprint.alarms.topic_arn)
