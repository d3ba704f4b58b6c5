"""IcebergLake: Apache Iceberg tables on S3 in the Glue Data Catalog, queried with an Athena workgroup."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from aws_cdk import CustomResource, Duration, RemovalPolicy, Stack
from aws_cdk import aws_athena as athena
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from constructs import Construct

from . import acknowledgements as ack
from ._buckets import secure_bucket
from ._validation import check_range, require
from .encryption import key_or_new
from .function import HandlerFunction
from .monitoring._alarms import alarm_topic_for
from .network import PrivateNetwork
from .profile import Profile

HANDLER_CODE = str(Path(__file__).resolve().parent / "handlers" / "iceberg_tables")
WAREHOUSE_PREFIX = "warehouse/"
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,127}$")
#: What a table keeps for time travel; VACUUM removes snapshots (and the files only they hold) older than this.
DEFAULT_SNAPSHOT_AGE = Duration.days(1)

DEFAULT_RESULTS_EXPIRY = Duration.days(7)


class IcebergLake(Construct):
    """A data lake of Apache Iceberg tables: a Glue database, a warehouse bucket, an Athena workgroup, named queries.

    Iceberg on S3 with the Glue Data Catalog (not S3 Tables): Firehose, Athena
    and any Iceberg client write and read it with IAM permissions alone (S3
    Tables would add Lake Formation grants and a catalog integration to deploy
    first), the bucket takes this library's CMK, versioning and lifecycle rules
    like any other, and VACUUM and OPTIMIZE are Athena statements the erasure
    can run. The price: compaction is ours to schedule, not automatic.

    - ``bucket``: CMK with S3 Bucket Keys, TLS only, no public access,
      versioned, access-logged; tables under ``warehouse/<database>/<table>/``;
      noncurrent versions expire after 7 days and other prefixes take the
      expiry rules given (``add_expiry``);
    - the Glue database ``database_name``;
    - :meth:`add_table`: an Iceberg (format 2, Parquet, zstd) table with
      identity partitions, made by Athena DDL through a custom resource
      (``Custom::IcebergTable``, see its handler for what an update may change);
      snapshots older than ``snapshot_age`` are removed by VACUUM;
    - ``workgroup``: Athena engine version 3, its settings enforced, results
      in ``results_bucket`` (CMK, expired after ``results_expiry``),
      CloudWatch metrics on, at most ``bytes_scanned_cutoff`` bytes read per
      query; :meth:`add_named_query` stores a query in it.

    Grants: :meth:`grant_query` (run queries in the workgroup, read the
    tables), :meth:`grant_modify` (also DELETE, OPTIMIZE, VACUUM),
    :meth:`grant_write_rows` (what Firehose needs to commit rows); each on
    the tables named, never ``table/*``.

    :param database_name: lower-case letters, digits and ``_``. Required.
    :param bytes_scanned_cutoff: per query, at least 10 MB. Default: 1 GB sandbox, 100 GB production.
    :param results_expiry: Default: 7 days.
    :param snapshot_age: Default: 1 day.
    :param network: where the table handler runs when the profile puts functions in a VPC (it needs the Athena
        interface endpoint and the S3 gateway endpoint, which this adds when missing). Default: none (outside a VPC).
    :param encryption_key: Default: a new key with rotation.
    :param alarm_topic: the table handler's alarms. Default: no action.
    :param profile: Default: from context.

    Attributes: ``bucket``, ``results_bucket``, ``database`` (``glue.CfnDatabase``), ``database_name``,
    ``workgroup`` (``athena.CfnWorkGroup``), ``workgroup_name``, ``tables`` (name to ``CustomResource``),
    ``named_queries``, ``table_handler``, ``key``.
    """

    monitoring_label = "lake"

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        database_name: str,
        bytes_scanned_cutoff: int | None = None,
        results_expiry: Duration = DEFAULT_RESULTS_EXPIRY,
        snapshot_age: Duration = DEFAULT_SNAPSHOT_AGE,
        network: PrivateNetwork | None = None,
        encryption_key: kms.IKey | None = None,
        alarm_topic: sns.ITopic | None = None,
        profile: Profile | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        alarm_topic = alarm_topic_for(self, alarm_topic)
        self.profile = profile or Profile.of(self)
        require(bool(_NAME.fullmatch(database_name)), f"database_name must be lower-case letters, digits and _, got {database_name!r}")
        if bytes_scanned_cutoff is None:
            bytes_scanned_cutoff = self.profile.pick(sandbox=1_000_000_000, production=100_000_000_000)
        check_range("bytes_scanned_cutoff", bytes_scanned_cutoff, 10_000_000, 10**15, "bytes")
        self.key: kms.IKey = key_or_new(self, encryption_key, self.profile)
        self._snapshot_age = snapshot_age
        self._expiries: dict[str, float] = {}
        stack = Stack.of(self)

        self.bucket = secure_bucket(self, "Bucket", key=self.key, profile=self.profile)
        self.results_bucket = secure_bucket(
            self, "QueryResults", key=self.key, profile=self.profile, lifecycle_rules=[s3.LifecycleRule(id="results", expiration=results_expiry)]
        )
        self.database_name = database_name
        self.database = glue.CfnDatabase(
            self,
            "Database",
            catalog_id=stack.account,
            database_input=glue.CfnDatabase.DatabaseInputProperty(name=database_name, description=f"Lake {self.node.path}"),
        )
        self.workgroup_name = f"{database_name}-{stack.stack_name}"[:128]
        self.workgroup = athena.CfnWorkGroup(
            self,
            "Workgroup",
            name=self.workgroup_name,
            description=f"Queries of the {database_name} lake",
            state="ENABLED",
            recursive_delete_option=self.profile.removal_policy == RemovalPolicy.DESTROY,
            work_group_configuration=athena.CfnWorkGroup.WorkGroupConfigurationProperty(
                enforce_work_group_configuration=True,
                publish_cloud_watch_metrics_enabled=True,
                bytes_scanned_cutoff_per_query=bytes_scanned_cutoff,
                engine_version=athena.CfnWorkGroup.EngineVersionProperty(selected_engine_version="Athena engine version 3"),
                result_configuration=athena.CfnWorkGroup.ResultConfigurationProperty(
                    output_location=f"s3://{self.results_bucket.bucket_name}/",
                    encryption_configuration=athena.CfnWorkGroup.EncryptionConfigurationProperty(encryption_option="SSE_KMS", kms_key=self.key.key_arn),
                ),
            ),
        )
        self.tables: dict[str, CustomResource] = {}
        self.named_queries: dict[str, athena.CfnNamedQuery] = {}
        if network is not None and self.profile.functions_in_vpc:
            network.ensure_interface_endpoint(ec2.InterfaceVpcEndpointAwsService.ATHENA)
            network.ensure_gateway_endpoint(ec2.GatewayVpcEndpointAwsService.S3)
        else:
            network = None
        self.table_handler = HandlerFunction(
            self,
            "TableHandler",
            code_path=HANDLER_CODE,
            service_name="iceberg_tables",
            description="Custom::IcebergTable: Iceberg tables made with Athena DDL",
            timeout=Duration.minutes(5),
            memory_size=128,
            network=network,
            encryption_key=self.key,
            alarm_topic=alarm_topic,
            profile=self.profile,
        )
        # DDL: Athena reads and writes the tables' metadata and files; each table's own grants come with add_table.
        self.grant_modify(self.table_handler, tables=[])

    # --- tables and queries ------------------------------------------------

    @property
    def catalog_arn(self) -> str:
        stack = Stack.of(self)
        return f"arn:{stack.partition}:glue:{stack.region}:{stack.account}:catalog"

    def table_location(self, table: str) -> str:
        return f"s3://{self.bucket.bucket_name}/{WAREHOUSE_PREFIX}{self.database_name}/{table}/"

    def add_table(
        self, name: str, *, columns: Sequence[tuple[str, str]], partitions: Sequence[str] = (), properties: Mapping[str, str] | None = None
    ) -> CustomResource:
        """An Iceberg table ``name`` with ``columns`` (name, Athena type) and identity ``partitions`` (column names)."""
        require(bool(_NAME.fullmatch(name)), f"table name must be lower-case letters, digits and _, got {name!r}")
        require(name not in self.tables, f"table {name} is already in the lake")
        require(set(partitions) <= {c for c, _ in columns}, f"partitions {list(partitions)} must be columns")
        table = CustomResource(
            self,
            f"Table{name.title().replace('_', '')}",
            service_token=self.table_handler.function.function_arn,
            resource_type="Custom::IcebergTable",
            properties={
                "Workgroup": self.workgroup_name,
                "Database": self.database_name,
                "Table": name,
                "Location": self.table_location(name),
                "Columns": [[column, kind] for column, kind in columns],
                "Partitions": list(partitions),
                "TableProperties": {
                    "format": "parquet",
                    "write_compression": "zstd",
                    "vacuum_max_snapshot_age_seconds": str(int(self._snapshot_age.to_seconds())),
                    **(properties or {}),
                },
                "RemovalPolicy": "destroy" if self.profile.removal_policy == RemovalPolicy.DESTROY else "retain",
            },
        )
        # CreateTable and DeleteTable are authorized on the catalog and the database as well as the table.
        iam.Grant.add_to_principal(
            grantee=self.table_handler,
            actions=["glue:GetTable", "glue:CreateTable", "glue:UpdateTable", "glue:DeleteTable"],
            resource_arns=self._glue_arns([name]),
        )
        # Athena needs the database, the workgroup and the handler's permissions before the DDL runs.
        table.node.add_dependency(self.database, self.workgroup, self.table_handler.role.policy, self.results_bucket)
        self.tables[name] = table
        return table

    def add_named_query(self, name: str, *, description: str, sql: str) -> athena.CfnNamedQuery:
        """Store ``sql`` in the workgroup as the named query ``name`` (every property replaces the query when it changes)."""
        require(name not in self.named_queries, f"named query {name} exists")
        query = athena.CfnNamedQuery(
            self,
            f"Query{re.sub(r'[^A-Za-z0-9]', '', name.title())}",
            name=name,
            description=description,
            database=self.database_name,
            query_string=sql,
            work_group=self.workgroup_name,
        )
        query.node.add_dependency(self.workgroup, self.database)
        self.named_queries[name] = query
        return query

    def add_expiry(self, prefix: str, expiration: Duration) -> None:
        """Expire the bucket's objects under ``prefix`` (not a table's) after ``expiration``; asking again for the
        same prefix and expiration (two deliveries into one lake) adds nothing."""
        require(not prefix.startswith(WAREHOUSE_PREFIX), "tables expire by VACUUM, not by lifecycle rules")
        check_range("expiration (days)", expiration.to_days(), 1, 36500)
        if prefix in self._expiries:
            days = self._expiries[prefix]
            require(days == expiration.to_days(), f"{prefix} already expires after {days:g} days, not {expiration.to_days():g}")
            return
        self._expiries[prefix] = expiration.to_days()
        self.bucket.add_lifecycle_rule(id=f"expire-{prefix.strip('/').replace('/', '-')}", prefix=prefix, expiration=expiration)

    # --- grants --------------------------------------------------------------

    def _glue_arns(self, tables: Sequence[str] | None) -> list[str]:
        stack = Stack.of(self)
        base = f"arn:{stack.partition}:glue:{stack.region}:{stack.account}"
        names = list(self.tables) if tables is None else list(tables)
        return [f"{base}:catalog", f"{base}:database/{self.database_name}", *(f"{base}:table/{self.database_name}/{t}" for t in names)]

    def _objects(self, grantee: iam.IGrantable, actions: Sequence[str], arns: Sequence[str]) -> iam.Grant:
        """Object actions under prefixes: the keys are made at run time, so each ARN ends in ``*`` (acknowledged)."""
        grant = iam.Grant.add_to_principal(grantee=grantee, actions=list(actions), resource_arns=list(arns))
        policy = getattr(grantee.grant_principal, "policy", None)
        if policy is not None:
            ack.aws_solutions_iam5_object_keys(policy, list(arns))
        return grant

    def grant_query(self, grantee: iam.IGrantable, *, tables: Sequence[str] | None = None) -> iam.Grant:
        """Run queries in the workgroup and read ``tables`` (default: every table added so far)."""
        stack = Stack.of(self)
        workgroup_arn = f"arn:{stack.partition}:athena:{stack.region}:{stack.account}:workgroup/{self.workgroup_name}"
        iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["athena:StartQueryExecution", "athena:GetQueryExecution", "athena:GetQueryResults", "athena:StopQueryExecution"],
            resource_arns=[workgroup_arn],
        )
        iam.Grant.add_to_principal(grantee=grantee, actions=["glue:GetDatabase", "glue:GetTable"], resource_arns=self._glue_arns(tables))
        iam.Grant.add_to_principal(
            grantee=grantee, actions=["s3:GetBucketLocation", "s3:ListBucket"], resource_arns=[self.bucket.bucket_arn, self.results_bucket.bucket_arn]
        )
        self._objects(grantee, ["s3:GetObject"], [self.bucket.arn_for_objects(f"{WAREHOUSE_PREFIX}{self.database_name}/*")])
        self._objects(grantee, ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"], [self.results_bucket.arn_for_objects("*")])
        return self.key.grant(grantee, "kms:Decrypt", "kms:GenerateDataKey")

    def grant_modify(self, grantee: iam.IGrantable, *, tables: Sequence[str] | None = None) -> iam.Grant:
        """:meth:`grant_query`, and commit changes to ``tables`` (DELETE, OPTIMIZE, VACUUM: write and delete their files,
        update their metadata)."""
        self.grant_query(grantee, tables=tables)
        iam.Grant.add_to_principal(grantee=grantee, actions=["glue:UpdateTable"], resource_arns=self._glue_arns(tables))
        return self._objects(
            grantee, ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"], [self.bucket.arn_for_objects(f"{WAREHOUSE_PREFIX}{self.database_name}/*")]
        )

    def grant_write_rows(self, grantee: iam.IGrantable, *, tables: Sequence[str]) -> iam.Grant:
        """What Firehose's role needs to commit rows to ``tables``: read and update their metadata, write and read
        their files (the Iceberg destination's documented permissions, on these tables only)."""
        iam.Grant.add_to_principal(grantee=grantee, actions=["glue:GetDatabase", "glue:GetTable", "glue:UpdateTable"], resource_arns=self._glue_arns(tables))
        iam.Grant.add_to_principal(
            grantee=grantee, actions=["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"], resource_arns=[self.bucket.bucket_arn]
        )
        self._objects(
            grantee,
            ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
            [self.bucket.arn_for_objects(f"{WAREHOUSE_PREFIX}{self.database_name}/{t}/*") for t in tables],
        )
        return self.key.grant(grantee, "kms:Decrypt", "kms:GenerateDataKey")

    def dashboard_widgets(self, title: str) -> list[cloudwatch.IWidget]:
        # Athena publishes each query metric with the dimensions QueryState, QueryType and WorkGroup together: a metric
        # with WorkGroup alone does not exist, so the graphs search for this workgroup's series.
        def search(name: str, statistic: str) -> cloudwatch.MathExpression:
            expression = (
                f"SEARCH('{{AWS/Athena,QueryState,QueryType,WorkGroup}} MetricName=\"{name}\" WorkGroup=\"{self.workgroup_name}\"', '{statistic}', 300)"
            )
            return cloudwatch.MathExpression(expression=expression, label=name, period=Duration.minutes(5))

        return [
            cloudwatch.GraphWidget(title=f"{title}: bytes scanned", left=[search("ProcessedBytes", "Sum")], width=12),
            cloudwatch.GraphWidget(title=f"{title}: query time (ms)", left=[search("TotalExecutionTime", "p90")], width=12),
        ]
