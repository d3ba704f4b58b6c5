"""CaseUber: driver positions over MQTT into an H3 index, nearest drivers by ring search, offers with a timeout, live push."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from messaging_constructs import DeviceRule, EventStream, Profile, PushWebSocketApi, SecureRestApi, StateTable
from messaging_constructs.acknowledgements import lambda_inside_vpc_websocket_pusher
from messaging_constructs.saga import Invoke
from messaging_constructs.sequential_offer import SequentialOffer
from messaging_runtime.rides import DRIVER_DECLINED, DRIVER_UNREACHABLE

from ._blueprint import Blueprint

#: Drivers publish on rides/drivers/<thing name>/events; the rule puts the thing name in driver_id.
DRIVER_TOPIC_PREFIX = "rides/drivers"
#: A driver has this long to answer an offer, and must show it is still looking at it this often (heartbeat).
OFFER_TIMEOUT = Duration.seconds(15)
OFFER_HEARTBEAT = Duration.seconds(5)
#: Drivers offered a ride at most, nearest first.
MAX_CANDIDATES = 5
#: An index entry lives this long after its position: three refreshes of a parked driver's app (one a minute).
INDEX_KEEP = Duration.minutes(3)


def ride_request_model() -> dict[str, Any]:
    """The draft 4 schema API Gateway validates ``POST /rides`` with (``messaging_runtime.rides.RideRequest``)."""
    return {
        "type": "object",
        "required": ["lat", "lng"],
        "additionalProperties": False,
        "properties": {"lat": {"type": "number", "minimum": -90, "maximum": 90}, "lng": {"type": "number", "minimum": -180, "maximum": 180}},
    }


class CaseUberStack(Stack):
    """Uber's dispatch in small: where the drivers are, who is nearest, who takes the ride, the rider watching live.

    - drivers' apps publish positions over MQTT to AWS IoT Core (``rides/drivers/<driver>/events``), filtered in
      the app (``messaging_runtime.driver_index.DistanceFilter``: moved 50 m, availability changed, or a refresh a
      minute); the :class:`DeviceRule` puts them on a stream partitioned by driver;
    - the positions handler keeps the H3 index (resolution 8) in DynamoDB: driver -> last position and cell,
      cell -> available drivers, entries expiring 3 minutes after their position (TTL, and filtered on read);
    - ``POST /rides`` runs the ring search (``h3.grid_disk`` with k = 0, 1, 2... until the nearest are certain) and
      starts the dispatch, a :class:`SequentialOffer`: each candidate in turn gets the offer on its WebSocket
      channel and has 15 s to answer (heartbeat every 5 s), a refusal or silence moves to the next;
    - riders and drivers hold one WebSocket API (:class:`PushWebSocketApi`, channels ``ride-<id>`` and
      ``driver-<id>``): offers go to drivers, statuses to the rider, drivers answer on it.
    """

    def __init__(self, scope: Construct, construct_id: str, *, profile: Profile | None = None, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        profile = profile or Profile.of(self)
        blueprint = Blueprint.create(
            self, profile, interface_endpoints=[ec2.InterfaceVpcEndpointAwsService.STEP_FUNCTIONS, ec2.InterfaceVpcEndpointAwsService.KMS]
        )
        common, dashboard = blueprint.common, blueprint.dashboard
        geo = blueprint.layer("geo", "h3 (Uber's hexagonal grid) for the driver index")

        positions = EventStream(self, "Positions", shard_count=2, **common)
        drivers = DeviceRule(
            self,
            "Drivers",
            stream=positions,
            topic_prefix=DRIVER_TOPIC_PREFIX,
            partition_key="${driver_id}",
            device_field="driver_id",
            platform="driver_app",
            **common,
        )
        index = StateTable(self, "DriverIndex", partition_key="pk", sort_key="sk", time_to_live_attribute="expires_at", **common)
        indexer = blueprint.function(
            "PositionsHandler",
            "case_uber_positions",
            environment={"INDEX_TABLE_NAME": index.table.table_name, "INDEX_KEEP_SECONDS": str(int(INDEX_KEEP.to_seconds()))},
            layers=[geo],
        )
        index.grant_items(indexer, "dynamodb:UpdateItem", "dynamodb:PutItem", "dynamodb:DeleteItem")
        # Positions are worth little once old: a second of batching at most, and a record older than 5 minutes is given up.
        positions.add_consumer(indexer, batch_size=500, max_batching_window=Duration.seconds(1), max_record_age=Duration.minutes(5))
        dashboard.monitor(positions).monitor(drivers).monitor(index)

        rides = StateTable(self, "Rides", partition_key="ride_id", time_to_live_attribute="expires_at", **common)
        connections = blueprint.function("RideConnections", "case_uber_connections", environment={"RIDES_TABLE_NAME": rides.table.table_name})
        live = PushWebSocketApi(self, "RideChannels", handler=connections, subscription_key="channel", **common)
        rides.grant_items(connections, "dynamodb:GetItem", "dynamodb:UpdateItem")
        # The management API (@connections) is served on API Gateway's public endpoint only: the offer handler runs outside the network.
        offers = blueprint.function(
            "OfferHandler",
            "case_uber_offers",
            environment={
                "RIDES_TABLE_NAME": rides.table.table_name,
                "CONNECTIONS_TABLE_NAME": live.connections.table.table_name,
                "WEBSOCKET_ENDPOINT": live.callback_url,
                "OFFER_SECONDS": str(int(OFFER_TIMEOUT.to_seconds())),
            },
            in_network=False,
        )
        if profile.functions_in_vpc:
            lambda_inside_vpc_websocket_pusher(offers)
        live.grant_push(offers)
        rides.grant_items(offers, "dynamodb:UpdateItem")

        outcome = {"ride.$": "$.ride", "attempt.$": "$.offer.attempt"}
        dispatch = SequentialOffer(
            self,
            "Dispatch",
            offer=offers,
            payload={"action": "offer", "ride.$": "$.ride"},
            refusal_errors=[DRIVER_DECLINED, DRIVER_UNREACHABLE],
            offer_timeout=OFFER_TIMEOUT,
            heartbeat=OFFER_HEARTBEAT,
            on_accepted=Invoke("RecordAssigned", offers, {"action": "assigned", "driver.$": "$.current.candidate", "answer.$": "$.accepted", **outcome}),
            on_exhausted=Invoke("RecordNoDriver", offers, {"action": "no_driver", **outcome}),
            timeout=Duration.minutes(10),
            **common,
        )
        dispatch.grant_task_response(offers)  # DriverUnreachable: the offer reached no connection
        dispatch.grant_task_response(connections)  # the drivers' answers
        dashboard.monitor(live).monitor(rides).monitor(dispatch)

        api = SecureRestApi(self, "RideApi", description="Request a ride", latency_alarm_threshold=Duration.millis(500), **common)
        requests = blueprint.function(
            "RideRequests",
            "case_uber_rides",
            environment={
                "INDEX_TABLE_NAME": index.table.table_name,
                "RIDES_TABLE_NAME": rides.table.table_name,
                "STATE_MACHINE_ARN": dispatch.state_machine.state_machine_arn,
                "STATUS_TOKEN_KEY_ID": live.token_key.key_arn,
                "MAX_CANDIDATES": str(MAX_CANDIDATES),
            },
            layers=[geo],
        )
        index.grant_items(requests, "dynamodb:Query")
        rides.grant_items(requests, "dynamodb:PutItem", "dynamodb:GetItem")
        dispatch.grant_start_execution(requests)
        live.grant_issue_tokens(requests)
        api.add_route("POST", "/rides", requests, request_model=ride_request_model(), required_headers=["Idempotency-Key"])
        dashboard.monitor(api)

        CfnOutput(self, "RideApiUrl", value=api.url)
        CfnOutput(self, "RideChannelsUrl", value=live.url)
        CfnOutput(self, "ChannelTokenKeyArn", value=live.token_key.key_arn)
        CfnOutput(self, "DriverTopicFilter", value=drivers.topic_filter)
        CfnOutput(self, "DriverPolicyName", value=drivers.device_policy.ref)
        CfnOutput(self, "DispatchStateMachineArn", value=dispatch.state_machine.state_machine_arn)
        CfnOutput(self, "AlarmTopicArn", value=blueprint.alarms.topic_arn)
