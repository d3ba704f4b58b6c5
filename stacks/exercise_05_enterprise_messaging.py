"""Exercise05EnterpriseMessaging: legacy AMQP and STOMP systems on Amazon MQ, bridged to EventBridge."""

from __future__ import annotations

import json

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from constructs import Construct

from messaging_constructs import BrokerEngine, EventBus, HandlerFunction, IdempotencyTable, MessageBroker, MqEventSource, Profile, StateTable

from ._blueprint import Blueprint

VIRTUAL_HOST = "/"
SHIPMENTS_EXCHANGE = "shipments"
SHIPMENT_QUEUE = "shipment-updates"
QUOTE_QUEUE = "quote-requests"
INVOICE_QUEUE = "invoices"
DEAD_LETTER_EXCHANGE = "dead-letter"
#: Redeliveries before RabbitMQ dead-letters a message (quorum queues count them).
DELIVERY_LIMIT = 5
WAREHOUSE_SOURCE = "legacy.warehouse"
ERP_SOURCE = "legacy.erp"

#: What the topology function declares in RabbitMQ (Amazon MQ creates only the administrator).
TOPOLOGY = {
    "vhost": VIRTUAL_HOST,
    # The application user publishes to the shipments exchange and, by queue name, through the default
    # exchange (quote requests and replies); it reads its two queues and direct reply-to; it declares nothing.
    "application_user": {
        "secret_arn_env": "APP_SECRET_ARN",
        "publish_to": [SHIPMENTS_EXCHANGE],
        "consume_from": [SHIPMENT_QUEUE, QUOTE_QUEUE],
        "default_exchange": True,
        "direct_reply_to": True,
    },
    "exchanges": [
        {"name": SHIPMENTS_EXCHANGE, "type": "topic"},
        {"name": DEAD_LETTER_EXCHANGE, "type": "direct"},
    ],
    "queues": [
        *(
            {
                "name": queue,
                "type": "quorum",
                "dead_letter_exchange": DEAD_LETTER_EXCHANGE,
                # Dead letters keep their original routing key unless told otherwise; route them by source queue.
                "dead_letter_routing_key": queue,
                "delivery_limit": DELIVERY_LIMIT,
            }
            for queue in (SHIPMENT_QUEUE, QUOTE_QUEUE)
        ),
        {"name": f"{SHIPMENT_QUEUE}.dead-letter", "type": "quorum"},
        {"name": f"{QUOTE_QUEUE}.dead-letter", "type": "quorum"},
    ],
    "bindings": [
        {"exchange": SHIPMENTS_EXCHANGE, "queue": SHIPMENT_QUEUE, "routing_key": "shipment.#"},
        {"exchange": DEAD_LETTER_EXCHANGE, "queue": f"{SHIPMENT_QUEUE}.dead-letter", "routing_key": SHIPMENT_QUEUE},
        {"exchange": DEAD_LETTER_EXCHANGE, "queue": f"{QUOTE_QUEUE}.dead-letter", "routing_key": QUOTE_QUEUE},
    ],
}


