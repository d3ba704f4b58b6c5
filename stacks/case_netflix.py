"""CaseNetflix: Keystone-style routing of microservice events to consumer teams, an encoding workflow, circuit breakers."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from constructs import Construct

from messaging_constructs import EventBus, Invoke, Profile, QueueEventSource, Saga, SagaStep, StateTable
from messaging_runtime.contracts.viewing import PLAYBACK_SOURCE, PLAYBACK_STARTED, PLAYBACK_STOPPED, STUDIO_SOURCE, TITLE_PUBLISHED, TITLE_UPLOADED

from ._blueprint import Blueprint

#: Every source the stack's producers use starts with this.
SOURCE_PREFIX = "netflix."


@dataclass(frozen=True)
class ConsumerTeam:
    """A team that subscribes to the bus: its rule's pattern, and the construct ids its queue and function get."""

    name: str
    description: str
    pattern: events.EventPattern

    @property
    def queue_id(self) -> str:
        return f"{self.name}Events"

    @property
    def function_id(self) -> str:
        return f"{self.name}Consumer"


#: The consumer teams, each with its own rule, queue (and DLQ), function and circuit breaker.
TEAMS = (
    ConsumerTeam(
        "Recommendations",
        "Playback starts and stops and new titles, to the recommendations team",
        events.EventPattern(source=events.Match.prefix(SOURCE_PREFIX), detail_type=[PLAYBACK_STARTED.name, PLAYBACK_STOPPED.name, TITLE_PUBLISHED.name]),
    ),
    ConsumerTeam("Analytics", "Every event of the bus, to the analytics team's warehouse", events.EventPattern(source=events.Match.prefix(SOURCE_PREFIX))),
    ConsumerTeam(
        "Quality",
        "Playback stops that rebuffered, to the streaming quality team",
        events.EventPattern(source=[PLAYBACK_SOURCE], detail_type=[PLAYBACK_STOPPED.name], detail={"rebuffer_count": events.Match.greater_than(0)}),
    ),
)


class CaseNetflixStack(Stack):
    """Producers put events on one bus (ingest); rules fan them out to consumer teams (processing), each isolated.

    - the bus is the ingest path: producers (the playback services, the content pipeline) put events with
      ``events:PutEvents``; the archive keeps every event for replay;
    - each consumer team of ``TEAMS`` has a rule (content filtering), its own queue with a DLQ and alarms, and its own
      function, which delivers to the team's service behind a circuit breaker kept in DynamoDB: a team that fails,
      or falls behind, fills only its own queue and DLQ;
    - ``TitleUploaded`` goes to the encoding-requests queue; the starter runs one encoding workflow per upload
      (a :class:`Saga`: encode, then publish, discarding the renditions if publishing fails), whose last step puts
      ``TitlePublished`` back on the bus, for the teams that want it.
    """

    def __init__(self, scope: Construct, construct_id: str, *, profile: Profile | None = None, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        blueprint = Blueprint.create(
            self,
            profile or Profile.of(self),
            interface_endpoints=[ec2.InterfaceVpcEndpointAwsService.EVENTBRIDGE, ec2.InterfaceVpcEndpointAwsService.STEP_FUNCTIONS],
        )
        common, dashboard, queue = blueprint.common, blueprint.dashboard, blueprint.queue

        bus = EventBus(self, "Bus", **common)
        breakers = StateTable(self, "CircuitBreakers", partition_key="pk", time_to_live_attribute="expires_at", **common)
        dashboard.monitor(bus).monitor(breakers)

        for team in TEAMS:
            events_queue = queue(team.queue_id)
            consumer = blueprint.function(
                team.function_id, "case_netflix_team_consumer", environment={"TEAM_NAME": team.name, "BREAKER_TABLE_NAME": breakers.table.table_name}
            )
            breakers.grant_items(consumer, "dynamodb:GetItem", "dynamodb:UpdateItem")
            QueueEventSource(self, f"{team.name}Source", consumer=consumer, queue=events_queue, max_concurrency=5)
            bus.add_rule(f"{team.name}Rule", description=team.description, event_pattern=team.pattern, target=events_queue)

        encodings = StateTable(self, "Encodings", partition_key="pk", **common)
        dashboard.monitor(encodings)
        encoder = blueprint.function(
            "EncodingSteps", "case_netflix_encoding", environment={"ENCODINGS_TABLE_NAME": encodings.table.table_name, "BUS_NAME": bus.bus.event_bus_name}
        )
        encodings.grant_items(encoder, "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem")
        bus.grant_put_events(encoder, sources=[STUDIO_SOURCE])

        title = {"title.$": "$.title"}

        def step(state_id: str, action: str, **extra: str) -> Invoke:
            return Invoke(state_id, encoder, {"action": action, **title, **extra})

        workflow = Saga(
            self,
            "EncodingWorkflow",
            steps=[
                SagaStep(step("EncodeRenditions", "encode"), step("DiscardRenditions", "discard")),
                SagaStep(step("PublishTitle", "publish")),
            ],
            on_failure=step("RecordCompensating", "record", to="COMPENSATING", **{"error.$": "$.error"}),
            on_compensated=step("RecordCompensated", "record", to="COMPENSATED"),
            on_abandoned=step("RecordAbandoned", "record", to="ABANDONED"),
            **common,
        )
        dashboard.monitor(workflow)

        requests = queue("EncodingRequests")
        starter = blueprint.function(
            "EncodingStarter", "case_netflix_encoding_starter", environment={"STATE_MACHINE_ARN": workflow.state_machine.state_machine_arn}
        )
        workflow.grant_start_execution(starter)
        QueueEventSource(self, "EncodingRequestsSource", consumer=starter, queue=requests, max_concurrency=2)
        bus.add_rule(
            "EncodingRule",
            description="Uploaded titles, to the encoding workflow's starter",
            event_pattern=events.EventPattern(source=[STUDIO_SOURCE], detail_type=[TITLE_UPLOADED.name]),
            target=requests,
        )

        CfnOutput(self, "BusName", value=bus.bus.event_bus_name)
        CfnOutput(self, "EncodingWorkflowArn", value=workflow.state_machine.state_machine_arn)
        CfnOutput(self, "AlarmTopicArn", value=blueprint.alarms.topic_arn)
