"""StreamSchemas: the contracts of a stream's records in an AWS Glue Schema Registry, one schema per event kind."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aws_cdk import aws_glue as glue
from constructs import Construct

from ._validation import require

if TYPE_CHECKING:  # the contracts need pydantic, which only an app that registers schemas installs
    from messaging_runtime.contracts import EventKind

COMPATIBILITY_MODES = ("NONE", "DISABLED", "BACKWARD", "BACKWARD_ALL", "FORWARD", "FORWARD_ALL", "FULL", "FULL_ALL")
#: Glue's limit on one schema definition (characters).
MAX_DEFINITION = 170_000


class StreamSchemas(Construct):
    """A Glue schema registry holding each event kind's JSON Schema (draft 4), every version, generated from the contract.

    One ``AWS::Glue::Schema`` per kind, named after it, with its first
    version; each later version of the contract is an ``AWS::Glue::SchemaVersion``
    that Glue checks against ``compatibility`` when it is registered (a breaking
    change fails the deployment). The schemas are the consumers' view
    (``messaging_runtime.contracts.schemas.record_schema``), the same rules the
    stream's consumers read records with.

    A registered version is immutable: Glue's ``SchemaDefinition`` is
    create-only, so editing the model of a version already registered would
    replace the schema, which its name forbids. Change a contract by adding a
    version (an upcaster, a new model), as ``docs/schema-evolution.md`` says.

    Glue Schema Registry is free and takes no customer-managed key; the
    schemas hold no data.

    :param kinds: the event kinds on the stream. Required.
    :param registry_name: letters, digits, ``-``, ``_``, ``$``, ``#``. Required.
    :param compatibility: Default: ``BACKWARD`` (a consumer of version N reads N-1).

    Attributes: ``registry`` (``glue.CfnRegistry``), ``schemas`` (kind name to ``glue.CfnSchema``),
    ``versions`` (kind name to its later ``glue.CfnSchemaVersion`` resources).
    """

    def __init__(self, scope: Construct, construct_id: str, *, kinds: Sequence[EventKind[Any]], registry_name: str, compatibility: str = "BACKWARD") -> None:
        from messaging_runtime.contracts.schemas import record_schema

        super().__init__(scope, construct_id)
        require(bool(kinds), "kinds must name at least one event kind")
        require(compatibility in COMPATIBILITY_MODES, f"compatibility must be one of {', '.join(COMPATIBILITY_MODES)}, got {compatibility!r}")
        require(bool(re.fullmatch(r"[A-Za-z0-9_$#-]{1,255}", registry_name)), f"registry_name must be letters, digits, -, _, $ or #, got {registry_name!r}")
        self.registry = glue.CfnRegistry(self, "Registry", name=registry_name, description=f"Schemas of {', '.join(k.name for k in kinds)}")
        self.schemas: dict[str, glue.CfnSchema] = {}
        self.versions: dict[str, list[glue.CfnSchemaVersion]] = {}
        for kind in kinds:
            definitions = [record_schema(kind, version) for version in kind.versions]
            too_long = [v for v, d in zip(kind.versions, definitions, strict=True) if len(d) > MAX_DEFINITION]
            require(not too_long, f"{kind.name} versions {too_long}: over Glue's {MAX_DEFINITION} characters")
            schema = glue.CfnSchema(
                self,
                kind.name,
                name=kind.name,
                data_format="JSON",
                compatibility=compatibility,
                schema_definition=definitions[0],
                registry=glue.CfnSchema.RegistryProperty(arn=self.registry.attr_arn),
                description=f"{kind.name}: {kind.channel}"[:1000],
            )
            self.schemas[kind.name] = schema
            later: list[glue.CfnSchemaVersion] = []
            previous: Any = schema
            for version, definition in zip(kind.versions[1:], definitions[1:], strict=True):
                entry = glue.CfnSchemaVersion(
                    self, f"{kind.name}V{version}", schema=glue.CfnSchemaVersion.SchemaProperty(schema_arn=schema.attr_arn), schema_definition=definition
                )
                entry.node.add_dependency(previous)  # registered in order: Glue checks each against the one before
                later.append(entry)
                previous = entry
            self.versions[kind.name] = later
