"""The machinery every contract uses: two views of one model, versions and upcasting.

A contract is a pydantic model written once, in the producer's view: unknown
fields are refused (``extra="forbid"``), so a producer cannot send what the
contract does not say. Defining it also defines ``Model.Consumer``, the
consumer's view: the same fields with the same rules, but fields it does not
know are ignored (``extra="ignore"``), in nested models too. A producer may
then add an optional field without breaking a consumer that has not been
updated yet.

An ``EventKind`` is one event type through its versions: it reads any version
it supports and upcasts it, one version at a time, to the current one.
"""

from __future__ import annotations

import copy
import functools
import operator
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model

from .fields import WholeNumber

C = TypeVar("C", bound="Contract")


class Contract(BaseModel):
    """Base of every event model: the producer's view (unknown fields refused, frozen); ``Consumer`` is the tolerant view.

    Field types refuse coercion on their own (``fields``), so the models read
    JSON text and decoded values (``json.loads``, DynamoDB's deserializer) alike.

    ``VERSION_FIELD`` names the field that holds the schema version (``version``
    or ``schema_version``), or is None for a message that has none yet: it is
    then version 1, and its first breaking change adds the field.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    VERSION_FIELD: ClassVar[str | None] = "version"
    #: The consumer's view of this model (set for every subclass when it is defined).
    Consumer: ClassVar[type[Contract]]

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if not cls.__dict__.get("__consumer_view__"):
            cls.Consumer = _consumer_view(cls)

    @classmethod
    def version_number(cls) -> int:
        """The version this model is: the value its version field allows (1 when it has none)."""
        if cls.VERSION_FIELD is None:
            return 1
        (version,) = get_args(cls.model_fields[cls.VERSION_FIELD].annotation)
        return version

    @property
    def received_version(self) -> int | None:
        """The version this event was read as, when ``EventKind.parse`` upcast it from an older one; None otherwise."""
        # Kept in pydantic's private slot only on upcast events: a declared private attribute would make pydantic
        # set up private state on every event it validates, which costs as much as reading the JSON.
        return (self.__pydantic_private__ or {}).get("_received_version")


def _consumer_view(model: type[Contract]) -> type[Contract]:
    """``model`` with ``extra="ignore"``, its nested contracts replaced by their consumer views; the field rules are inherited."""
    namespace: dict[str, Any] = {
        "__module__": model.__module__,
        "__qualname__": f"{model.__qualname__}.Consumer",
        "__doc__": model.__doc__,
        "__consumer_view__": True,
        "model_config": ConfigDict(extra="ignore"),
        "__annotations__": {},
    }
    for name, info in model.model_fields.items():
        tolerant = _tolerant(info.annotation)
        if tolerant is not info.annotation:
            namespace["__annotations__"][name] = tolerant
            namespace[name] = copy.copy(info)
    return types.new_class(model.__name__, (model,), exec_body=lambda body: body.update(namespace))


def _tolerant(annotation: Any) -> Any:
    """``annotation`` with every contract in it replaced by its consumer view (the same object when there is none)."""
    if isinstance(annotation, type) and issubclass(annotation, Contract) and annotation is not Contract:
        return annotation.Consumer
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is None or origin is Literal or not args:
        return annotation
    tolerant = tuple(_tolerant(arg) for arg in args)
    if all(new is old for new, old in zip(tolerant, args, strict=True)):
        return annotation
    if origin is Annotated:
        return Annotated[(tolerant[0], *annotation.__metadata__)]
    if origin in (types.UnionType, typing.Union):
        return functools.reduce(operator.or_, tolerant)
    return origin[tolerant]


#: Turns an event of one version into the next version's model.
Upcaster = Callable[[Any], Contract]

_JSON_OBJECT: TypeAdapter[dict[str, Any]] = TypeAdapter(dict[str, Any])


@dataclass(frozen=True, eq=False)
class EventKind(Generic[C]):
    """One event type through its versions: ``parse`` reads any of them and returns the current one.

    :param name: the event type, e.g. ``OrderPlaced``; on a bus, its detail-type.
    :param current: the model of the current version, the one producers send.
    :param older: the models of the versions consumers still read, oldest first.
    :param upcasters: for each older version, the function that turns its event into the next version's.
    :param source: the EventBridge ``source`` of the event, for an event that goes on a bus. Default: none.
    :param channel: where the event travels, in words, for the inventory in the docs.
    """

    name: str
    current: type[C]
    older: tuple[type[Contract], ...] = ()
    upcasters: Mapping[int, Upcaster] = field(default_factory=dict)
    source: str | None = None
    channel: str = ""
    #: The versions this kind reads, oldest first.
    versions: tuple[int, ...] = field(init=False)
    _models: dict[int, type[Contract]] = field(init=False, repr=False)
    _version_of: dict[type[Contract], int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        versions = tuple(model.version_number() for model in self.models)
        if list(versions) != sorted(set(versions)):
            raise ValueError(f"{self.name}: versions must be distinct and listed oldest first, got {list(versions)}")
        if {model.VERSION_FIELD for model in self.models} != {self.current.VERSION_FIELD}:
            raise ValueError(f"{self.name}: every version must keep its version in the same field")
        if set(self.upcasters) != set(versions[:-1]):
            raise ValueError(f"{self.name}: one upcaster per older version is needed, for {versions[:-1]}, got {sorted(self.upcasters)}")
        # Looked up for every event read, so worked out once.
        object.__setattr__(self, "versions", versions)
        object.__setattr__(self, "_models", dict(zip(versions, self.models, strict=True)))
        object.__setattr__(self, "_version_of", {view: v for v, model in zip(versions, self.models, strict=True) for view in (model, model.Consumer)})

    @property
    def models(self) -> tuple[type[Contract], ...]:
        """Every version's model, oldest first."""
        return (*self.older, self.current)

    def model(self, version: int) -> type[Contract]:
        """The producer's model of ``version``."""
        return self._models[version]

    @functools.cached_property
    def _version_reader(self) -> type[BaseModel]:
        allowed = Annotated[Literal[self.versions], WholeNumber]  # type: ignore[valid-type]
        return create_model(f"{self.name}Version", __config__=ConfigDict(extra="ignore"), **{self.current.VERSION_FIELD: (allowed, ...)})

    def version_of(self, data: Mapping[str, Any]) -> int:
        """The version ``data`` says it is; a ValidationError when it names none this kind reads."""
        field_name = self.current.VERSION_FIELD
        if field_name is None:
            return 1
        version = data.get(field_name)
        if type(version) is int and version in self._models:
            return version
        return getattr(self._version_reader.model_validate(data), field_name)  # raises, naming the versions read

    def parse(self, data: str | bytes | bytearray | Mapping[str, Any]) -> C:
        """Any supported version of the event, as JSON text or as decoded values, in the consumer's view of the current version.

        Raises pydantic's ValidationError when ``data`` is not JSON, names a version
        this kind does not read, or breaks that version's rules.
        """
        if not isinstance(data, Mapping):
            try:  # the common case in one pass: the current version, straight from the text
                return self.current.Consumer.model_validate_json(data)  # type: ignore[return-value]
            except ValidationError:
                pass  # read again version first, for the reason that names the versions read or an older version
        document = data if isinstance(data, Mapping) else _JSON_OBJECT.validate_json(data)
        event = self._models[self.version_of(document)].Consumer.model_validate(document)
        return self.upcast(event)

    def upcast(self, event: Contract) -> C:
        """``event``, of any version of this kind, as the current version (the event itself when it is current)."""
        received = version = self._version_of[type(event)]
        while version != self.versions[-1]:
            event = self.upcasters[version](event)
            following = self._models[self.versions[self.versions.index(version) + 1]]
            if not isinstance(event, following):
                raise TypeError(f"the {self.name} upcaster from version {version} returned {type(event).__name__}, not {following.__name__}")
            version = self._version_of[type(event)]
        if received != version:
            object.__setattr__(event, "__pydantic_private__", {"_received_version": received})
        return event  # type: ignore[return-value]

    # So that an EventKind can go where a reader takes a model class (``messaging_runtime.readers``).
    def model_validate(self, data: Mapping[str, Any]) -> C:
        """The same as ``parse``."""
        return self.parse(data)

    def model_validate_json(self, text: str | bytes | bytearray) -> C:
        """The same as ``parse``."""
        return self.parse(text)

    @property
    def detail_type(self) -> str:
        """The detail-type on the bus: the event type's name."""
        return self.name

    def registry_name(self, version: int) -> str:
        """The schema's name in an EventBridge schema registry: ``<source>@<detail-type>.v<version>``."""
        if self.source is None:
            raise ValueError(f"{self.name} does not go on an event bus: it has no source")
        return f"{self.source}@{self.detail_type}.v{version}"


