"""What a synthesized messaging app costs: idle a month, and per million messages through a path.

    from messaging_constructs.costs import PriceTable, idle_cost, total

    prices = PriceTable.load()                 # us-east-1 list prices, each with its source page and date read
    lines = idle_cost(stack.template, prices)  # a line per kind of resource billed by the hour or month
    print(total(lines))

``traffic.Path`` prices a message's way through a stack from hops (``Publish``, ``Queue``, ``Function``...) that
name its resources; the template supplies what it knows (FIFO or not, memory, batch size, key reuse, billing mode).
"""

from ._lines import Line, Template, total
from .idle import HOURS_PER_MONTH, idle_cost, unpriced
from .prices import Price, PriceTable
from .traffic import (
    BusEvents,
    Delivery,
    DeviceMessages,
    Function,
    Hop,
    KmsCalls,
    Path,
    PipeRequests,
    Publish,
    Queue,
    RestRequests,
    StreamRecords,
    TableWrites,
    Traffic,
    WebSocketMessages,
    Workflow,
)

__all__ = [
    "HOURS_PER_MONTH",
    "BusEvents",
    "Delivery",
    "DeviceMessages",
    "Function",
    "Hop",
    "KmsCalls",
    "Line",
    "Path",
    "PipeRequests",
    "Price",
    "PriceTable",
    "Publish",
    "Queue",
    "RestRequests",
    "StreamRecords",
    "TableWrites",
    "Template",
    "Traffic",
    "WebSocketMessages",
    "Workflow",
    "idle_cost",
    "total",
    "unpriced",
]
