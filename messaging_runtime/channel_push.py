"""Push one JSON message to every connection subscribed to a channel of a ``PushWebSocketApi``.

The connections table is the one the API's connection handler writes (partition key ``subscription_key``, sort key
``connection_id``). Each connection gets the message through the stage's management API (``PostToConnection``); a
connection that is gone (``GoneException``: closed without a ``$disconnect`` that reached the table) is deleted. Any
other error of a post is collected and raised as ``PushFailed`` once every connection has been tried, so the caller's
retry reaches the ones that failed (and repeats it to the others: messages carry what lets a client drop a repeat)::

    pusher = ChannelPusher(boto3.client("dynamodb"), table, boto3.client("apigatewaymanagementapi", endpoint_url=url), key="channel")
    posted = pusher.push("ride-r-123", {"type": "ride_status", "status": "OFFERED"})
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError


class PushFailed(Exception):
    """Some connections of a channel could not be sent the message."""


@dataclass
class ChannelPusher:
    """Posts to a channel's connections; ``gone`` counts the connections removed because they were closed."""

    dynamodb: Any
    table_name: str
    management: Any
    key: str = "channel"
    gone: int = field(default=0, init=False)

    def connections(self, channel: str) -> Iterator[str]:
        pages = self.dynamodb.get_paginator("query").paginate(
            TableName=self.table_name,
            KeyConditionExpression="#k = :channel",
            ExpressionAttributeNames={"#k": self.key},
            ExpressionAttributeValues={":channel": {"S": channel}},
            ProjectionExpression="connection_id",
        )
        for page in pages:
            yield from (item["connection_id"]["S"] for item in page["Items"])

    def push(self, channel: str, message: dict[str, Any]) -> int:
        """Post ``message`` (as compact JSON) to every connection of ``channel``; the number posted (0: nobody listens)."""
        data, posted, failures = json.dumps(message, separators=(",", ":")).encode(), 0, []
        for connection_id in self.connections(channel):
            try:
                self.management.post_to_connection(ConnectionId=connection_id, Data=data)
                posted += 1
            except self.management.exceptions.GoneException:
                self.dynamodb.delete_item(TableName=self.table_name, Key={self.key: {"S": channel}, "connection_id": {"S": connection_id}})
                self.gone += 1
            except (ClientError, BotoCoreError) as error:
                failures.append(f"{connection_id}: {error}")
        if failures:
            raise PushFailed(f"{len(failures)} of {posted + len(failures)} connections of {channel} not sent: {'; '.join(failures)}")
        return posted
