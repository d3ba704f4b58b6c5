"""SequentialOffer: a Step Functions workflow that offers a job to candidates one at a time, each with a task token."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aws_cdk import ArnFormat, Duration, Names, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from . import acknowledgements as ack
from ._iam import ManagedPolicyRole
from ._interfaces import function_of
from ._validation import check_range, require
from .encryption import key_or_new
from .function import HandlerFunction
from .monitoring import step_functions as sfn_monitoring
from .monitoring._alarms import alarm_topic_for
from .profile import Profile
from .saga import TRANSIENT_ERRORS, Invoke

#: The errors that end one offer without taking the job, besides the refusals the caller names.
TIMEOUT_ERRORS = ("States.Timeout", "States.HeartbeatTimeout")
DEFAULT_TIMEOUT = Duration.hours(1)
DEFAULT_OFFER_TIMEOUT = Duration.seconds(15)
_BACKOFF = dict(interval=Duration.seconds(1), backoff_rate=2.0, max_delay=Duration.seconds(10), jitter_strategy=sfn.JitterType.FULL)


class SequentialOffer(Construct):
    """Offer a job to the candidates of ``$.candidates`` in turn until one takes it: a Step Functions standard workflow.

    For candidate ``i`` (0-based, at ``$.offer.attempt``) the workflow invokes ``offer`` with
    ``lambda:invoke.waitForTaskToken`` and the payload ``{**payload, "candidate": <the candidate>, "attempt": i,
    "task_token": <token>}``, then waits for someone to answer with the token:

    - ``SendTaskSuccess``: the candidate took it; its output goes to ``$.accepted`` and ``on_accepted`` runs;
    - ``SendTaskFailure`` with one of ``refusal_errors``, no answer within ``offer_timeout`` (``States.Timeout``), no
      ``SendTaskHeartbeat`` within ``heartbeat`` (``States.HeartbeatTimeout``), or any other failure of the offer
      (the function's own error after ``transient_attempts`` retries of Lambda's transient errors): the error goes to
      ``$.last_error`` and the next candidate gets the offer;
    - when no candidate is left, ``on_exhausted`` runs (with ``$.offer.attempt`` = the number of candidates).

    ``on_accepted`` and ``on_exhausted`` must finish: they are retried on any error (3 times, backoff from 1 s); if one
    still fails the execution FAILS, which raises the failed-executions alarm. Both receive the state (``$.ride``...,
    ``$.current.candidate``, ``$.offer``) through their :class:`Invoke` payload (``"field.$": "$.path"``).

    Logs every event (level ALL, without execution data) to a log group encrypted with the key, X-Ray tracing, the
    state machine's data encrypted with the same key; alarms on failed, timed-out and aborted executions.

    :param offer: the function that delivers one offer (and may answer it itself, e.g. ``SendTaskFailure`` when the
        candidate cannot be reached). Required.
    :param on_accepted: runs when a candidate took the job. Required.
    :param on_exhausted: runs when every candidate refused or let the offer lapse. Required.
    :param payload: more fields of the offer's payload (``"field.$": "$.path"`` reads the state). Default: none.
    :param refusal_errors: errors of ``SendTaskFailure`` that mean "no" (all errors move on; these are the expected ones,
        named in the docs and the definition's comment). Default: none.
    :param offer_timeout: how long one candidate has to answer (``TimeoutSeconds``, 1 s to 1 hour). Default: 15 seconds.
    :param heartbeat: the longest gap between heartbeats before the offer lapses (``HeartbeatSeconds``, less than
        ``offer_timeout``). Default: none (no heartbeat needed).
    :param transient_attempts: retries of the offer on Lambda's transient errors (0 to 5). Default: 2.
    :param timeout: the longest an execution may run. Default: 1 hour.
    :param encryption_key: Default: a new key with rotation.
    :param alarm_topic: Default: no action (synth warns that nobody is notified).
    :param profile: Default: from context.

    Attributes: ``state_machine``, ``state_machine_name``, ``role``, ``log_group``, ``key``, ``alarms``, ``offer_timeout``, ``heartbeat``.
    """

    monitoring_label = "sequential offer"

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        offer: HandlerFunction | lambda_.IFunction,
        on_accepted: Invoke,
        on_exhausted: Invoke,
        payload: Mapping[str, Any] | None = None,
        refusal_errors: Sequence[str] = (),
        offer_timeout: Duration = DEFAULT_OFFER_TIMEOUT,
        heartbeat: Duration | None = None,
        transient_attempts: int = 2,
        timeout: Duration = DEFAULT_TIMEOUT,
        encryption_key: kms.IKey | None = None,
        alarm_topic: sns.ITopic | None = None,
        profile: Profile | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        alarm_topic = alarm_topic_for(self, alarm_topic)
        self.profile = profile or Profile.of(self)
        offer_seconds = int(offer_timeout.to_seconds())
        check_range("offer_timeout (seconds)", offer_seconds, 1, 3600)
        heartbeat_seconds = int(heartbeat.to_seconds()) if heartbeat is not None else None
        if heartbeat_seconds is not None:
            check_range("heartbeat (seconds)", heartbeat_seconds, 1, max(1, offer_seconds - 1))
        check_range("transient_attempts", transient_attempts, 0, 5)
        reserved = {"candidate", "attempt", "task_token"} & {k.removesuffix(".$") for k in (payload or {})}
        require(not reserved, f"payload may not set {sorted(reserved)}: the workflow sets them")
        require(on_accepted.state_id != on_exhausted.state_id, "on_accepted and on_exhausted need their own state_id")
        self.offer_timeout, self.heartbeat = offer_timeout, heartbeat
        self.key: kms.IKey = key_or_new(self, encryption_key, self.profile)
        self.role = ManagedPolicyRole(self, "Role", assumed_by=iam.ServicePrincipal("states.amazonaws.com"), description=f"Runs {self.node.path}")
        ack.aws_solutions_iam5_state_machine_delivery(self.role.policy)
        partition = Stack.of(self).partition
        function = function_of(offer)
        self.role.add_to_principal_policy(iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[function.function_arn]))

        start = sfn.Pass(
            self,
            "Start offers",
            parameters={"attempt": 0, "count.$": "States.ArrayLength($.candidates)"},
            result_path="$.offer",
        )
        more = sfn.Choice(self, "Any candidate left?")
        take = sfn.Pass(self, "Next candidate", parameters={"candidate.$": "States.ArrayGetItem($.candidates, $.offer.attempt)"}, result_path="$.current")
        state: dict[str, Any] = {
            "Type": "Task",
            "Comment": f"Waits for SendTaskSuccess, or SendTaskFailure ({', '.join(refusal_errors) or 'any error'}), at most {offer_seconds} s",
            "Resource": f"arn:{partition}:states:::lambda:invoke.waitForTaskToken",
            "Parameters": {
                "FunctionName": function.function_arn,
                "Payload": {**(payload or {}), "candidate.$": "$.current.candidate", "attempt.$": "$.offer.attempt", "task_token.$": "$$.Task.Token"},
            },
            "TimeoutSeconds": offer_seconds,
            "ResultPath": "$.accepted",
        }
        if heartbeat_seconds is not None:
            state["HeartbeatSeconds"] = heartbeat_seconds
        ask = sfn.CustomState(self, "Offer", state_json=state)
        if transient_attempts:
            ask.add_retry(errors=list(TRANSIENT_ERRORS), max_attempts=transient_attempts, **_BACKOFF)
        following = sfn.Pass(
            self,
            "Offer lapsed",
            parameters={"attempt.$": "States.MathAdd($.offer.attempt, 1)", "count.$": "$.offer.count"},
            result_path="$.offer",
        )
        # Refusals and timeouts are the expected ways an offer ends; any other error (the offer could not be made) is
        # caught the same way so the next candidate is not kept waiting, and shows as the function's errors.
        ask.add_catch(following, errors=[*refusal_errors, *TIMEOUT_ERRORS], result_path="$.last_error")
        ask.add_catch(following, errors=["States.ALL"], result_path="$.last_error")
        following.next(more)

        failed = sfn.Fail(self, "Outcome not recorded", error="OutcomeNotRecorded", cause="on_accepted or on_exhausted failed after its retries")

        def must_finish(task: Invoke) -> sfn.CustomState:
            target = function_of(task.function)
            self.role.add_to_principal_policy(iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[target.function_arn]))
            state = sfn.CustomState(
                self,
                task.state_id,
                state_json={
                    "Type": "Task",
                    "Resource": f"arn:{partition}:states:::lambda:invoke",
                    "Parameters": {"FunctionName": target.function_arn, "Payload": dict(task.payload)},
                    "ResultSelector": {"result.$": "$.Payload"},
                    "ResultPath": f"$.results.{task.state_id}",
                },
            )
            state.add_retry(errors=["States.ALL"], max_attempts=3, **_BACKOFF)
            state.add_catch(failed, result_path="$.outcome_error")
            return state

        ask.next(must_finish(on_accepted).next(sfn.Succeed(self, "Accepted")))
        exhausted = must_finish(on_exhausted).next(sfn.Succeed(self, "Exhausted"))
        more.when(sfn.Condition.number_less_than_json_path("$.offer.attempt", "$.offer.count"), take.next(ask))
        more.otherwise(exhausted)

        self.log_group = logs.LogGroup(
            self, "LogGroup", encryption_key=self.key, retention=self.profile.log_retention, removal_policy=self.profile.removal_policy
        )
        # A name of its own, so that grant_task_response can name the ARN without referring to the state machine: the
        # offer function may then answer its own offers (DriverUnreachable) without a dependency cycle.
        self.state_machine_name = Names.unique_resource_name(self, max_length=80, separator="-")
        self.state_machine = sfn.StateMachine(
            self,
            "Resource",
            state_machine_name=self.state_machine_name,
            definition_body=sfn.DefinitionBody.from_chainable(start.next(more)),
            state_machine_type=sfn.StateMachineType.STANDARD,
            timeout=timeout,
            role=self.role,
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
            encryption_configuration=sfn.CustomerManagedEncryptionConfiguration(self.key),
        )
        policy = Stack.of(self).get_logical_id(self.role.policy.node.default_child)
        self.state_machine.node.default_child.add_override("DependsOn", [policy])
        self.alarms: list[cloudwatch.Alarm] = sfn_monitoring.alarms(self, self.state_machine, alarm_topic)

    def grant_start_execution(self, grantee: iam.IGrantable) -> iam.Grant:
        """``states:StartExecution`` on this workflow."""
        return self.state_machine.grant_start_execution(grantee)

    def grant_task_response(self, grantee: iam.IGrantable) -> iam.Grant:
        """``states:SendTaskSuccess``, ``SendTaskFailure`` and ``SendTaskHeartbeat`` on this workflow: answer an offer.

        The ARN is built from the workflow's name, not taken from the state machine, so the ``offer`` function itself
        may be granted (its policy would otherwise depend on the state machine, which depends on the function).
        """
        arn = Stack.of(self).format_arn(
            service="states", resource="stateMachine", resource_name=self.state_machine_name, arn_format=ArnFormat.COLON_RESOURCE_NAME
        )
        actions = ["states:SendTaskSuccess", "states:SendTaskFailure", "states:SendTaskHeartbeat"]
        return iam.Grant.add_to_principal(grantee=grantee, actions=actions, resource_arns=[arn])

    def dashboard_widgets(self, title: str) -> list[cloudwatch.IWidget]:
        return sfn_monitoring.widgets(title, self.state_machine)
