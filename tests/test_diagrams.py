"""The blueprints' docs pages show the diagram the code makes (``make diagrams``), and the diagram shows the paths."""

from __future__ import annotations

import pytest

from scripts.diagrams import PAGES, ROOT, Diagram, updated


@pytest.mark.parametrize("stack", sorted(PAGES))
def test_each_page_shows_the_diagram_of_its_synthesized_template(template_json, stack):
    page = (ROOT / PAGES[stack]).read_text()
    assert updated(page, stack, template_json("sandbox", stack)) == page, f"{PAGES[stack]} is out of date: run `make diagrams`"


def test_the_diagram_draws_message_paths_and_dotted_failure_paths_and_leaves_the_rest_out(template_json):
    diagram = Diagram(template_json("sandbox", "Exercise01Queues"))
    kinds = {diagram.resources[node]["Type"] for edge in diagram.edges for node in edge[:2]}
    assert {"AWS::SNS::Topic", "AWS::SQS::Queue", "AWS::Lambda::Function"} <= kinds
    assert not kinds & {"AWS::IAM::Role", "AWS::Logs::LogGroup", "AWS::CloudWatch::Alarm", "AWS::KMS::Key"}
    # Each subscription's topic to its queue, its dead-letter queue dotted; each queue to its consumer.
    solid = {(diagram.resources[a]["Type"], diagram.resources[b]["Type"]) for a, b, style in diagram.edges if style == "solid"}
    assert ("AWS::SNS::Topic", "AWS::SQS::Queue") in solid and ("AWS::SQS::Queue", "AWS::Lambda::Function") in solid
    assert any(style == "failures" for _, _, style in diagram.edges)
    text = diagram.mermaid()
    assert text.startswith("flowchart LR") and " -. failures .-> " in text


def test_a_page_without_a_diagram_gets_one_under_its_title(template_json):
    page = updated("# Title\n\nText.\n", "Exercise03Streaming", template_json("sandbox", "Exercise03Streaming"))
    assert page.startswith("# Title\n\n## Diagram\n") and "<!-- diagram: Exercise03Streaming" in page and page.endswith("Text.\n")
