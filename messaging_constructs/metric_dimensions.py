"""The dimensions AWS publishes its metrics under, for the namespaces of the services messaging apps use.

A CloudWatch metric is its namespace, its name and its set of dimensions: the
same name under another set of dimension names is another metric, and one that
AWS never publishes has no data: an alarm on it that treats missing data as not
breaching stays OK for ever. ``NAMESPACES`` records, for each namespace, the
dimension sets its service's documentation gives for each metric, and the pages
it was read from; ``dimension_problem`` tells whether a metric as an alarm
names it is one of them.

Three levels of knowledge, most precise first:

- ``metrics``: the metric is listed, and its set of dimension names must be one
  of the sets given for it (the empty set is the metric with no dimension, an
  account or Region total).
- ``every_metric``: the page says every metric of the namespace is published
  under these sets (Amazon SQS: ``QueueName`` only), so a metric that is not
  listed must use one of them.
- otherwise a metric that is not listed is not judged as a whole: only a
  dimension name the namespace never uses is a problem. New metrics appear
  faster than any table; a rule must not fail an alarm it has no data for.

Where a page lists dimensions ``A, B`` for a metric and says (or shows, in the
console view it describes) that the metric is also published under fewer of
them, each set is listed. Where a page is ambiguous (a list that reads as either one set or
several), every reading is allowed: a missed finding is better than a false one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

DimensionSet = frozenset[str]


def _sets(*sets: str) -> frozenset[DimensionSet]:
    """Dimension sets written as comma-separated names (``"Cluster Name, Broker ID"``); ``""`` is the set with no dimension."""
    return frozenset(frozenset(name.strip() for name in spec.split(",") if name.strip()) for spec in sets)


def _each(names: str, sets: frozenset[DimensionSet]) -> dict[str, frozenset[DimensionSet]]:
    """The same dimension sets for each of the metrics ``names`` (whitespace-separated)."""
    return {name: sets for name in names.split()}


def _merge(*tables: Mapping[str, frozenset[DimensionSet]]) -> dict[str, frozenset[DimensionSet]]:
    """Metric tables joined; a metric in several (same name in two families) gets every set of each."""
    merged: dict[str, frozenset[DimensionSet]] = {}
    for table in tables:
        for metric, sets in table.items():
            merged[metric] = merged.get(metric, frozenset()) | sets
    return merged


@dataclass(frozen=True)
class Namespace:
    """What AWS documents for one CloudWatch namespace: the dimension sets of its metrics, and where it says so."""

    name: str
    sources: tuple[str, ...]
    metrics: Mapping[str, frozenset[DimensionSet]] = field(default_factory=dict)
    every_metric: frozenset[DimensionSet] | None = None
    other_names: frozenset[str] = frozenset()

    @property
    def dimension_names(self) -> frozenset[str]:
        """Every dimension name the namespace is documented to use."""
        sets = [*(s for sets in self.metrics.values() for s in sets), *(self.every_metric or ())]
        return frozenset().union(*sets, self.other_names)

    def allowed(self, metric: str) -> frozenset[DimensionSet] | None:
        """The dimension sets ``metric`` is published under, or None when the namespace documents none for it."""
        return self.metrics.get(metric, self.every_metric)


def dimension_problem(namespace: str, metric: str | None, dimensions: Iterable[str]) -> str | None:
    """Why AWS publishes no ``metric`` in ``namespace`` under these dimension names, or None when it does or is not known to.

    ``metric`` None is a name chosen at deploy time: only the dimension names are judged.
    """
    documented = NAMESPACES.get(namespace)
    if documented is None:
        return None  # a custom namespace, or one this table does not hold
    names = frozenset(dimensions)
    allowed = documented.allowed(metric) if metric is not None else None
    if allowed is not None:
        if names in allowed:
            return None
        shown = "; ".join(sorted(", ".join(sorted(s)) or "no dimension" for s in allowed))
        return f"{namespace} {metric} is published with [{shown}], not [{', '.join(sorted(names)) or 'no dimension'}]"
    unknown = sorted(names - documented.dimension_names)
    if unknown:
        return f"{namespace} has no dimension {', '.join(unknown)}"
    return None


# --- Amazon SQS ------------------------------------------------------------------------------------------------------

_SQS = Namespace(
    "AWS/SQS",
    ("https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-available-cloudwatch-metrics.html",),
    # "The only dimension that Amazon SQS sends to CloudWatch is QueueName."
    every_metric=_sets("QueueName"),
)

# --- Amazon SNS ------------------------------------------------------------------------------------------------------

_SNS = Namespace(
    "AWS/SNS",
    ("https://docs.aws.amazon.com/sns/latest/dg/sns-monitoring-using-cloudwatch.html",),
    # The page lists the dimension sets of the namespace, not of each metric: topic metrics (TopicName), mobile push
    # (Application; Application, Platform; Platform), SMS (Country; SMSType; "Country, SMS Type"; PhoneNumber) and
    # "Metrics with no dimensions" (SMSMonthToDateSpentUSD).
    every_metric=_sets("TopicName", "Application", "Application, Platform", "Platform", "Country", "SMSType", "Country, SMSType", "PhoneNumber", ""),
)

# --- AWS Lambda ------------------------------------------------------------------------------------------------------

# By Function Name (all versions and aliases), By Resource (a version or alias: "function:alias"), By Executed Version
# (a combination of alias and version), Across All Functions (none).
_FUNCTION = _sets("", "FunctionName", "FunctionName, Resource", "FunctionName, Resource, ExecutedVersion")
_LAMBDA = Namespace(
    "AWS/Lambda",
    (
        "https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html",
        "https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-view.html",
    ),
    metrics={
        **_each(
            "Invocations Errors DeadLetterErrors DestinationDeliveryFailures Throttles OversizedRecordCount "
            "ProvisionedConcurrencyInvocations ProvisionedConcurrencySpilloverInvocations RecursiveInvocationsDropped "
            "Duration PostRuntimeExtensionsDuration IteratorAge OffsetLag "
            "ConcurrentExecutions ProvisionedConcurrentExecutions ProvisionedConcurrencyUtilization "
            "AsyncEventsReceived AsyncEventAge AsyncEventsDropped",
            _FUNCTION,
        ),
        # "For a Region": no dimension.
        **_each("UnreservedConcurrentExecutions ClaimedAccountConcurrency", _sets("")),
    },
    # Event source mapping metrics (PolledEventCount, FailedInvokeEventCount, ...) are viewed "By Event Source Mapping UUID".
    other_names=frozenset({"EventSourceMappingUUID"}),
)

# --- Amazon DynamoDB -------------------------------------------------------------------------------------------------

_TABLE = _sets("TableName")
_TABLE_OR_INDEX = _sets("TableName", "TableName, GlobalSecondaryIndexName")
# Operation-keyed metrics. OperationType is "emitted for ExecuteTransaction and BatchExecuteStatement requests" and
# Verb "for the ExecuteStatement operation", as further qualifiers of the operation.
_OPERATION = _sets("TableName, Operation", "TableName, Operation, OperationType", "TableName, Operation, Verb")
_DYNAMODB = Namespace(
    "AWS/DynamoDB",
    ("https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/metrics-dimensions.html",),
    metrics={
        **_each(
            "AccountMaxReads AccountMaxTableLevelReads AccountMaxTableLevelWrites AccountMaxWrites "
            "AccountProvisionedReadCapacityUtilization AccountProvisionedWriteCapacityUtilization "
            "MaxProvisionedTableReadCapacityUtilization MaxProvisionedTableWriteCapacityUtilization UserErrors",
            _sets(""),
        ),
        **_each(
            "AgeOfOldestUnreplicatedRecord ConsumedChangeDataCaptureUnits FailedToReplicateRecordCount ThrottledPutRecordCount",
            _sets("TableName, DelegatedOperation"),
        ),
        **_each("ConditionalCheckFailedRequests TimeToLiveDeletedItemCount TransactionConflict WriteAccountLimitThrottleEvents", _TABLE),
        # "The TableName dimension returns [the metric] for the table, but not for any global secondary indexes."
        **_each(
            "ConsumedReadCapacityUnits OnDemandMaxReadRequestUnits OnDemandMaxWriteRequestUnits "
            "ProvisionedReadCapacityUnits ProvisionedWriteCapacityUnits "
            "ReadAccountLimitThrottleEvents ReadKeyRangeThroughputThrottleEvents ReadMaxOnDemandThroughputThrottleEvents "
            "ReadProvisionedThroughputThrottleEvents ReadThrottleEvents "
            "WriteKeyRangeThroughputThrottleEvents WriteMaxOnDemandThroughputThrottleEvents "
            "WriteProvisionedThroughputThrottleEvents WriteThrottleEvents",
            _TABLE_OR_INDEX,
        ),
        # Also a Source dimension (Customer or GlobalTable) for replicated writes.
        "ConsumedWriteCapacityUnits": _TABLE_OR_INDEX | _sets("TableName, Source", "TableName, GlobalSecondaryIndexName, Source"),
        **_each("OnlineIndexConsumedWriteCapacity OnlineIndexPercentageProgress OnlineIndexThrottleEvents", _sets("TableName, GlobalSecondaryIndexName")),
        **_each("PendingReplicationCount ReplicationLatency", _sets("TableName, ReceivingRegion")),
        # Amazon DynamoDB Streams GetRecords.
        **_each("ReturnedBytes ReturnedRecordsCount", _sets("TableName, Operation, StreamLabel")),
        # SystemErrors and ThrottledRequests are published per operation only: an alarm names each operation.
        **_each("ReturnedItemCount SystemErrors ThrottledRequests FaultInjectionServiceInducedErrors", _OPERATION),
        "SuccessfulRequestLatency": _OPERATION | _sets("TableName, Operation, StreamLabel"),
    },
)

# --- Amazon EventBridge ----------------------------------------------------------------------------------------------

# "Metrics that specify only the RuleName dimension refer to the default event bus. Metrics that specify both the
# EventBusName and RuleName dimensions refer to a custom event bus." So wherever the page gives RuleName, both sets.
_RULE = _sets("RuleName", "EventBusName, RuleName")
_EVENTS = Namespace(
    "AWS/Events",
    ("https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-monitoring.html",),
    metrics={
        **_each("DeadLetterInvocations FailedInvocations InvocationsFailedToBeSentToDlq InvocationsSentToDlq", _RULE),
        "Events": _sets("EventSourceName"),
        "Invocations": _RULE | _sets(""),
        **_each(
            "InvocationAttempts IngestiontoInvocationCompleteLatency IngestionToInvocationSuccessLatency "
            "IngestiontoInvocationStartLatency RetryInvocationAttempts SuccessfulInvocationAttempts ThrottledRules TriggeredRules",
            _RULE | _sets("", "EventBusName"),
        ),
        "InvocationsCreated": _sets(""),
        # "If EventBusName or EventSourceName is specified, the number of events that matched with any rule. If RuleName
        # is specified, the number of events that matched with a specific rule." Earlier editions gave it no dimension.
        "MatchedEvents": _RULE | _sets("", "EventBusName", "EventSourceName"),
        **_each("EventBusEncryptionStarted EventBusEncryptionCompleted EventBusEncryptionFailed", _sets("EventBusName")),
        **_each(
            "PutEventsApproximateCallCount PutEventsApproximateFailedCount PutEventsApproximateSuccessCount "
            "PutEventsApproximateThrottledCount PutEventsEntriesCount PutEventsFailedEntriesCount PutEventsLatency PutEventsRequestSize "
            "PutPartnerEventsApproximateCallCount PutPartnerEventsApproximateFailedCount PutPartnerEventsApproximateThrottledCount "
            "PutPartnerEventsApproximateSuccessCount PutPartnerEventsEntriesCount PutPartnerEventsFailedEntriesCount PutPartnerEventsLatency",
            _sets(""),
        ),
    },
)

# --- Amazon EventBridge Pipes ----------------------------------------------------------------------------------------

# The page gives "AwsAccountId, PipeName" for some metrics, which reads as two sets or as one: all three are allowed.
_ACCOUNT_OR_PIPE = _sets("AwsAccountId", "PipeName", "AwsAccountId, PipeName")
_PIPES = Namespace(
    "AWS/EventBridge/Pipes",
    ("https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-pipes-monitoring.html",),
    metrics={
        "Concurrency": _sets("AwsAccountId"),
        # Earlier editions: ConcurrentExecutions, "Valid Dimensions: PipeName, AwsAccountId".
        "ConcurrentExecutions": _ACCOUNT_OR_PIPE,
        **_each("ExecutionThrottled Invocations", _ACCOUNT_OR_PIPE),
        **_each(
            "Duration EventCount EventSize ExecutionTimeout ExecutionFailed ExecutionPartiallyFailed "
            "EnrichmentStageDuration EnrichmentStageFailed TargetStageDuration TargetStageFailed "
            "TargetStagePartiallyFailed TargetStageSkipped",
            _sets("PipeName"),
        ),
    },
)

# --- Amazon EventBridge Scheduler ------------------------------------------------------------------------------------

_SCHEDULER = Namespace(
    "AWS/Scheduler",
    ("https://docs.aws.amazon.com/scheduler/latest/UserGuide/monitoring-cloudwatch.html",),
    # Schedule Group Metrics (ScheduleGroup) and Account Metrics (none), for every metric, including those named
    # after an error code (InvocationsFailedToBeSentToDeadLetterCount_<error_code>).
    every_metric=_sets("", "ScheduleGroup"),
)

# --- AWS Step Functions ----------------------------------------------------------------------------------------------

# Without a state machine ARN the metric is the account's; with one, the state machine's; an execution started by a
# version or an alias also carries Version or Alias.
_STATE_MACHINE = _sets("StateMachineArn", "StateMachineArn, Version", "StateMachineArn, Alias")
_STATES = Namespace(
    "AWS/States",
    ("https://docs.aws.amazon.com/step-functions/latest/dg/procedure-cw-metrics.html",),
    metrics={
        **_each("OpenExecutionCount OpenExecutionLimit ApproximateOpenMapRunCount OpenMapRunLimit ApproximateMapRunBacklogSize", _sets("")),
        **_each(
            "ExecutionsAborted ExecutionsFailed ExecutionsStarted ExecutionsSucceeded ExecutionsTimedOut ExecutionThrottled "
            "ExecutionTime ExpressExecutionBilledDuration ExpressExecutionBilledMemory",
            _STATE_MACHINE | _sets(""),
        ),
        **_each(
            "ExpressExecutionMemory ExecutionsRedriven RedrivenExecutionsAborted RedrivenExecutionsTimedOut "
            "RedrivenExecutionsSucceeded RedrivenExecutionsFailed",
            _STATE_MACHINE,
        ),
        **_each("AliasCount VersionCount", _sets("ResourceArn")),
        **_each(
            "ActivitiesFailed ActivitiesHeartbeatTimedOut ActivitiesScheduled ActivitiesStarted ActivitiesSucceeded "
            "ActivitiesTimedOut ActivityRunTime ActivityScheduleTime ActivityTime",
            _sets("", "ActivityArn"),
        ),
        **_each(
            "LambdaFunctionRunTime LambdaFunctionScheduleTime LambdaFunctionTime LambdaFunctionsFailed "
            "LambdaFunctionsScheduled LambdaFunctionsStarted LambdaFunctionsSucceeded LambdaFunctionsTimedOut",
            _sets("LambdaFunctionArn"),
        ),
        **_each(
            "ServiceIntegrationRunTime ServiceIntegrationScheduleTime ServiceIntegrationTime ServiceIntegrationsFailed "
            "ServiceIntegrationsScheduled ServiceIntegrationsStarted ServiceIntegrationsSucceeded ServiceIntegrationsTimedOut",
            _sets("ServiceIntegrationResourceArn"),
        ),
        # Service metrics (ServiceMetric: StateTransition, optionally per StateMachineArn) and API metrics (APIName).
        **_each(
            "ThrottledEvents ProvisionedBucketSize ProvisionedRefillRate ConsumedCapacity",
            _sets("", "ServiceMetric", "StateMachineArn", "ServiceMetric, StateMachineArn", "APIName"),
        ),
    },
)

# --- Amazon Kinesis Data Streams -------------------------------------------------------------------------------------

_KINESIS = Namespace(
    "AWS/Kinesis",
    ("https://docs.aws.amazon.com/streams/latest/dev/monitoring-with-cloudwatch.html",),
    metrics=_merge(
        # Basic stream-level metrics.
        _each(
            "GetRecords.Bytes GetRecords.IteratorAgeMilliseconds GetRecords.Latency GetRecords.Records GetRecords.Success "
            "IncomingBytes IncomingRecords PutRecord.Bytes PutRecord.Latency PutRecord.Success "
            "PutRecords.Bytes PutRecords.Latency PutRecords.Records PutRecords.Success PutRecords.TotalRecords "
            "PutRecords.SuccessfulRecords PutRecords.FailedRecords PutRecords.ThrottledRecords "
            "ReadProvisionedThroughputExceeded WriteProvisionedThroughputExceeded",
            _sets("StreamName"),
        ),
        # Enhanced fan-out consumers.
        _each(
            "SubscribeToShard.RateExceeded SubscribeToShard.Success SubscribeToShardEvent.Bytes "
            "SubscribeToShardEvent.MillisBehindLatest SubscribeToShardEvent.Records SubscribeToShardEvent.Success",
            _sets("StreamName, ConsumerName"),
        ),
        # Enhanced shard-level metrics (EnableEnhancedMonitoring).
        _each(
            "IncomingBytes IncomingRecords IteratorAgeMilliseconds OutgoingBytes OutgoingRecords "
            "ReadProvisionedThroughputExceeded WriteProvisionedThroughputExceeded",
            _sets("StreamName, ShardId"),
        ),
    ),
)

# --- Amazon Data Firehose --------------------------------------------------------------------------------------------

_FIREHOSE = Namespace(
    "AWS/Firehose",
    (
        "https://docs.aws.amazon.com/firehose/latest/dev/monitoring-with-cloudwatch-metrics.html",
        "https://docs.aws.amazon.com/firehose/latest/dev/apache-iceberg-metric.html",
    ),
    # "To filter metrics by delivery stream, use the DeliveryStreamName dimension", the only one the pages give;
    # the Apache Iceberg metrics are emitted "at a stream level".
    every_metric=_sets("DeliveryStreamName"),
)

# --- Amazon MSK ------------------------------------------------------------------------------------------------------

# Dimension names are spelled with spaces. Monitoring levels: DEFAULT, PER_BROKER (Cluster Name, Broker ID),
# PER_TOPIC_PER_BROKER (Cluster Name, Broker ID, Topic), PER_TOPIC_PER_PARTITION; MSK Serverless publishes per topic.
_BROKER = _sets("Cluster Name, Broker ID")
_PER_BROKER_AND_TOPIC = _sets("Cluster Name, Broker ID", "Cluster Name, Topic", "Cluster Name, Broker ID, Topic")
# The lag pages give "Cluster Name, Consumer Group, Topic"; the metrics table of earlier editions "Consumer Group, Topic".
_GROUP_LAG = _sets("Cluster Name, Consumer Group, Topic", "Consumer Group, Topic")
_PARTITION_LAG = _sets("Cluster Name, Consumer Group, Topic, Partition", "Consumer Group, Topic, Partition")
_KAFKA = Namespace(
    "AWS/Kafka",
    (
        "https://docs.aws.amazon.com/msk/latest/developerguide/metrics-details.html",
        "https://docs.aws.amazon.com/msk/latest/developerguide/serverless-monitoring.html",
        "https://docs.aws.amazon.com/msk/latest/developerguide/consumer-lag.html",
    ),
    metrics={
        **_each("ActiveControllerCount GlobalPartitionCount GlobalTopicCount OfflinePartitionsCount", _sets("Cluster Name")),
        "KafkaDataLogsDiskUsed": _sets("Cluster Name", "Cluster Name, Broker ID"),
        "ClientConnectionCount": _sets("Cluster Name, Broker ID, Client Authentication"),
        **_each(
            "BytesInPerSec BytesOutPerSec MessagesInPerSec FetchMessageConversionsPerSec ProduceMessageConversionsPerSec",
            _PER_BROKER_AND_TOPIC,
        ),
        **_each("EstimatedMaxTimeLag MaxEstimatedTimeLag MaxOffsetLag SumOffsetLag", _GROUP_LAG),
        **_each("EstimatedTimeLag OffsetLag", _PARTITION_LAG),
        **_each(
            # DEFAULT
            "BurstBalance ConnectionCount CPUCreditBalance CpuIdle CpuIoWait CpuSystem CpuUser KafkaAppLogsDiskUsed "
            "LeaderCount MemoryBuffered MemoryCached MemoryFree HeapMemoryAfterGC MemoryUsed "
            "NetworkRxDropped NetworkRxErrors NetworkRxPackets NetworkTxDropped NetworkTxErrors NetworkTxPackets "
            "PartitionCount ProduceTotalTimeMsMean RequestBytesMean RequestTime RootDiskUsed SwapFree SwapUsed "
            "TrafficShaping UnderMinIsrPartitionCount UnderReplicatedPartitions ZooKeeperRequestLatencyMsMean ZooKeeperSessionState "
            # PER_BROKER
            "BwInAllowanceExceeded BwOutAllowanceExceeded ConnTrackAllowanceExceeded ConnectionCloseRate ConnectionCreationRate "
            "CpuCreditUsage FetchConsumerLocalTimeMsMean FetchConsumerRequestQueueTimeMsMean FetchConsumerResponseQueueTimeMsMean "
            "FetchConsumerResponseSendTimeMsMean FetchConsumerTotalTimeMsMean FetchFollowerLocalTimeMsMean "
            "FetchFollowerRequestQueueTimeMsMean FetchFollowerResponseQueueTimeMsMean FetchFollowerResponseSendTimeMsMean "
            "FetchFollowerTotalTimeMsMean FetchThrottleByteRate FetchThrottleQueueSize FetchThrottleTime "
            "NetworkProcessorAvgIdlePercent PpsAllowanceExceeded ProduceLocalTimeMsMean ProduceMessageConversionsTimeMsMean "
            "ProduceRequestQueueTimeMsMean ProduceResponseQueueTimeMsMean ProduceResponseSendTimeMsMean ProduceThrottleByteRate "
            "ProduceThrottleQueueSize ProduceThrottleTime ReplicationBytesInPerSec ReplicationBytesOutPerSec "
            "RequestExemptFromThrottleTime RequestHandlerAvgIdlePercent RequestThrottleQueueSize RequestThrottleTime "
            "TcpConnections TrafficBytes VolumeQueueLength VolumeReadBytes VolumeReadOps VolumeTotalReadTime "
            "VolumeTotalWriteTime VolumeWriteBytes VolumeWriteOps",
            _BROKER,
        ),
    },
)

# --- Amazon MQ -------------------------------------------------------------------------------------------------------

# ActiveMQ publishes per broker instance (Broker is the broker name plus -1 or -2) and per destination (Queue or
# Topic). RabbitMQ publishes per broker, per node (Broker, Node) and per queue (Broker, VirtualHost, Queue).
_MQ_BROKER = _sets("Broker")
_MQ_DESTINATION = _sets("Broker, Queue", "Broker, Topic")
_MQ_NODE = _sets("Broker", "Broker, Node")
_MQ_QUEUE = _sets("Broker, VirtualHost, Queue")
_AMAZONMQ = Namespace(
    "AWS/AmazonMQ",
    (
        "https://docs.aws.amazon.com/amazon-mq/latest/developer-guide/activemq-logging-monitoring.html",
        "https://docs.aws.amazon.com/amazon-mq/latest/developer-guide/rabbitmq-logging-monitoring.html",
    ),
    metrics=_merge(
        # ActiveMQ broker metrics.
        _each(
            "AmqpMaximumConnections BurstBalance CpuCreditBalance CpuUtilization CurrentConnectionsCount "
            "EstablishedConnectionsCount HeapUsage InactiveDurableTopicSubscribersCount JobSchedulerStorePercentUsage "
            "JournalFilesForFastRecovery JournalFilesForFullRecovery MqttMaximumConnections NetworkConnectorConnectionCount "
            "NetworkIn NetworkOut OpenTransactionCount OpenwireMaximumConnections StompMaximumConnections StorePercentUsage "
            "TempPercentUsage TotalConsumerCount TotalMessageCount TotalProducerCount VolumeReadOps VolumeWriteOps WsMaximumConnections",
            _MQ_BROKER,
        ),
        # ActiveMQ destination metrics. (ReceiveCount, for a duplex network connector, and the broker totals
        # TotalEnqueueCount and TotalDequeueCount are left to the namespace's dimension names.)
        _each(
            "ConsumerCount EnqueueCount EnqueueTime ExpiredCount DispatchCount DequeueCount InFlightCount MemoryUsage ProducerCount QueueSize",
            _MQ_DESTINATION,
        ),
        # RabbitMQ broker metrics.
        _each(
            "ExchangeCount QueueCount ConnectionCount ChannelCount ConsumerCount MessageCount MessageReadyCount "
            "MessageUnacknowledgedCount PublishRate ConfirmRate AckRate RabbitMQIOReadAverageTime RabbitMQIOWriteAverageTime",
            _MQ_BROKER,
        ),
        # RabbitMQ node metrics (the broker-level copies add up the nodes of a cluster); the counts per node since RabbitMQ 4.2.
        _each(
            "SystemCpuUtilization RabbitMQMemLimit RabbitMQMemUsed RabbitMQDiskFreeLimit RabbitMQDiskFree RabbitMQFdUsed "
            "ExchangeCount QueueCount ConnectionCount ChannelCount ConsumerCount MessageCount MessageReadyCount MessageUnacknowledgedCount",
            _MQ_NODE,
        ),
        # RabbitMQ queue metrics (not for RabbitMQ 4.x brokers, which publish no Queue or VirtualHost dimension).
        _each("ConsumerCount MessageReadyCount MessageUnacknowledgedCount MessageCount", _MQ_QUEUE),
    ),
    other_names=frozenset({"NetworkConnector"}),
)

# --- Amazon API Gateway ----------------------------------------------------------------------------------------------

# REST APIs: by API name (ApiName; "API Gateway removes non-ASCII characters ... If the APIName contains no ASCII
# characters, the API ID is used"), stage, and method (detailed metrics). HTTP and WebSocket APIs: by API id.
_REST = _sets("ApiName", "ApiName, Stage", "ApiName, Method, Resource, Stage")
_V2 = _sets("ApiId", "ApiId, Stage", "ApiId, Stage, Route")
_APIGATEWAY = Namespace(
    "AWS/ApiGateway",
    (
        "https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-metrics-and-dimensions.html",
        "https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-websocket-api-logging.html",
        "https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-metrics.html",
    ),
    metrics={
        **_each("4XXError 5XXError CacheHitCount CacheMissCount", _REST),
        **_each("Count IntegrationLatency Latency", _REST | _V2),
        # HTTP APIs.
        **_each("4xx 5xx DataProcessed", _V2),
        # WebSocket APIs.
        **_each("ConnectCount MessageCount IntegrationError ClientError ExecutionError", _V2),
    },
)

# --- AWS IoT Core ----------------------------------------------------------------------------------------------------

_IOT = Namespace(
    "AWS/IoT",
    ("https://docs.aws.amazon.com/iot/latest/developerguide/metrics_dimensions.html",),
    metrics={
        **_each("ParseError RuleMessageThrottled RuleNotFound TopicMatch", _sets("RuleName")),
        "RulesExecuted": _sets(""),
        # "The RuleName dimension contains the name of the rule that specifies the action. The ActionType dimension
        # contains the type of action that was invoked."
        **_each("Failure Success ErrorActionFailure ErrorActionSuccess", _sets("RuleName, ActionType")),
        **_each(
            "Connect.AuthError Connect.ClientError Connect.ClientIDThrottle Connect.ServerError Connect.Success Connect.Throttle "
            "Ping.Success PublishIn.AuthError PublishIn.ClientError PublishIn.ServerError PublishIn.Success PublishIn.Throttle "
            "PublishOut.AuthError PublishOut.ClientError PublishOut.Success PublishOut.Throttle "
            "PublishRetained.AuthError PublishRetained.ServerError PublishRetained.Success PublishRetained.Throttle "
            "Subscribe.AuthError Subscribe.ClientError Subscribe.ServerError Subscribe.Success Subscribe.Throttle "
            "Unsubscribe.ClientError Unsubscribe.ServerError Unsubscribe.Success Unsubscribe.Throttle "
            "DeleteThingShadow.Accepted GetThingShadow.Accepted ListThingShadow.Accepted UpdateThingShadow.Accepted",
            _sets("Protocol"),
        ),
        **_each(
            "CanceledJobExecutionCount CanceledJobExecutionTotalCount ClientErrorCount FailedJobExecutionCount "
            "FailedJobExecutionTotalCount InProgressJobExecutionCount InProgressJobExecutionTotalCount "
            "RejectedJobExecutionTotalCount RemovedJobExecutionTotalCount QueuedJobExecutionCount QueuedJobExecutionTotalCount "
            "RejectedJobExecutionCount RemovedJobExecutionCount ServerErrorCount SuccededJobExecutionCount SuccededJobExecutionTotalCount",
            _sets("JobId"),
        ),
    },
    # The page's list of dimensions (Device Defender, provisioning, dynamic thing groups) for the metrics not listed.
    other_names=frozenset(
        {
            "ActionType",
            "BehaviorName",
            "ClaimCertificateId",
            "CheckName",
            "DynamicThingGroupName",
            "JobId",
            "Protocol",
            "RuleName",
            "ScheduledAuditName",
            "SecurityProfileName",
            "TemplateName",
        }
    ),
)


NAMESPACES: Mapping[str, Namespace] = MappingProxyType(
    {
        namespace.name: namespace
        for namespace in (
            _SQS,
            _SNS,
            _LAMBDA,
            _DYNAMODB,
            _EVENTS,
            _PIPES,
            _SCHEDULER,
            _STATES,
            _KINESIS,
            _FIREHOSE,
            _KAFKA,
            _AMAZONMQ,
            _APIGATEWAY,
            _IOT,
        )
    }
)
