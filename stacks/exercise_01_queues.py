"""Exercise01Queues: order events fanned out over SNS to SQS consumers, standard and FIFO."""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_sns as sns
from constructs import Construct

from messaging_constructs import IdempotencyTable, Profile, QueueEventSource, SecureTopic

from ._blueprint import Blueprint

#: Orders at or above this total go to fraud review (a filter on the message body).
FRAUD_REVIEW_THRESHOLD = 500


class Exercise01QueuesStack(Stack):
    """Order events: a producer publishes in batches to a standard and a FIFO topic.

    - ``orders`` (standard) fans out to three queues: ``billing`` (attribute
      filter ``event_type = OrderPlaced``, idempotent consumer keyed on the
      order id), ``fraud-review`` (body filter ``total >= 500``) and ``audit``
      (every event);
    - ``orders.fifo`` delivers to ``ledger.fifo`` with one message group per
      customer, consumed in order;
    - every queue has a DLQ, every subscription a DLQ, every function an
      asynchronous DLQ; all alarm to one topic and show on one dashboard.
    """

    def __init__(self, scope: Construct, construct_id: str, *, profile: Profile | None = None, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        blueprint = Blueprint.create(self, profile or Profile.of(self), interface_endpoints=[ec2.InterfaceVpcEndpointAwsService.SNS])
        common, dashboard, function, queue = blueprint.common, blueprint.dashboard, blueprint.function, blueprint.queue

        orders = SecureTopic(self, "Orders", **common)
        orders_fifo = SecureTopic(self, "OrdersFifo", fifo=True, high_throughput=True, **common)
        dashboard.monitor(orders).monitor(orders_fifo)

        billing = queue("Billing")
        fraud_review = queue("FraudReview")
        audit = queue("Audit")
        ledger = queue("Ledger", fifo=True, content_based_deduplication=False, high_throughput=True)

        orders.subscribe_queue(billing, filter_policy={"event_type": sns.SubscriptionFilter.string_filter(allowlist=["OrderPlaced"])})
        orders.subscribe_queue(
            fraud_review,
            filter_policy={"total": sns.SubscriptionFilter.numeric_filter(greater_than_or_equal_to=FRAUD_REVIEW_THRESHOLD)},
            filter_on_body=True,
        )
        orders.subscribe_queue(audit)
        orders_fifo.subscribe_queue(ledger)

        producer = function(
            "Producer",
            "order_producer",
            environment={"TOPIC_ARN": orders.topic.topic_arn, "FIFO_TOPIC_ARN": orders_fifo.topic.topic_arn},
        )
        orders.grant_publish(producer)
        orders_fifo.grant_publish(producer)

        idempotency = IdempotencyTable(self, "IdempotencyTable", **common)
        dashboard.monitor(idempotency)
        billing_consumer = function("BillingConsumer", "billing_consumer", environment={"IDEMPOTENCY_TABLE_NAME": idempotency.table.table_name})
        idempotency.grant_idempotency(billing_consumer)
        QueueEventSource(self, "BillingSource", consumer=billing_consumer, queue=billing, max_concurrency=5)

        fraud_review_consumer = function("FraudReviewConsumer", "fraud_review_consumer", environment={"REVIEW_THRESHOLD": str(FRAUD_REVIEW_THRESHOLD)})
        QueueEventSource(self, "FraudReviewSource", consumer=fraud_review_consumer, queue=fraud_review, max_concurrency=2)
        audit_consumer = function("AuditConsumer", "audit_consumer")
        QueueEventSource(self, "AuditSource", consumer=audit_consumer, queue=audit, batch_size=100, max_batching_window=Duration.seconds(5), max_concurrency=2)
        QueueEventSource(self, "LedgerSource", consumer=function("LedgerConsumer", "ledger_consumer"), queue=ledger, max_concurrency=2)

        CfnOutput(self, "ProducerFunctionName", value=producer.function.function_name)
        CfnOutput(self, "AlarmTopicArn", value=blueprint.alarms.topic_arn)
        for name, q in (("Billing", billing), ("FraudReview", fraud_review), ("Audit", audit), ("Ledger", ledger)):
            CfnOutput(self, f"{name}QueueUrl", value=q.queue.queue_url)
            CfnOutput(self, f"{name}DeadLetterQueueUrl", value=q.dead_letter_queue.queue_url)
