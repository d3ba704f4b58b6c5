"""The one adapter between this library's wrappers and the CDK interfaces.

Every construct that consumes a queue, a topic, a function, a key or a bus
takes either the CDK interface (``sqs.IQueue``, ``sns.ITopic``,
``lambda_.IFunction``, ``kms.IKey``, ``events.IEventBus``), so that imported
resources (``sqs.Queue.from_queue_arn(...)``) work as well as new ones, or
this library's wrapper of it (:class:`SecureQueue`, :class:`SecureTopic`,
:class:`HandlerFunction`, :class:`EncryptionKey`, :class:`EventBus`), and
turns it into the interface here, in one place.

The wrappers are not jsii implementations of the interfaces (jsii needs every
member of an interface, some thirty each, defined on the class); each holds
its resource (``.queue``, ``.topic``, ``.function``, ``.key``, ``.bus``) and
these functions hand it out. jsii interfaces are ``Protocol`` classes that
``isinstance`` refuses, so an interface is recognised by the attribute that
names its resource (``queue_arn``, ``topic_arn``...).

What a wrapper knows and an interface may not (a queue's visibility timeout,
a function's timeout or role) comes back as ``None`` for an imported resource,
and the construct then skips the check or asks for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_cdk import Duration
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn

if TYPE_CHECKING:
    from .encryption import EncryptionKey
    from .event_bus import EventBus
    from .function import HandlerFunction
    from .queue import SecureQueue
    from .topic import SecureTopic

    QueueLike = SecureQueue | sqs.IQueue
    TopicLike = SecureTopic | sns.ITopic
    FunctionLike = HandlerFunction | lambda_.IFunction
    KeyLike = EncryptionKey | kms.IKey
    BusLike = EventBus | events.IEventBus


def _type_name(value: Any) -> str:
    return type(value).__name__


# --- queues ------------------------------------------------------------------


def is_queue(value: Any) -> bool:
    """A :class:`SecureQueue` or an ``sqs.IQueue`` (new or imported)."""
    from .queue import SecureQueue

    return isinstance(value, SecureQueue) or hasattr(value, "queue_arn")


def queue_of(queue: QueueLike) -> sqs.IQueue:
    """The ``sqs.IQueue`` of a :class:`SecureQueue`, or the queue itself."""
    from .queue import SecureQueue

    if isinstance(queue, SecureQueue):
        return queue.queue
    if hasattr(queue, "queue_arn"):
        return queue
    raise ValueError(f"expected a SecureQueue or an sqs.IQueue, got {_type_name(queue)}")


def fifo_of(queue: QueueLike) -> bool:
    """Whether the queue is FIFO (an imported queue: from its ARN's ``.fifo`` or ``from_queue_attributes(fifo=...)``)."""
    from .queue import SecureQueue

    if isinstance(queue, SecureQueue):
        return queue.fifo
    return bool(queue_of(queue).fifo)


def queue_key_of(queue: QueueLike) -> kms.IKey | None:
    """The queue's customer-managed key, or ``None`` (SQS-managed encryption, or an imported queue given no key)."""
    from .queue import SecureQueue

    if isinstance(queue, SecureQueue):
        return queue.key
    return queue_of(queue).encryption_master_key


def visibility_timeout_of(queue: QueueLike) -> Duration | None:
    """The visibility timeout of a :class:`SecureQueue`; ``None`` for an ``sqs.IQueue``, which does not carry it."""
    from .queue import SecureQueue

    queue_of(queue)
    return queue.visibility_timeout if isinstance(queue, SecureQueue) else None


# --- topics --------------------------------------------------------------------


def topic_of(topic: TopicLike) -> sns.ITopic:
    """The ``sns.ITopic`` of a :class:`SecureTopic` or :class:`AlarmTopic`, or the topic itself."""
    from .monitoring.alarm_topic import AlarmTopic
    from .topic import SecureTopic

    if isinstance(topic, (SecureTopic, AlarmTopic)):
        return topic.topic
    if hasattr(topic, "topic_arn"):
        return topic
    raise ValueError(f"expected a SecureTopic, an AlarmTopic or an sns.ITopic, got {_type_name(topic)}")


def optional_topic_of(topic: TopicLike | None) -> sns.ITopic | None:
    """:func:`topic_of`, passing ``None`` through (no alarm topic)."""
    return None if topic is None else topic_of(topic)


# --- functions -----------------------------------------------------------------


def is_function(value: Any) -> bool:
    """A :class:`HandlerFunction` or a ``lambda_.IFunction`` (new or imported)."""
    from .function import HandlerFunction

    return isinstance(value, HandlerFunction) or hasattr(value, "function_arn")


def function_of(function: FunctionLike) -> lambda_.IFunction:
    """The ``lambda_.IFunction`` of a :class:`HandlerFunction`, or the function itself."""
    from .function import HandlerFunction

    if isinstance(function, HandlerFunction):
        return function.function
    if hasattr(function, "function_arn"):
        return function
    raise ValueError(f"expected a HandlerFunction or a lambda_.IFunction, got {_type_name(function)}")


def construct_of(function: FunctionLike) -> Any:
    """The construct that stands for the function in a construct tree: the :class:`HandlerFunction` itself (its own
    function is always named ``Resource``), or the ``lambda_.IFunction``. For naming what a construct makes per function."""
    function_of(function)  # refuses what is neither
    return function


def role_of(function: FunctionLike, purpose: str) -> iam.IRole:
    """The function's execution role, for constructs that grant to it directly.

    An imported function has a role only when it was imported with one
    (``lambda_.Function.from_function_attributes(..., role=...)``).

    :param purpose: what needs the role, for the error message.
    """
    from .function import HandlerFunction

    role = function.role if isinstance(function, HandlerFunction) else function_of(function).role
    if role is None:
        raise ValueError(f"{purpose} grants to the consumer's role: import the function with its role (Function.from_function_attributes(role=...))")
    return role


def function_key_of(function: FunctionLike) -> kms.IKey | None:
    """The key of a :class:`HandlerFunction` (its log group, environment and DLQ); ``None`` for a ``lambda_.IFunction``."""
    from .function import HandlerFunction

    function_of(function)
    return function.key if isinstance(function, HandlerFunction) else None


def timeout_of(function: FunctionLike) -> Duration | None:
    """The function's timeout, or ``None`` for an imported function, which does not carry it."""
    from .function import HandlerFunction

    if isinstance(function, HandlerFunction):
        return function.timeout
    return getattr(function_of(function), "timeout", None)


# --- keys and buses ------------------------------------------------------------


def key_of(key: KeyLike | None) -> kms.IKey | None:
    """The ``kms.IKey`` of an :class:`EncryptionKey`, the key itself, or ``None``."""
    from .encryption import EncryptionKey

    if key is None:
        return None
    if isinstance(key, EncryptionKey):
        return key.key
    if hasattr(key, "key_arn"):
        return key
    raise ValueError(f"expected an EncryptionKey or a kms.IKey, got {_type_name(key)}")


def is_bus(value: Any) -> bool:
    """An :class:`EventBus` or an ``events.IEventBus`` (new or imported)."""
    from .event_bus import EventBus

    return isinstance(value, EventBus) or hasattr(value, "event_bus_arn")


def bus_of(bus: BusLike) -> events.IEventBus:
    """The ``events.IEventBus`` of an :class:`EventBus`, or the bus itself."""
    from .event_bus import EventBus

    if isinstance(bus, EventBus):
        return bus.bus
    if hasattr(bus, "event_bus_arn"):
        return bus
    raise ValueError(f"expected an EventBus or an events.IEventBus, got {_type_name(bus)}")


# --- other pipe ends -------------------------------------------------------------


def is_table(value: Any) -> bool:
    """A ``dynamodb.ITable``."""
    return hasattr(value, "table_arn")


def table_of(table: dynamodb.ITable) -> dynamodb.ITable:
    if not is_table(table):
        raise ValueError(f"expected a dynamodb.ITable, got {_type_name(table)}")
    return table


def is_state_machine(value: Any) -> bool:
    """An ``sfn.IStateMachine``."""
    return hasattr(value, "state_machine_arn")


def state_machine_of(state_machine: sfn.IStateMachine) -> sfn.IStateMachine:
    if not is_state_machine(state_machine):
        raise ValueError(f"expected an sfn.IStateMachine, got {_type_name(state_machine)}")
    return state_machine
