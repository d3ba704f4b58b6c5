"""Exercise04EventSourcing: bank accounts as event-sourced aggregates, with a CQRS read model."""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from messaging_constructs import EventStore, Profile, Projection

from ._blueprint import Blueprint
from ._paths import lambda_code

#: The command handler writes a snapshot with every 5th event.
SNAPSHOT_EVERY = 5
#: Lost version races are retried this many times before the caller gets a Conflict.
MAX_CONFLICT_RETRIES = 3


class Exercise04EventSourcingStack(Stack):
    """Accounts kept as events in DynamoDB; balances kept as a read model.

    - the command function (invoked through the Lambda Invoke API) loads an
      account from its latest snapshot and the events after it, decides, and
      appends the new events with a condition on the version, in one
      transaction with a snapshot every few events; a lost race is retried,
      then reported as a conflict; domain rules are answered with clear errors;
    - a projection reads the store's stream (new events only) and keeps a
      balance per account, applying an event only if it is newer than what the
      read model has, so redelivery and reordering do no harm;
    - a rebuild function replays the whole store (the table, not the stream)
      into a fresh read model.
    """

    def __init__(self, scope: Construct, construct_id: str, *, profile: Profile | None = None, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        blueprint = Blueprint.create(self, profile or Profile.of(self), interface_endpoints=[])
        common, dashboard = blueprint.common, blueprint.dashboard

        store = EventStore(self, "EventStore", **common)
        dashboard.monitor(store)

        commands = blueprint.function(
            "Commands",
            "account_commands",
            environment={
                "EVENT_STORE_TABLE": store.table.table_name,
                "SNAPSHOT_EVERY": str(SNAPSHOT_EVERY),
                "MAX_CONFLICT_RETRIES": str(MAX_CONFLICT_RETRIES),
            },
        )
        store.grant_read(commands)
        store.grant_append(commands)
        store.add_conflict_alarm("CommandConflictsAlarm", commands.metric("ConcurrencyConflicts"))

        balances = Projection(
            self,
            "Balances",
            event_store=store,
            code_path=lambda_code("account_projection"),
            service_name="account_projection",
            read_model_key="account_id",
            # The projection and the rebuild only ever upsert conditionally.
            read_model_actions=["dynamodb:UpdateItem"],
            network=blueprint.network,
            **common,
        )
        rebuild = balances.add_rebuild()
        dashboard.monitor(balances)

        CfnOutput(self, "CommandsFunctionName", value=commands.function.function_name)
        CfnOutput(self, "RebuildFunctionName", value=rebuild.function.function_name)
        CfnOutput(self, "EventStoreTableName", value=store.table.table_name)
        CfnOutput(self, "ReadModelTableName", value=balances.read_model.table_name)
        CfnOutput(self, "RebuildTableName", value=balances.rebuild_table.table_name if balances.rebuild_table else "-")
        CfnOutput(self, "ProjectionDeadLetterQueueUrl", value=balances.dead_letter_queue.queue_url)
