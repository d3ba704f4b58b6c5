"""What ``cdk destroy`` does to every blueprint: sandbox leaves nothing behind, production keeps data that stands alone.

A retained resource whose dependencies are deleted makes ``cdk destroy`` end
in DELETE_FAILED (a retained MSK cluster in a deleted subnet); a log group
without retention, or one that AWS creates outside the stack, is kept and
billed forever. These tests read the synthesized templates for both.
"""

from __future__ import annotations

import json
import re

import pytest

PROFILES = ["sandbox", "production"]
STACKS = [
    "Exercise01Queues",
    "Exercise02EventBridge",
    "Exercise03Streaming",
    "Exercise04EventSourcing",
    "Exercise05EnterpriseMessaging",
    "CapstoneOrders",
    "CapstoneAnalytics",
]
RETAINED = {"Retain", "RetainExceptOnCreate", "Snapshot"}
#: Properties whose references do not hold the resource up: principals named in a policy,
#: and a log group named after the resource whose logs it keeps.
NOT_DEPENDENCIES = {"KeyPolicy", "PolicyDocument", "LogGroupName"}


def _references(value, found: set[str]) -> set[str]:
    if isinstance(value, dict):
        for name, inner in value.items():
            if name in NOT_DEPENDENCIES:
                continue
            if name == "Ref" and isinstance(inner, str):
                found.add(inner)
            elif name == "Fn::GetAtt":
                found.add(inner[0] if isinstance(inner, list) else inner.split(".")[0])
            elif name == "Fn::Sub":
                text = inner[0] if isinstance(inner, list) else inner
                found.update(re.findall(r"\$\{([^}!.]+)", text))
            _references(inner, found)
    elif isinstance(value, list):
        for inner in value:
            _references(inner, found)
    return found


def dependencies(resource: dict) -> set[str]:
    """Logical ids a resource references (outside policies and names) or depends on."""
    depends_on = resource.get("DependsOn", [])
    return _references(resource.get("Properties", {}), set()) | set([depends_on] if isinstance(depends_on, str) else depends_on)


def _not_retained_dependencies(template: dict) -> list[str]:
    resources = template["Resources"]
    broken = []
    for logical_id, resource in resources.items():
        if resource.get("DeletionPolicy") not in RETAINED:
            continue
        for dependency in sorted(dependencies(resource) & set(resources)):
            if resources[dependency].get("DeletionPolicy") not in RETAINED:
                broken.append(f"{logical_id} ({resource['Type']}) needs {dependency} ({resources[dependency]['Type']}), which is deleted")
    return broken


@pytest.mark.parametrize("stack", STACKS)
def test_production_retains_whatever_a_retained_resource_needs(template_json, stack):
    assert _not_retained_dependencies(template_json("production", stack)) == []


def test_the_check_catches_a_retained_cluster_in_a_deleted_network(template_json):
    template = json.loads(json.dumps(template_json("production", "Exercise03Streaming")))
    (cluster,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::MSK::Cluster"]
    cluster["DeletionPolicy"] = "Retain"
    broken = _not_retained_dependencies(template)
    assert any("AWS::EC2::Subnet" in b for b in broken) and any("AWS::EC2::SecurityGroup" in b for b in broken)


@pytest.mark.parametrize("stack", STACKS)
def test_sandbox_destroy_leaves_nothing_in_the_stack_behind(template_json, stack):
    """Nothing but the account's API Gateway logging role and setting, which every API of the account shares (README, "Teardown")."""
    resources = template_json("sandbox", stack)["Resources"]
    kept = [k for k, r in resources.items() if r.get("DeletionPolicy", "Delete") != "Delete"]
    shared = [k for k in kept if k.startswith("ApiGatewayCloudWatchLogging")]
    assert sorted(resources[k]["Type"] for k in shared) in ([], ["AWS::ApiGateway::Account", "AWS::IAM::ManagedPolicy", "AWS::IAM::Role"])
    assert [k for k in kept if k not in shared] == []


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("stack", STACKS)
def test_every_log_group_has_a_retention(template_json, profile, stack):
    groups = {k: r for k, r in template_json(profile, stack)["Resources"].items() if r["Type"] == "AWS::Logs::LogGroup"}
    assert groups and [k for k, r in groups.items() if "RetentionInDays" not in r["Properties"]] == []


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("stack", STACKS)
def test_every_function_logs_to_a_log_group_of_the_stack(template_json, profile, stack):
    """Without one, Lambda makes ``/aws/lambda/<name>`` itself, with no retention, and it outlives the stack."""
    resources = template_json(profile, stack)["Resources"]
    functions = {k: r["Properties"] for k, r in resources.items() if r["Type"] == "AWS::Lambda::Function"}
    unlogged = [
        k for k, f in functions.items() if resources.get(f.get("LoggingConfig", {}).get("LogGroup", {}).get("Ref"), {}).get("Type") != "AWS::Logs::LogGroup"
    ]
    assert functions and unlogged == []


@pytest.mark.parametrize("profile", PROFILES)
def test_amazon_mq_log_groups_are_kept_by_the_stack(template_json, profile):
    """Amazon MQ creates ``/aws/amazonmq/broker/<id>/general`` (and ``/audit`` for ActiveMQ) itself; the stack keeps each one."""
    resources = template_json(profile, "Exercise05EnterpriseMessaging")["Resources"]
    kept = [r["Properties"]["LogGroupName"] for r in resources.values() if r["Type"] == "Custom::ServiceLogGroup"]
    expected = []
    for logical_id, broker in resources.items():
        if broker["Type"] != "AWS::AmazonMQ::Broker":
            continue
        for kind, enabled in broker["Properties"]["Logs"].items():
            if enabled:
                expected.append({"Fn::Join": ["", ["/aws/amazonmq/broker/", {"Ref": logical_id}, f"/{kind.lower()}"]]})
    assert len(expected) == 3
    assert sorted(map(json.dumps, kept)) == sorted(map(json.dumps, expected))


@pytest.mark.parametrize("profile", PROFILES)
def test_production_stacks_refuse_destroy_until_protection_is_lifted(checked, profile):
    manifest = json.loads((checked(profile).outdir / "manifest.json").read_text())
    protection = {
        name: artifact.get("properties", {}).get("terminationProtection", False) for name, artifact in manifest["artifacts"].items() if name in STACKS
    }
    assert protection == {stack: profile == "production" for stack in STACKS}


@pytest.mark.parametrize("stack", STACKS)
def test_nothing_production_retains_has_a_name_fixed_at_synth(template_json, stack):
    """A retained resource keeps its name: deploying the destroyed stack again must not ask for the same one."""
    resources = template_json("production", stack)["Resources"]
    fixed = [
        f"{logical_id}.{name}={value!r}"
        for logical_id, resource in resources.items()
        if resource.get("DeletionPolicy") in RETAINED
        for name, value in resource.get("Properties", {}).items()
        if name.endswith("Name") and isinstance(value, str)
    ]
    assert fixed == []
