"""Saga: a Step Functions standard workflow of steps, each undone by its compensation when a later one fails."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from . import acknowledgements as ack
from ._grants import grant_send_messages
from ._iam import ManagedPolicyRole
from ._interfaces import function_of, queue_of
from ._validation import check_range, check_threshold, require
from .encryption import key_or_new
from .function import HandlerFunction
from .monitoring import step_functions as sfn_monitoring
from .monitoring._alarms import alarm_topic_for
from .profile import Profile
from .queue import SecureQueue

#: The longest an execution runs by default (then it times out, alarming).
DEFAULT_TIMEOUT = Duration.days(1)
#: The error ``on_failure`` raises when the saga had in fact completed: the last step's effect landed before its
#: invocation failed (say its function timed out after the write), so there is nothing to undo. Not retried; the
#: execution succeeds. ``messaging_runtime.saga_steps.SagaAlreadyCompleted`` raises it from a Python function.
ALREADY_COMPLETED_ERROR = "SagaAlreadyCompleted"
#: Errors worth a retry: Lambda's own transient failures and throttling (a step's business errors are not).
TRANSIENT_ERRORS = (
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "Lambda.ClientExecutionTimeoutException",
)


@dataclass(frozen=True)
class Invoke:
    """A task that invokes a function synchronously with ``payload`` (``"field.$": "$.path"`` entries read the state's input).

    The function's error (its exception's class name) is the task's error. Its result goes to
    ``$.results.<state_id>.result``, beside the saga's input, which every step sees whole.
    """

    state_id: str
    function: HandlerFunction | lambda_.IFunction
    payload: Mapping[str, Any]


@dataclass(frozen=True)
class AwaitCallback:
    """A task that sends ``body`` and a task token (as ``task_token``) to ``queue`` and waits for someone to answer
    with ``SendTaskSuccess`` (the answer goes to ``$.<state_id>``) or ``SendTaskFailure`` (its error fails the step),
    at most ``timeout`` (then the error is ``States.Timeout``). Never retried: a second message would be a second question.
    """

    state_id: str
    queue: SecureQueue | sqs.IQueue
    body: Mapping[str, Any]
    timeout: Duration


Task = Invoke | AwaitCallback


@dataclass(frozen=True)
class SagaStep:
    """One step forward of a saga, and the task that undoes it (or None when nothing needs undoing).

    :param action: the step's task. Its failure (after retries of ``TRANSIENT_ERRORS``) starts the compensations.
    :param compensation: undoes ``action``. It must be idempotent and harmless when ``action`` never ran
        or only half ran: it runs for the step that failed too, whose effect may have happened before the error.
    """

    action: Task
    compensation: Invoke | None = None


class Saga(Construct):
    """A saga as a Step Functions standard workflow: steps forward, compensations in reverse on any failure.

    The workflow runs ``steps`` in order, then ``on_completed`` if given. When a step
    fails (its error after retries, or a timeout), the error goes to
    ``$.error``, ``on_failure`` runs (e.g. record that the order is being
    compensated), then the compensations of that step and of every step before
    it, last first, then ``on_compensated``, and the execution succeeds: a
    compensated saga is a business outcome, not a failure. An execution started
    with ``compensate`` (``{"Error": ..., "Cause": ...}``) in its input runs no
    step: it goes straight to ``on_failure`` and every compensation, which is
    how a reconciler ends an order that cannot finish. When ``on_failure``
    fails with ``ALREADY_COMPLETED_ERROR`` (it found the saga's work done, e.g.
    the last step wrote its result and then timed out), nothing is compensated
    and the execution succeeds.

    Retries: each action on ``TRANSIENT_ERRORS``, ``transient_attempts`` times
    with exponential backoff (rate 2, from 1 s, at most 30 s) and full jitter;
    each compensation and the failure path on any error, ``compensation_attempts``
    times the same way, since they must finish. If one still fails, ``on_abandoned``
    runs (e.g. mark the order FAILED for a person) and the execution FAILS,
    which raises the failed-executions alarm.

    Logs every event (level ALL, without execution data) to a log group
    encrypted with the key; X-Ray tracing; the state machine's data encrypted
    with the same key. Alarms on failed, timed-out and aborted executions.

    :param steps: the steps, in order (at least one). Required.
    :param on_failure: runs first when a step fails, with the error at ``$.error``. Required.
    :param on_compensated: runs after the compensations. Required.
    :param on_abandoned: runs when the failure path itself fails, before the execution fails. Default: none.
    :param on_completed: runs after the last step; a failure there is not compensated (make it a step if it may fail). Default: none.
    :param timeout: the longest an execution may run (then it times out, alarming). Default: 1 day.
    :param transient_attempts: retries of an action on transient errors (0 to 10). Default: 4.
    :param retryable_errors: the steps' own errors that are retried like the transient ones (e.g. a provider's
        timeout); any other error of a step goes straight to the compensations. Default: none.
    :param compensation_attempts: retries of each compensation (1 to 10). Default: 6.
    :param encryption_key: Default: a new key with rotation.
    :param failed_executions_alarm_threshold: ``ExecutionsFailed`` in 5 minutes that raise the alarm. Default: 1 (any).
    :param alarm_topic: Default: no action (synth warns that nobody is notified).
    :param profile: Default: from context.

    Tasks are :class:`Invoke` (a function, synchronously) and :class:`AwaitCallback`
    (a message with a task token, then wait); the saga's role may invoke exactly
    those functions and send to exactly those queues.

    Attributes: ``state_machine``, ``role``, ``log_group``, ``key``, ``alarms``.
    """

    monitoring_label = "saga"

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        steps: Sequence[SagaStep],
        on_failure: Invoke,
        on_compensated: Invoke,
        on_abandoned: Invoke | None = None,
        on_completed: Invoke | None = None,
        timeout: Duration = DEFAULT_TIMEOUT,
        transient_attempts: int = 4,
        retryable_errors: Sequence[str] = (),
        compensation_attempts: int = 6,
        encryption_key: kms.IKey | None = None,
        failed_executions_alarm_threshold: int = 1,
        alarm_topic: sns.ITopic | None = None,
        profile: Profile | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        require(bool(steps), "a saga needs at least one step")
        check_range("transient_attempts", transient_attempts, 0, 10)
        check_range("compensation_attempts", compensation_attempts, 1, 10)
        check_threshold("failed_executions_alarm_threshold", failed_executions_alarm_threshold, 1)
        alarm_topic = alarm_topic_for(self, alarm_topic)
        self.profile = profile or Profile.of(self)
        self.key: kms.IKey = key_or_new(self, encryption_key, self.profile)
        self.role = ManagedPolicyRole(self, "Role", assumed_by=iam.ServicePrincipal("states.amazonaws.com"), description=f"Runs the {construct_id} saga")
        # Logs delivery and X-Ray take no resource ARN; everything the tasks do is granted on its exact resource below.
        ack.aws_solutions_iam5_state_machine_delivery(self.role.policy)
        ids = [t.state_id for step in steps for t in (step.action, step.compensation) if t] + [
            t.state_id for t in (on_failure, on_compensated, on_abandoned, on_completed) if t
        ]
        require(len(ids) == len(set(ids)), f"every task needs its own state_id, got {sorted(ids)}")
        on_failure, on_compensated = self._task(on_failure), self._task(on_compensated)
        on_abandoned = self._task(on_abandoned) if on_abandoned else None
        on_completed = self._task(on_completed) if on_completed else None
        actions = [self._task(step.action) for step in steps]
        compensations = [self._task(step.compensation) if step.compensation else None for step in steps]

        abandoned: sfn.IChainable = sfn.Fail(self, "Abandoned", error="SagaAbandoned", cause="a compensation failed after its retries")
        if on_abandoned is not None:
            on_abandoned.add_catch(abandoned, result_path="$.abandon_error")
            abandoned = on_abandoned.next(abandoned)

        def must_finish(task: sfn.CustomState) -> sfn.CustomState:
            task.add_retry(errors=["States.ALL"], max_attempts=compensation_attempts, **_BACKOFF)
            task.add_catch(abandoned, result_path="$.compensation_error")
            return task

        # The compensation chain, last step's first: entering at a step's compensation undoes it and every earlier step.
        must_finish(on_compensated).next(sfn.Succeed(self, "Compensated"))
        entry: sfn.IChainable = on_compensated
        entries: list[sfn.IChainable] = []
        for compensation in compensations:
            if compensation is not None:
                entry = must_finish(compensation).next(entry)
            entries.append(entry)
        # Before must_finish's States.ALL retrier and catcher, which would otherwise take it (the first that matches wins).
        on_failure.add_retry(errors=[ALREADY_COMPLETED_ERROR], max_attempts=0)
        on_failure.add_catch(sfn.Succeed(self, "Completed after all"), errors=[ALREADY_COMPLETED_ERROR], result_path="$.already_completed")
        must_finish(on_failure)
        choose = sfn.Choice(self, "Compensate from")
        on_failure.next(choose)
        for action, start in zip(actions, entries, strict=True):
            choose.when(sfn.Condition.string_equals("$.failed_step", action.state_id), start)
        choose.otherwise(on_compensated)

        # An input with "compensate" ({"Error", "Cause"}) skips the steps: every compensation runs, as after the last step
        # failed with that error (how a reconciler ends a saga that cannot finish).
        requested = sfn.Pass(self, "Compensation requested", input_path="$.compensate", result_path="$.error")
        requested.next(sfn.Pass(self, "Compensate everything", result=sfn.Result.from_string(actions[-1].state_id), result_path="$.failed_step")).next(
            on_failure
        )
        chain: sfn.Chain | None = None
        for step, action in zip(steps, actions, strict=True):
            if isinstance(step.action, Invoke) and transient_attempts:
                action.add_retry(errors=[*TRANSIENT_ERRORS, *retryable_errors], max_attempts=transient_attempts, **_BACKOFF)
            failed = sfn.Pass(self, f"{action.state_id} failed", result=sfn.Result.from_string(action.state_id), result_path="$.failed_step")
            failed.next(on_failure)
            action.add_catch(failed, errors=["States.ALL"], result_path="$.error")
            chain = action if chain is None else chain.next(action)
        assert chain is not None
        if on_completed is not None:
            chain = chain.next(on_completed)
        chain.next(sfn.Succeed(self, "Completed"))
        start = sfn.Choice(self, "Start").when(sfn.Condition.is_present("$.compensate"), requested).otherwise(actions[0])

        self.log_group = logs.LogGroup(
            self, "LogGroup", encryption_key=self.key, retention=self.profile.log_retention, removal_policy=self.profile.removal_policy
        )
        self.state_machine = sfn.StateMachine(
            self,
            "Resource",
            definition_body=sfn.DefinitionBody.from_chainable(start),
            state_machine_type=sfn.StateMachineType.STANDARD,
            timeout=timeout,
            role=self.role,
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
            encryption_configuration=sfn.CustomerManagedEncryptionConfiguration(self.key),
        )
        # Step Functions checks the role's permissions (logging, the key) when the state machine is created: wait for its
        # managed policy. CDK's own dependency is on the role, which the RoleArn reference already orders (cfn-lint W3005).
        policy = Stack.of(self).get_logical_id(self.role.policy.node.default_child)
        self.state_machine.node.default_child.add_override("DependsOn", [policy])
        self.alarms: list[cloudwatch.Alarm] = sfn_monitoring.alarms(self, self.state_machine, alarm_topic, failed_threshold=failed_executions_alarm_threshold)

    def _task(self, task: Task) -> sfn.CustomState:
        """The state of ``task``, its input kept whole, and the role's exact permission for it."""
        partition = Stack.of(self).partition
        if isinstance(task, Invoke):
            function = function_of(task.function)
            # lambda:InvokeFunction on the function itself; CDK's LambdaInvoke would add every version and alias (``:*``).
            self.role.add_to_principal_policy(iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[function.function_arn]))
            state = {
                "Type": "Task",
                "Resource": f"arn:{partition}:states:::lambda:invoke",
                "Parameters": {"FunctionName": function.function_arn, "Payload": dict(task.payload)},
                # Beside the input, never over it: every later step reads the same document.
                "ResultSelector": {"result.$": "$.Payload"},
                "ResultPath": f"$.results.{task.state_id}",
            }
        else:
            check_range("timeout (seconds)", int(task.timeout.to_seconds()), 1, 365 * 24 * 3600)
            queue = queue_of(task.queue)
            grant_send_messages(self.role, task.queue)
            state = {
                "Type": "Task",
                "Resource": f"arn:{partition}:states:::sqs:sendMessage.waitForTaskToken",
                "Parameters": {"QueueUrl": queue.queue_url, "MessageBody": {**task.body, "task_token.$": "$$.Task.Token"}},
                "TimeoutSeconds": int(task.timeout.to_seconds()),
                "ResultPath": f"$.{task.state_id}",
            }
        return sfn.CustomState(self, task.state_id, state_json=state)

    def grant_start_execution(self, grantee: iam.IGrantable) -> iam.Grant:
        """``states:StartExecution`` on this saga."""
        return self.state_machine.grant_start_execution(grantee)

    def grant_manage_executions(self, grantee: iam.IGrantable) -> iam.Grant:
        """``states:DescribeExecution`` and ``states:StopExecution`` on this saga's executions (``execution:<name>:*``)."""
        stack = Stack.of(self)
        executions = f"arn:{stack.partition}:states:{stack.region}:{stack.account}:execution:{self.state_machine.state_machine_name}:*"
        grant = iam.Grant.add_to_principal(grantee=grantee, actions=["states:DescribeExecution", "states:StopExecution"], resource_arns=[executions])
        policy = getattr(grantee.grant_principal, "policy", None)
        if policy is not None:
            ack.aws_solutions_iam5_execution_arns(policy, executions)
        return grant

    def grant_task_response(self, grantee: iam.IGrantable) -> iam.Grant:
        """``states:SendTaskSuccess``, ``SendTaskFailure`` and ``SendTaskHeartbeat``: answer a step that waits for a callback."""
        return self.state_machine.grant_task_response(grantee)

    def dashboard_widgets(self, title: str) -> list[cloudwatch.IWidget]:
        return sfn_monitoring.widgets(title, self.state_machine)


_BACKOFF = dict(interval=Duration.seconds(1), backoff_rate=2.0, max_delay=Duration.seconds(30), jitter_strategy=sfn.JitterType.FULL)
