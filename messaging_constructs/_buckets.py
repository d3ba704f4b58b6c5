"""S3 buckets the way every construct here makes them: private, TLS only, CMK, versioned, logged, expiring."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from . import acknowledgements as ack
from .network import drop_provider_role_dependency
from .profile import Profile

_ACCESS_LOGS_ID = "BucketAccessLogs"
_AUTO_DELETE_PROVIDER = "Custom::S3AutoDeleteObjectsCustomResourceProvider"


def secure_bucket(scope: Construct, construct_id: str, *, key: kms.IKey, profile: Profile, lifecycle_rules: Sequence[s3.LifecycleRule] = ()) -> s3.Bucket:
    """A bucket encrypted with ``key`` (S3 Bucket Keys on: one KMS call per object batch, not per object), all public
    access blocked, TLS required, object ownership enforced, versioned (noncurrent versions expire after 7 days, and
    incomplete multipart uploads after 1 day, besides ``lifecycle_rules``), server access logs to the stack's log
    bucket. The profile's removal policy; the sandbox empties it on delete so that ``cdk destroy`` leaves nothing."""
    destroy = profile.removal_policy == RemovalPolicy.DESTROY
    bucket = s3.Bucket(
        scope,
        construct_id,
        encryption=s3.BucketEncryption.KMS,
        encryption_key=key,
        bucket_key_enabled=True,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        versioned=True,
        lifecycle_rules=[
            s3.LifecycleRule(id="tidy", noncurrent_version_expiration=Duration.days(7), abort_incomplete_multipart_upload_after=Duration.days(1)),
            *lifecycle_rules,
        ],
        removal_policy=profile.removal_policy,
        auto_delete_objects=destroy,
    )
    _log_access(bucket, access_logs_bucket(Stack.of(scope), profile))
    ack.s3_bucket_replication_enabled(bucket)
    if destroy:
        drop_provider_role_dependency(Stack.of(scope), _AUTO_DELETE_PROVIDER)
    return bucket


def _log_access(bucket: s3.Bucket, logs: s3.Bucket) -> None:
    """Server access logs of ``bucket`` to ``logs`` under the bucket's construct path, delivered by S3's logging service
    as the bucket policy allows (not the legacy log-delivery ACL, which an owner-enforced bucket refuses)."""
    prefix = f"{bucket.node.path}/"
    logs.add_to_resource_policy(
        iam.PolicyStatement(
            sid=None,
            principals=[iam.ServicePrincipal("logging.s3.amazonaws.com")],
            actions=["s3:PutObject"],
            resources=[logs.arn_for_objects(f"{prefix}*")],
            conditions={"ArnLike": {"aws:SourceArn": bucket.bucket_arn}, "StringEquals": {"aws:SourceAccount": Stack.of(bucket).account}},
        )
    )
    bucket.node.default_child.logging_configuration = s3.CfnBucket.LoggingConfigurationProperty(
        destination_bucket_name=logs.bucket_name, log_file_prefix=prefix
    )


def access_logs_bucket(stack: Stack, profile: Profile) -> s3.Bucket:
    """The stack's one bucket for S3 server access logs (made by the first bucket that needs it).

    S3 delivers access logs only to a bucket encrypted with S3-managed keys (SSE-S3), so this one is; it keeps logs
    as long as the profile keeps log groups (7 days, 1 year) and logs nothing itself (its own access would be logged
    into itself).
    """
    existing = stack.node.try_find_child(_ACCESS_LOGS_ID)
    if isinstance(existing, s3.Bucket):
        return existing
    destroy = profile.removal_policy == RemovalPolicy.DESTROY
    bucket = s3.Bucket(
        stack,
        _ACCESS_LOGS_ID,
        encryption=s3.BucketEncryption.S3_MANAGED,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        versioned=True,
        lifecycle_rules=[
            s3.LifecycleRule(
                id="retention",
                expiration=Duration.days(profile.pick(sandbox=7, production=365)),
                noncurrent_version_expiration=Duration.days(1),
                abort_incomplete_multipart_upload_after=Duration.days(1),
            )
        ],
        removal_policy=profile.removal_policy,
        auto_delete_objects=destroy,
    )
    ack.s3_bucket_replication_enabled(bucket)
    ack.s3_default_encryption_kms(bucket)
    if destroy:
        drop_provider_role_dependency(stack, _AUTO_DELETE_PROVIDER)
    return bucket