class Exercise05EnterpriseMessagingStack(Stack):
    """A warehouse system on AMQP (RabbitMQ) and an ERP on STOMP/JMS (ActiveMQ), joined to cloud services.

    - two Amazon MQ brokers in an isolated VPC, never public, credentials in
      secrets encrypted with the stack's key, reachable only from the
      functions named for each port;
    - a topology function, run by a CDK trigger after the RabbitMQ broker is
      created, declares the exchanges, quorum queues, a dead-letter policy
      (delivery limit 5) and the application user, through the management API;
    - a shipment publisher (AMQP, publisher confirms, persistent messages)
      and a shipment consumer (event source mapping) that records each
      shipment's latest status in DynamoDB and bridges ``delayed`` ones to
      an EventBridge bus, where a rule feeds a customer-care queue;
    - request-reply over AMQP: a quote requester (direct reply-to,
      correlation id, timeout) and a quote responder on an event source mapping;
    - an invoice publisher (STOMP, persistent, receipts) and an invoice
      consumer that forwards each invoice event to the bus exactly once;
    - every poison message ends in a dead-letter queue on its broker, which alarms.
    """

    def __init__(self, scope: Construct, construct_id: str, *, profile: Profile | None = None, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        blueprint = Blueprint.create(
            self,
            profile or Profile.of(self),
            interface_endpoints=[ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER, ec2.InterfaceVpcEndpointAwsService.EVENTBRIDGE],
            network=True,
        )
        common, dashboard, network = blueprint.common, blueprint.dashboard, blueprint.network
        assert network is not None
        mq_layer = blueprint.layer("mq_clients", "pika and stomp.py")

        warehouse = MessageBroker(self, "Warehouse", engine=BrokerEngine.RABBITMQ, network=network, **common)
        erp = MessageBroker(self, "Erp", engine=BrokerEngine.ACTIVEMQ, network=network, **common)
        bus = EventBus(self, "Bus", **common)

        # --- RabbitMQ topology --------------------------------------------------
        setup = blueprint.function(
            "RabbitTopology",
            "rabbitmq_setup",
            environment={
                "MANAGEMENT_URL": warehouse.console_url,
                "BROKER_ADMIN_SECRET_ARN": warehouse.admin.secret.secret_arn,
                "APP_SECRET_ARN": warehouse.application.secret.secret_arn,
                "TOPOLOGY": json.dumps(TOPOLOGY, sort_keys=True),
            },
            timeout=Duration.minutes(2),
        )
        warehouse.allow_client(setup.function, "console", description="Topology function")
        warehouse.grant_read_credentials(setup, "admin")
        warehouse.grant_read_credentials(setup)
        # After the broker, and after every rule and endpoint the function needs to reach it and Secrets Manager.
        topology = blueprint.trigger(
            "RabbitTopologyTrigger",
            setup,
            after=[warehouse.broker, warehouse.security_group, network.endpoint_security_group, *network.interface_endpoints.values()],
        )

        def amqp_client(construct_id: str, code: str, **environment: str) -> HandlerFunction:
            fn = blueprint.function(
                construct_id,
                code,
                layers=[mq_layer],
                environment={
                    "BROKER_SECRET_ARN": warehouse.application.secret.secret_arn,
                    "BROKER_HOST": warehouse.host,
                    "BROKER_PORT": "5671",
                    "VIRTUAL_HOST": VIRTUAL_HOST,
                    **environment,
                },
            )
            warehouse.allow_client(fn.function, "amqps", description=construct_id)
            warehouse.grant_read_credentials(fn)
            return fn

        # --- shipments: AMQP in, DynamoDB and EventBridge out -------------------
        shipment_publisher = amqp_client("ShipmentPublisher", "shipment_publisher", EXCHANGE_NAME=SHIPMENTS_EXCHANGE)
        shipments = StateTable(self, "Shipments", partition_key="shipment_id", **common)
        shipment_consumer = blueprint.function(
            "ShipmentConsumer",
            "shipment_consumer",
            environment={"SHIPMENTS_TABLE": shipments.table.table_name, "EVENT_BUS_NAME": bus.bus.event_bus_name, "EVENT_SOURCE": WAREHOUSE_SOURCE},
        )
        shipments.grant_items(shipment_consumer, "dynamodb:UpdateItem")
        bus.grant_put_events(shipment_consumer, sources=[WAREHOUSE_SOURCE])
        shipment_source = MqEventSource(self, "ShipmentSource", consumer=shipment_consumer, broker=warehouse, queue=SHIPMENT_QUEUE)
        shipment_source.mapping.node.add_dependency(topology)

        customer_care = blueprint.queue("CustomerCareQueue")
        bus.add_rule(
            "ShipmentDelayedRule",
            description="Delayed shipments, bridged from the warehouse's RabbitMQ",
            event_pattern=events.EventPattern(source=[WAREHOUSE_SOURCE], detail_type=["ShipmentDelayed"]),
            target=customer_care,
        )

        # --- request-reply over AMQP ------------------------------------------
        quote_requester = amqp_client("QuoteRequester", "quote_requester", REQUEST_QUEUE=QUOTE_QUEUE, REPLY_TIMEOUT_SECONDS="10")
        quote_responder = amqp_client("QuoteResponder", "quote_responder")
        quote_source = MqEventSource(self, "QuoteSource", consumer=quote_responder, broker=warehouse, queue=QUOTE_QUEUE, batch_size=1)
        quote_source.mapping.node.add_dependency(topology)

        # --- invoices: STOMP in, EventBridge out ---------------------------------
        invoice_publisher = blueprint.function(
            "InvoicePublisher",
            "invoice_publisher",
            layers=[mq_layer],
            # connect (up to 10 s) plus receipts (up to 10 s) with room to spare
            timeout=Duration.seconds(60),
            environment={
                "BROKER_SECRET_ARN": erp.application.secret.secret_arn,
                # Both instances of an active/standby pair, tried in order.
                "BROKER_HOST": erp.hosts,
                "BROKER_PORT": "61614",
                "QUEUE_NAME": INVOICE_QUEUE,
            },
        )
        erp.allow_client(invoice_publisher.function, "stomp", description="InvoicePublisher")
        erp.allow_application(INVOICE_QUEUE, write=True)
        erp.grant_read_credentials(invoice_publisher)
        idempotency = IdempotencyTable(self, "IdempotencyTable", **common)
        invoice_consumer = blueprint.function(
            "InvoiceConsumer",
            "invoice_consumer",
            environment={"IDEMPOTENCY_TABLE_NAME": idempotency.table.table_name, "EVENT_BUS_NAME": bus.bus.event_bus_name, "EVENT_SOURCE": ERP_SOURCE},
        )
        idempotency.grant_idempotency(invoice_consumer)
        bus.grant_put_events(invoice_consumer, sources=[ERP_SOURCE])
        MqEventSource(self, "InvoiceSource", consumer=invoice_consumer, broker=erp, queue=INVOICE_QUEUE)

        # --- operators: a CloudShell VPC environment with this group reaches the consoles, no bastion host
        operator = ec2.SecurityGroup(
            self,
            "OperatorSecurityGroup",
            vpc=network.vpc,
            allow_all_outbound=False,
            description="Operators CloudShell VPC environment: broker consoles and protocols",
        )
        warehouse.allow_client(operator, "console", "amqps", description="Operator")
        erp.allow_client(operator, "console", "stomp", description="Operator")

        dashboard.monitor(warehouse).monitor(erp).monitor(bus)

        CfnOutput(self, "ShipmentPublisherFunctionName", value=shipment_publisher.function.function_name)
        CfnOutput(self, "QuoteRequesterFunctionName", value=quote_requester.function.function_name)
        CfnOutput(self, "InvoicePublisherFunctionName", value=invoice_publisher.function.function_name)
        CfnOutput(self, "RabbitTopologyFunctionName", value=setup.function.function_name)
        CfnOutput(self, "WarehouseConsoleUrl", value=warehouse.console_url)
        CfnOutput(self, "ErpConsoleUrl", value=erp.console_url)
        CfnOutput(self, "WarehouseAdminSecretArn", value=warehouse.admin.secret.secret_arn)
        CfnOutput(self, "ErpAdminSecretArn", value=erp.admin.secret.secret_arn)
        CfnOutput(self, "ShipmentsTableName", value=shipments.table.table_name)
        CfnOutput(self, "CustomerCareQueueUrl", value=customer_care.queue.queue_url)
        CfnOutput(self, "BusName", value=bus.bus.event_bus_name)
        CfnOutput(self, "OperatorSecurityGroupId", value=operator.security_group_id)
        CfnOutput(self, "PrivateSubnetIds", value=",".join(network.vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED).subnet_ids))
        CfnOutput(self, "VpcId", value=network.vpc.vpc_id)
