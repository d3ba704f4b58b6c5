"""Invoice events: the ERP's JMS messages on ActiveMQ, and the same events forwarded to the Exercise 05 bus.

The ERP sends one ``Invoice`` message per change of an invoice to the queue
``invoices``. The consumer forwards each to the bus with source ``legacy.erp``
and a detail-type per status (``InvoiceIssued``, ``InvoicePaid``,
``InvoiceVoided``), the message as the detail.
"""

from __future__ import annotations

from typing import Annotated, Literal

from ._base import Contract, EventKind, OneOf
from .fields import Currency, CustomerId, InvoiceAmount, InvoiceId, OrderId, UtcTimestamp, WholeNumber

SOURCE = "legacy.erp"
_BUS = "EventBridge bus of Exercise05EnterpriseMessaging"


class InvoiceV1(Contract):
    """An invoice in one status; a change of status is a new event."""

    VERSION_FIELD = "schema_version"

    schema_version: Annotated[Literal[1], WholeNumber]
    invoice_id: InvoiceId
    order_id: OrderId
    customer_id: CustomerId
    amount: InvoiceAmount
    currency: Currency
    status: Literal["issued", "paid", "voided"]
    issued_at: UtcTimestamp

    @property
    def detail_type(self) -> str:
        """The detail-type this event is forwarded to the bus with: ``Invoice<Status>``."""
        return f"Invoice{self.status.capitalize()}"


class InvoiceIssuedV1(InvoiceV1):
    """An invoice was issued."""

    status: Literal["issued"]


class InvoicePaidV1(InvoiceV1):
    """An invoice was paid."""

    status: Literal["paid"]


class InvoiceVoidedV1(InvoiceV1):
    """An invoice was voided."""

    status: Literal["voided"]


INVOICE = EventKind("Invoice", InvoiceV1, channel="ActiveMQ queue invoices, over STOMP (Exercise05EnterpriseMessaging)")
INVOICE_ISSUED = EventKind("InvoiceIssued", InvoiceIssuedV1, source=SOURCE, channel=_BUS)
INVOICE_PAID = EventKind("InvoicePaid", InvoicePaidV1, source=SOURCE, channel=_BUS)
INVOICE_VOIDED = EventKind("InvoiceVoided", InvoiceVoidedV1, source=SOURCE, channel=_BUS)
#: A forwarded invoice event of any status, by its ``status``.
FORWARDED_INVOICES = OneOf("status", {"issued": INVOICE_ISSUED, "paid": INVOICE_PAID, "voided": INVOICE_VOIDED})

KINDS = (INVOICE, INVOICE_ISSUED, INVOICE_PAID, INVOICE_VOIDED)