@dataclass(frozen=True, eq=False)
class OneOf:
    """Several kinds that share a channel, told apart by the value of one field (``event_type``, ``type``, ``status``).

    ``parse`` reads a message of any of them; like ``EventKind`` it can go where a reader takes a model class.
    """

    tag: str
    kinds: Mapping[str, EventKind[Any]]

    @functools.cached_property
    def _tag_reader(self) -> type[BaseModel]:
        allowed = Literal[tuple(self.kinds)]  # type: ignore[valid-type]
        return create_model("Message", __config__=ConfigDict(extra="ignore"), **{self.tag: (allowed, ...)})

    @functools.cached_property
    def _current_reader(self) -> TypeAdapter[Any]:
        """Every kind's current consumer view, told apart by the tag, read from JSON text in one pass."""
        views = tuple(kind.current.Consumer for kind in self.kinds.values())
        union = views[0] if len(views) == 1 else Annotated[functools.reduce(operator.or_, views), Field(discriminator=self.tag)]
        return TypeAdapter(union)

    def parse(self, data: str | bytes | bytearray | Mapping[str, Any]) -> Contract:
        """The message, of whichever kind its tag names, in the consumer's view of that kind's current version."""
        if not isinstance(data, Mapping):
            try:
                return self._current_reader.validate_json(data)
            except ValidationError:
                pass  # read again tag first, for the reason that names the tags and versions read
        document = data if isinstance(data, Mapping) else _JSON_OBJECT.validate_json(data)
        tag = document.get(self.tag)
        if not (isinstance(tag, str) and tag in self.kinds):
            self._tag_reader.model_validate(document)  # raises, naming the tags read
        return self.kinds[tag].parse(document)

    def model_validate(self, data: Mapping[str, Any]) -> Contract:
        """The same as ``parse``."""
        return self.parse(data)

    def model_validate_json(self, text: str | bytes | bytearray) -> Contract:
        """The same as ``parse``."""
        return self.parse(text)
