"""The compliance gate on the whole app, both profiles: packs, cfn-lint, acknowledgements."""

from __future__ import annotations

import pytest

from messaging_constructs.acknowledgements import AWS_REQUIRED, NOT_OFFERED, OPERATOR_CHOICE, RULE_DEFECT, SANDBOX_COST
from stacks.compliance import PACKS

PROFILES = ["sandbox", "production"]


@pytest.mark.parametrize("profile", PROFILES)
def test_every_pack_ran_and_left_no_unacknowledged_finding(checked, profile):
    result = checked(profile)
    assert set(result.findings_per_pack()) == set(PACKS)
    assert result.findings == [], "\n".join(f"{f.rule} at {f.path}" for f in result.findings)


@pytest.mark.parametrize("profile", PROFILES)
def test_cfn_lint_reports_nothing(checked, profile):
    result = checked(profile)
    assert result.templates, "no template was synthesized"
    assert result.lint == []


@pytest.mark.parametrize("profile", PROFILES)
def test_the_packs_do_find_what_acknowledgements_hide(unacknowledged, profile):
    """Without the acknowledgements applied the packs fail: proof that they really run."""
    assert unacknowledged(profile).findings


@pytest.mark.parametrize("profile", PROFILES)
def test_every_acknowledgement_hides_a_real_finding(unacknowledged, profile):
    raw = unacknowledged(profile)
    unused = [
        f"{ack.finding_id} on {ack.path}"
        for ack in raw.acknowledgements
        if not any(f.rule == ack.finding_id and (f.path == ack.path or f.path.startswith(ack.path + "/")) for f in raw.findings)
    ]
    assert unused == []


@pytest.mark.parametrize("profile", PROFILES)
def test_acknowledgements_are_of_the_allowed_kinds_with_reasons(checked, profile):
    for ack in checked(profile).acknowledgements:
        assert ack.kind in {RULE_DEFECT, AWS_REQUIRED, SANDBOX_COST, NOT_OFFERED, OPERATOR_CHOICE}
        assert len(ack.reason) > 40


def test_production_has_no_sandbox_cost_acknowledgement(checked):
    assert [a for a in checked("production").acknowledgements if a.kind == SANDBOX_COST] == []


def test_the_report_fails_on_an_unacknowledged_finding_and_passes_otherwise(checked, unacknowledged):
    from scripts.compliance_report import render

    failing, passing = unacknowledged("sandbox"), checked("sandbox")
    assert not failing.ok and render(failing).endswith("RESULT: FAIL")
    assert passing.ok and render(passing).endswith("RESULT: PASS")
    assert "Unacknowledged findings:" in render(failing)
