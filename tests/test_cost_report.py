"""The blueprints' guides give the cost ``make cost`` computes, and the main paths use the measured handler costs."""

from __future__ import annotations

import re

import pytest

from messaging_constructs.costs import PriceTable, idle_cost, total
from scripts.cost_report import PROFILES, block, updated, usd
from scripts.diagrams import PAGES, ROOT
from stacks.cost_paths import CPU_US, IDEMPOTENCY_US, MAIN_PATHS


@pytest.fixture(scope="module")
def templates(template_json):
    return {profile: {stack: template_json(profile, stack) for stack in MAIN_PATHS} for profile in PROFILES}


@pytest.fixture(scope="module")
def prices():
    return PriceTable.load()


def test_every_blueprint_with_a_guide_has_a_main_path():
    assert set(MAIN_PATHS) == set(PAGES)


@pytest.mark.parametrize("stack", sorted(MAIN_PATHS))
def test_each_guide_gives_the_cost_of_its_synthesized_templates(templates, prices, stack):
    page = (ROOT / PAGES[stack]).read_text()
    assert updated(page, stack, templates, prices) == page, f"{PAGES[stack]} is out of date: run `make cost`"


def test_the_readme_idle_figures_are_the_reports(templates, prices):
    readme = (ROOT / "README.md").read_text()
    idle = {stack: total(idle_cost(templates["sandbox"][stack], prices)) for stack in MAIN_PATHS}
    stated = re.search(r"about \$(\d+) and \$(\d+) a month in the sandbox profile", readme)
    assert stated and (int(stated[1]), int(stated[2])) == (round(idle["Exercise03Streaming"]), round(idle["Exercise05EnterpriseMessaging"]))
    streams = re.search(r"on-demand Kinesis streams \(about \$(\d+), \$(\d+) and \$(\d+) a month idle\)", " ".join(readme.split()))
    assert streams and tuple(map(int, streams.groups())) == tuple(round(idle[s]) for s in ("CapstoneAnalytics", "CaseUber", "CaseSpotify"))


def test_the_cpu_figures_are_the_measured_ones_in_performance_md():
    performance = (ROOT / "docs" / "performance.md").read_text()
    section = performance[performance.index("## Consumer CPU per record") :]
    section = section[: section.index("\n## ", 1)]
    numbers = {float(n) for n in re.findall(r"(?<![\d.])\d+(?:\.\d+)?(?![\d.])", section)}
    for name, figure in [*CPU_US.items(), ("idempotency bookkeeping", IDEMPOTENCY_US)]:
        assert figure in numbers, f"{name}: {figure} µs is not in docs/performance.md's consumer CPU table"


def test_the_levers_move_the_figure_the_way_the_docs_say(templates, prices):
    template = templates["sandbox"]["Exercise01Queues"]
    main = MAIN_PATHS["Exercise01Queues"]
    base = total(main.path.cost(template, prices, main.traffic))
    levers = {lever.name.split(":")[0]: lever for lever in main.levers}

    def cost(name):
        lever = levers[name]
        return total(lever.path.cost(lever.transform(template) if lever.transform else template, prices, lever.traffic))

    assert cost("unbatched") > 2 * base
    assert base < cost("FIFO everywhere") < 1.2 * base
    assert cost("no data-key reuse") > 3 * base
    assert (
        cost("at 1 message a second, keys reused 60 s")
        > cost("at 1 message a second, keys reused 300 s (as deployed)")
        > cost("at 1 message a second, keys reused 24 hours")
    )
    # The lever changes a copy: the synthesized template is untouched.
    assert not any(r["Properties"].get("FifoQueue") for r in template["Resources"].values() if r["Type"] == "AWS::SQS::Queue" and "Billing" in str(r))


def test_the_block_states_its_assumptions_and_the_price_date(templates, prices):
    text = block("CapstoneAnalytics", templates, prices)
    assert "at 1000 a second, 1,024 bytes each" in text and f"read {prices.oldest.isoformat()}" in text
    assert "| idle, a month |" in text and "| per million events |" in text


@pytest.mark.parametrize(("value", "shown"), [(0, "$0"), (1151.5, "$1,152"), (7.9, "$7.90"), (0.29, "$0.29"), (0.0016, "$0.0016")])
def test_dollars_are_shown_to_a_sensible_precision(value, shown):
    assert usd(value) == shown
