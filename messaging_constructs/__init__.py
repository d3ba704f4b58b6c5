"""Secure, observable, failure-aware AWS messaging constructs for the AWS CDK.

Every construct encrypts with a customer-managed KMS key, enforces TLS,
gives every asynchronous path a dead-letter destination with an alarm, and
follows a :class:`Profile` (sandbox or production) read from CDK context.

Constructs take the CDK interfaces (``sqs.IQueue``, ``sns.ITopic``,
``lambda_.IFunction``, ``kms.IKey``, ``events.IEventBus``), imported ones
included, as well as this library's wrappers of them. The compliance
acknowledgements the constructs apply are in :mod:`messaging_constructs.acknowledgements`.
"""

from .device_rule import DeviceRule
from .encryption import EncryptionKey, KeyUser, allow_service
from .event_bus import EventBus
from .event_store import EventStore
from .event_stream import EventStream, StreamConsumer
from .function import POWERTOOLS_VERSION, RUNTIME, HandlerFunction, powertools_layer_parameter
from .function_log_groups import FunctionLogGroups
from .iceberg_lake import IcebergLake
from .idempotency_table import IdempotencyTable
from .kafka_cluster import KafkaCluster, KafkaClusterType
from .kafka_event_source import KafkaEventSource, ProvisionedPollers
from .lake_delivery import LakeDelivery
from .message_broker import BrokerEngine, BrokerUser, MessageBroker
from .monitoring import NO_ALARM_TOPIC, AlarmTopic, MonitoringDashboard
from .mq_event_source import MqEventSource
from .network import PrivateNetwork
from .outbox import Outbox
from .pipe import EventPipe
from .profile import PRODUCTION, SANDBOX, Profile
from .projection import Projection
from .queue import SecureQueue
from .queue_event_source import QueueEventSource
from .rest_api import SecureRestApi
from .runtime_layer import RuntimeLayer
from .saga import AwaitCallback, Invoke, Saga, SagaStep
from .scheduler import ScheduleGroup
from .sequential_offer import SequentialOffer
from .service_log_groups import ServiceLogGroups
from .state_table import StateTable
from .stream_schemas import StreamSchemas
from .topic import DELIVERY_LOGGING_PROTOCOLS, SecureTopic
from .websocket_api import PushWebSocketApi

__all__ = [
    "AlarmTopic",
    "allow_service",
    "AwaitCallback",
    "BrokerEngine",
    "BrokerUser",
    "DELIVERY_LOGGING_PROTOCOLS",
    "DeviceRule",
    "EncryptionKey",
    "EventBus",
    "EventPipe",
    "EventStore",
    "EventStream",
    "FunctionLogGroups",
    "HandlerFunction",
    "IcebergLake",
    "IdempotencyTable",
    "Invoke",
    "KafkaCluster",
    "KafkaClusterType",
    "KafkaEventSource",
    "KeyUser",
    "LakeDelivery",
    "MessageBroker",
    "MonitoringDashboard",
    "MqEventSource",
    "NO_ALARM_TOPIC",
    "Outbox",
    "powertools_layer_parameter",
    "POWERTOOLS_VERSION",
    "PrivateNetwork",
    "PRODUCTION",
    "Profile",
    "Projection",
    "ProvisionedPollers",
    "PushWebSocketApi",
    "QueueEventSource",
    "RUNTIME",
    "RuntimeLayer",
    "Saga",
    "SagaStep",
    "SequentialOffer",
    "SANDBOX",
    "ScheduleGroup",
    "SecureQueue",
    "SecureRestApi",
    "SecureTopic",
    "ServiceLogGroups",
    "StateTable",
    "StreamConsumer",
    "StreamSchemas",
]
