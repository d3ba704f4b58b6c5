"""The compliance gate: the five cdk-nag packs and the library's own messaging pack, added to the whole app."""

from __future__ import annotations

from aws_cdk import App, Validations
from cdk_nag import AwsSolutionsChecks, HIPAASecurityChecks, NIST80053R5Checks, PCIDSS321Checks, ServerlessChecks

from messaging_constructs.messaging_checks import MessagingChecks

#: Pack name as cdk-nag reports it, and the class that runs it.
PACKS = {
    "AwsSolutions": AwsSolutionsChecks,
    "Serverless": ServerlessChecks,
    "HIPAA.Security": HIPAASecurityChecks,
    "PCI.DSS.321": PCIDSS321Checks,
    "NIST.800.53.R5": NIST80053R5Checks,
    "MessagingChecks": MessagingChecks,
}


def add_packs(app: App) -> None:
    """Run every pack on every stack at synth; any unacknowledged finding fails synth."""
    for pack in PACKS.values():
        Validations.of(app).add_plugins(pack(app))
