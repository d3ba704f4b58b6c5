"""RuntimeLayer: the ``messaging_runtime`` package as a Lambda layer, built from its source at synth, without Docker."""

from __future__ import annotations

import shutil
from pathlib import Path

import jsii
from aws_cdk import AssetHashType, BundlingOptions, ILocalBundling, Stack
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

import messaging_runtime

from .function import RUNTIME
from .profile import Profile

#: The package the layer ships, and where Lambda finds it: layers are unpacked in /opt, and /opt/python is on sys.path.
PACKAGE = "messaging_runtime"
#: What is never packaged: byte code compiled here is for this machine's interpreter, and Lambda compiles its own.
EXCLUDE = ("__pycache__", "*.pyc")


def runtime_source() -> Path:
    """The folder of the installed ``messaging_runtime``: the repository's in a checkout, site-packages' after ``pip install``."""
    return Path(messaging_runtime.__file__).resolve().parent


@jsii.implements(ILocalBundling)
class _CopyPackage:
    """Local bundling: copy ``source`` to ``<output>/python/<name>/`` without ``EXCLUDE``. CDK calls it before Docker, which it never needs."""

    def __init__(self, source: Path, name: str = PACKAGE) -> None:
        self._source, self._name = source, name

    def try_bundle(self, output_dir: str, options: BundlingOptions) -> bool:
        shutil.copytree(self._source, Path(output_dir) / "python" / self._name, ignore=shutil.ignore_patterns(*EXCLUDE))
        return True


class RuntimeLayer(lambda_.LayerVersion):
    """The handler runtime, ``messaging_runtime``, as a Lambda layer for ``python3.14`` on ``arm64``; one per stack.

    Its code is the ``messaging_runtime`` package this library was installed
    with (found from ``messaging_runtime.__file__``), copied at synth into
    ``python/messaging_runtime/`` by CDK local bundling: no Docker, no network,
    no build step, from a repository checkout and after ``pip install`` alike.
    ``__pycache__`` folders and ``*.pyc`` files are left out.

    The asset hash is the hash of that output (``AssetHashType.OUTPUT``): it
    depends only on the packaged files' paths and contents, so the same
    source gives the same hash on every run and machine, wherever the package
    is installed, and any change to what is packaged changes it.

    :class:`HandlerFunction` attaches it by default; get the stack's layer
    with :meth:`RuntimeLayer.of` rather than constructing a second one.

    :param profile: decides the removal policy of the layer's versions. Default: from context.
    :param description: Default: what the layer holds.
    """

    #: The construct id of the layer in its stack (part of the public API: changing it replaces the layer).
    CONSTRUCT_ID = "MessagingRuntimeLayer"

    def __init__(self, scope: Construct, construct_id: str, *, profile: Profile | None = None, description: str | None = None) -> None:
        profile = profile or Profile.of(scope)
        source = runtime_source()
        super().__init__(
            scope,
            construct_id,
            code=lambda_.Code.from_asset(
                str(source),
                exclude=list(EXCLUDE),
                asset_hash_type=AssetHashType.OUTPUT,
                bundling=BundlingOptions(image=RUNTIME.bundling_image, local=_CopyPackage(source)),
            ),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[lambda_.Architecture.ARM_64],
            description=description or "messaging_runtime: publishers, record rejection, broker clients and event contracts for the message handlers",
            removal_policy=profile.removal_policy,
        )
        self.profile = profile

    @classmethod
    def of(cls, scope: Construct, *, profile: Profile | None = None) -> RuntimeLayer:
        """The runtime layer of ``scope``'s stack, created there on first use.

        :param profile: used only when the layer is created. Default: from context.
        """
        stack = Stack.of(scope)
        existing = stack.node.try_find_child(cls.CONSTRUCT_ID)
        if existing is None:
            return cls(stack, cls.CONSTRUCT_ID, profile=profile)
        if not isinstance(existing, RuntimeLayer):
            raise ValueError(f"{stack.node.path}/{cls.CONSTRUCT_ID} is taken by a {type(existing).__name__}, not the runtime layer")
        return existing
