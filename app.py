#!/usr/bin/env python3
"""The CDK app: one stack per blueprint.

npx cdk synth                       # sandbox profile (default)
npx cdk synth -c profile=production
"""

from __future__ import annotations

from aws_cdk import App

from messaging_constructs import Profile
from stacks.capstone_analytics import CapstoneAnalyticsStack
from stacks.capstone_orders import CapstoneOrdersStack
from stacks.case_airbnb import CaseAirbnbStack
from stacks.case_netflix import CaseNetflixStack
from stacks.case_spotify import CaseSpotifyStack
from stacks.case_uber import CaseUberStack
from stacks.compliance import add_packs
from stacks.exercise_01_queues import Exercise01QueuesStack
from stacks.exercise_02_eventbridge import Exercise02EventBridgeStack
from stacks.exercise_03_streaming import Exercise03StreamingStack
from stacks.exercise_04_event_sourcing import Exercise04EventSourcingStack
from stacks.exercise_05_enterprise_messaging import Exercise05EnterpriseMessagingStack


def build_app(app: App | None = None, *, compliance: bool = True) -> App:
    """Add every blueprint stack and (unless ``compliance=False``) the compliance packs to ``app``."""
    app = app or App()
    profile = Profile.of(app)
    Exercise01QueuesStack(app, "Exercise01Queues", profile=profile, description="Exercise 01: SQS and SNS fan-out with DLQs and redrive")
    Exercise02EventBridgeStack(app, "Exercise02EventBridge", profile=profile, description="Exercise 02: event-driven microservices on an EventBridge bus")
    Exercise03StreamingStack(app, "Exercise03Streaming", profile=profile, description="Exercise 03: clickstream streaming on Amazon MSK")
    Exercise04EventSourcingStack(app, "Exercise04EventSourcing", profile=profile, description="Exercise 04: event sourcing and CQRS on DynamoDB")
    Exercise05EnterpriseMessagingStack(
        app, "Exercise05EnterpriseMessaging", profile=profile, description="Exercise 05: Amazon MQ (RabbitMQ and ActiveMQ) bridged to EventBridge"
    )
    CapstoneOrdersStack(
        app, "CapstoneOrders", profile=profile, description="Capstone 07-A: real-time order processing with an outbox, a saga and a circuit breaker"
    )
    CapstoneAnalyticsStack(
        app, "CapstoneAnalytics", profile=profile, description="Capstone 07-B: event-driven analytics with an Iceberg lake, real-time aggregates and erasure"
    )
    CaseNetflixStack(app, "CaseNetflix", profile=profile, description="Case study: Netflix, microservices on a shared bus with per-team routes")
    CaseUberStack(app, "CaseUber", profile=profile, description="Case study: Uber, real-time driver positions, H3 matching and offers with a timeout")
    CaseAirbnbStack(app, "CaseAirbnb", profile=profile, description="Case study: Airbnb, bookings on an event-sourced ledger with an idempotent payment saga")
    CaseSpotifyStack(app, "CaseSpotify", profile=profile, description="Case study: Spotify, event delivery with erasure by key deletion")
    if compliance:
        add_packs(app)
    return app


if __name__ == "__main__":
    build_app().synth()
