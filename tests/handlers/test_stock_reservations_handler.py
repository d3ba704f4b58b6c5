"""The saga's stock step: reserve takes an order's units once, release gives them back once, in any order and however often."""

import itertools

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FAST = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
TABLE_NAME = "stock"
DEFAULT_STOCK = 10

_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def table(moto_module):
    dynamodb = boto3.resource("dynamodb")
    dynamodb.create_table(
        TableName=TABLE_NAME,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    moto_module.setenv("STOCK_TABLE_NAME", TABLE_NAME)
    moto_module.setenv("DEFAULT_STOCK", str(DEFAULT_STOCK))
    return dynamodb.Table(TABLE_NAME)


@pytest.fixture(scope="module")
def stock(table, load_handler):
    return load_handler("stock_reservations")


def new_sku() -> str:
    return f"SKU-t{next(_numbers)}"


def new_order(items, **overrides):
    order = {"order_id": f"o-stock-{next(_numbers)}", "customer_id": "c-0001", "items": items, "total": 12.5, "currency": "EUR"}
    return {**order, **overrides}


def line(sku, quantity):
    return {"sku": sku, "quantity": quantity}


def available(table, sku) -> int:
    item = table.get_item(Key={"pk": f"sku#{sku}"}, ConsistentRead=True).get("Item")
    return DEFAULT_STOCK if item is None else int(item["available"])


def reservation(table, order):
    return table.get_item(Key={"pk": f"reservation#{order['order_id']}"}, ConsistentRead=True).get("Item")


def invoke(stock, action, order, context):
    return stock.lambda_handler({"action": action, "order": order}, context)


def test_reserve_takes_the_units_and_records_the_reservation(stock, table, lambda_context):
    a, b = new_sku(), new_sku()
    order = new_order([line(a, 2), line(b, 3)])

    assert invoke(stock, "reserve", order, lambda_context) == {"reserved": [line(a, 2), line(b, 3)]}

    assert (available(table, a), available(table, b)) == (DEFAULT_STOCK - 2, DEFAULT_STOCK - 3)
    assert reservation(table, order)["status"] == "RESERVED"


def test_a_repeated_reserve_takes_the_units_once(stock, table, lambda_context):
    sku = new_sku()
    order = new_order([line(sku, 4)])

    results = [invoke(stock, "reserve", order, lambda_context) for _ in range(3)]

    assert results == [{"reserved": [line(sku, 4)]}] * 3
    assert available(table, sku) == DEFAULT_STOCK - 4


def test_a_sku_listed_twice_is_taken_once_with_the_quantities_added_up(stock, table, lambda_context):
    sku, other = new_sku(), new_sku()
    order = new_order([line(sku, 2), line(other, 1), line(sku, 5)])

    assert invoke(stock, "reserve", order, lambda_context) == {"reserved": [line(sku, 7), line(other, 1)]}

    assert (available(table, sku), available(table, other)) == (DEFAULT_STOCK - 7, DEFAULT_STOCK - 1)


def test_a_shortage_names_the_short_skus_and_takes_nothing(stock, table, lambda_context):
    fine, short, twice = new_sku(), new_sku(), new_sku()
    invoke(stock, "reserve", new_order([line(short, DEFAULT_STOCK - 1)]), lambda_context)
    order = new_order([line(fine, 1), line(short, 2), line(twice, DEFAULT_STOCK), line(twice, 1)])

    with pytest.raises(stock.StockShortage, match=f"not enough stock of {short}, {twice}$"):
        invoke(stock, "reserve", order, lambda_context)

    assert [available(table, sku) for sku in (fine, short, twice)] == [DEFAULT_STOCK, 1, DEFAULT_STOCK]
    assert reservation(table, order) is None


def test_release_gives_the_units_back_once_however_often_it_runs(stock, table, lambda_context):
    sku = new_sku()
    order = new_order([line(sku, 3)])
    invoke(stock, "reserve", order, lambda_context)

    results = [invoke(stock, "release", order, lambda_context) for _ in range(3)]

    assert results == [{"released": True}, {"released": False}, {"released": False}]
    assert available(table, sku) == DEFAULT_STOCK
    assert reservation(table, order)["status"] == "RELEASED"


def test_a_release_before_the_reserve_blocks_it_and_nothing_moves(stock, table, lambda_context):
    sku = new_sku()
    order = new_order([line(sku, 3)])

    assert invoke(stock, "release", order, lambda_context) == {"released": False}
    with pytest.raises(stock.ReservationReleased, match=order["order_id"]):
        invoke(stock, "reserve", order, lambda_context)

    assert available(table, sku) == DEFAULT_STOCK
    assert invoke(stock, "release", order, lambda_context) == {"released": False}
    assert available(table, sku) == DEFAULT_STOCK


def test_a_release_that_loses_the_race_to_a_reserve_gives_the_units_back(stock, table, lambda_context, monkeypatch):
    """The reserve lands between the release's read and its tombstone: the tombstone is refused, and the release undoes the reserve."""
    sku = new_sku()
    order = new_order([line(sku, 3)])
    real_get = stock.table.get_item
    reads = itertools.count()

    def get_item(**kwargs):
        found = real_get(**kwargs)
        if next(reads) == 0:
            invoke(stock, "reserve", order, lambda_context)
        return found

    monkeypatch.setattr(stock.table, "get_item", get_item)

    assert invoke(stock, "release", order, lambda_context) == {"released": True}

    assert available(table, sku) == DEFAULT_STOCK
    assert reservation(table, order)["status"] == "RELEASED"


def test_two_releases_at_once_give_the_units_back_once(stock, table, lambda_context, monkeypatch):
    """Another release lands between this release's read and its transaction: this one finds the reservation released and gives nothing."""
    sku = new_sku()
    order = new_order([line(sku, 3)])
    invoke(stock, "reserve", order, lambda_context)
    real_get, others = stock.table.get_item, []
    reads = itertools.count()

    def get_item(**kwargs):
        found = real_get(**kwargs)
        if next(reads) == 0:
            others.append(invoke(stock, "release", order, lambda_context))
        return found

    monkeypatch.setattr(stock.table, "get_item", get_item)

    assert invoke(stock, "release", order, lambda_context) == {"released": False}

    assert others == [{"released": True}]
    assert available(table, sku) == DEFAULT_STOCK


def test_a_transaction_conflict_is_tried_again(stock, table, lambda_context, monkeypatch):
    sku = new_sku()
    order = new_order([line(sku, 1)])
    real, calls = stock.client.transact_write_items, []

    def transact_write_items(**kwargs):
        calls.append(kwargs)
        if len(calls) == 1:
            reasons = [{"Code": "None"}, {"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}]
            error = {"Error": {"Code": "TransactionCanceledException", "Message": "conflict"}, "CancellationReasons": reasons}
            raise stock.client.exceptions.TransactionCanceledException(error, "TransactWriteItems")
        return real(**kwargs)

    monkeypatch.setattr(stock.client, "transact_write_items", transact_write_items)

    assert invoke(stock, "reserve", order, lambda_context) == {"reserved": [line(sku, 1)]}
    assert len(calls) == 2 and available(table, sku) == DEFAULT_STOCK - 1


GOOD = new_order([line("SKU-x", 1)])
BAD_INPUTS = {
    "not a dict": ([GOOD], 'expected {"action"'),
    "none": (None, 'expected {"action"'),
    "unknown action": ({"action": "cancel", "order": GOOD}, '"reserve" | "release"'),
    "no action": ({"order": GOOD}, '"reserve" | "release"'),
    "no order": ({"action": "reserve"}, "expected an order with order_id"),
    "order not a dict": ({"action": "reserve", "order": "o-1"}, "expected an order with order_id"),
    "no items": ({"action": "reserve", "order": {**GOOD, "items": []}}, "items"),
    "bad sku": ({"action": "reserve", "order": {**GOOD, "items": [line("x", 1)]}}, "items.0.sku"),
    "zero quantity": ({"action": "release", "order": {**GOOD, "items": [line("SKU-x", 0)]}}, "items.0.quantity"),
    "bool quantity": ({"action": "reserve", "order": {**GOOD, "items": [line("SKU-x", True)]}}, "items.0.quantity"),
    "bad order id": ({"action": "release", "order": {**GOOD, "order_id": "42"}}, "order_id"),
    "no customer": ({"action": "reserve", "order": {k: v for k, v in GOOD.items() if k != "customer_id"}}, "customer_id"),
}


@pytest.mark.parametrize(("event", "expected"), BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_input_the_saga_never_sends_is_refused_naming_what_was_expected(stock, table, lambda_context, event, expected):
    with pytest.raises(stock.InvalidSagaInput, match=expected.replace("|", r"\|").replace("{", r"\{")):
        stock.lambda_handler(event, lambda_context)

    assert available(table, "SKU-x") == DEFAULT_STOCK


# --- stock is conserved whatever the saga's retries and compensations do ------------------------------------


@st.composite
def scenarios(draw):
    skus = [new_sku() for _ in range(draw(st.integers(1, 3)))]
    quantities = st.integers(1, DEFAULT_STOCK)
    orders = [new_order(draw(st.lists(st.builds(line, st.sampled_from(skus), quantities), min_size=1, max_size=3))) for _ in range(draw(st.integers(1, 3)))]
    calls = draw(st.lists(st.tuples(st.sampled_from(["reserve", "release"]), st.sampled_from(range(len(orders)))), max_size=12))
    return skus, orders, calls


@FAST
@given(scenario=scenarios())
def test_stock_is_conserved_and_never_negative_whatever_the_calls(stock, table, lambda_context, scenario):
    """Any sequence of reserves and releases, repeated and reordered: every unit is either available or held by a RESERVED reservation."""
    skus, orders, calls = scenario
    model = {}  # order index -> its reservation's status, as a reference model says
    for action, index in calls:
        order, held = orders[index], held_units(orders, model, skus)
        try:
            result = invoke(stock, action, order, lambda_context)
        except (stock.StockShortage, stock.ReservationReleased) as error:
            result = type(error).__name__
        if action == "release":
            assert result == {"released": model.get(index) == "RESERVED"}
            model[index] = "RELEASED"
        elif model.get(index) == "RELEASED":
            assert result == "ReservationReleased"
        elif model.get(index) == "RESERVED" or all(held[sku] + summed(order).get(sku, 0) <= DEFAULT_STOCK for sku in skus):
            assert result == {"reserved": [line(sku, quantity) for sku, quantity in summed(order).items()]}
            model[index] = "RESERVED"
        else:
            assert result == "StockShortage"

        stored = [reservation(table, order) for order in orders]
        assert [item and item["status"] for item in stored] == [model.get(i) for i in range(len(orders))]
        lines = [li for item in stored if item and item["status"] == "RESERVED" for li in item["lines"]]
        in_reservations = {sku: sum(int(li["quantity"]) for li in lines if li["sku"] == sku) for sku in skus}
        for sku in skus:
            assert available(table, sku) >= 0
            assert available(table, sku) + in_reservations[sku] == DEFAULT_STOCK


def summed(order):
    totals = {}
    for item in order["items"]:
        totals[item["sku"]] = totals.get(item["sku"], 0) + item["quantity"]
    return totals


def held_units(orders, model, skus):
    return {sku: sum(summed(orders[i]).get(sku, 0) for i, status in model.items() if status == "RESERVED") for sku in skus}
