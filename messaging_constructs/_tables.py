"""The one way this library makes a DynamoDB table: on demand, CMK, PITR, backed up and protected in production."""

from __future__ import annotations

from aws_cdk import Names
from aws_cdk import aws_backup as backup
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from . import acknowledgements as ack
from ._naming import per_stack_creation
from .profile import Profile


def secure_table(
    scope: Construct,
    construct_id: str,
    *,
    partition_key: dynamodb.Attribute,
    key: kms.IKey,
    profile: Profile,
    sort_key: dynamodb.Attribute | None = None,
    stream: dynamodb.StreamViewType | None = None,
    time_to_live_attribute: str | None = None,
) -> tuple[dynamodb.Table, backup.BackupPlan | None]:
    """A table with point-in-time recovery; in production also deletion protection and a daily backup plan (35 days)."""
    table = dynamodb.Table(
        scope,
        construct_id,
        partition_key=partition_key,
        sort_key=sort_key,
        stream=stream,
        time_to_live_attribute=time_to_live_attribute,
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
        encryption_key=key,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(point_in_time_recovery_enabled=True),
        deletion_protection=profile.deletion_protection,
        removal_policy=profile.removal_policy,
    )
    plan = None
    if profile.backup:
        prefix = "" if construct_id == "Resource" else construct_id
        # Retained with the recovery points it holds: a name new for each creation of the stack lets the stack be deployed again.
        vault = backup.BackupVault(
            scope,
            f"{prefix}BackupVault",
            backup_vault_name=per_stack_creation(table, max_length=50, suffix="-vault"),
            encryption_key=key,
            removal_policy=profile.removal_policy,
        )
        # Plan names must be unique in the account; the default would be "BackupPlan" everywhere.
        plan = backup.BackupPlan(
            scope, f"{prefix}BackupPlan", backup_vault=vault, backup_plan_name=Names.unique_resource_name(table, max_length=50, separator="-")
        )
        plan.add_rule(backup.BackupPlanRule.daily())
        selection = plan.add_selection("Table", resources=[backup.BackupResource.from_dynamo_db_table(table)])
        ack.aws_solutions_iam4_backup_service_role(selection)
    else:
        ack.dynamodb_in_backup_plan(table)
    return table, plan


def grant_key_for_items(key: kms.IKey, grantee: iam.IGrantable) -> iam.Grant:
    """The key actions item reads and writes of a CMK-encrypted table need: kms:Decrypt, Encrypt, GenerateDataKey."""
    return key.grant(grantee, "kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey")
