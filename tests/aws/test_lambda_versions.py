"""Versions and aliases through boto3: PublishVersion, ListVersionsByFunction, qualified Invoke
(X-Amz-Executed-Version), aliases with weighted routing, and DeleteFunction with a Qualifier.

Behaviour follows AWS as described in the Lambda management API reference, sections 3.3, 4 and 5.
Every test creates its own uniquely named function.
"""

import json
from collections import Counter

import botocore.exceptions
import pytest

import lambda_helpers as h

VALIDATION_CODES = {"InvalidParameterValueException", "ValidationException"}
WAIT = {"Delay": 1, "MaxAttempts": 30}
ROUTED_INVOKES = 60
MIN_SHARE = 10


# --- helpers ---------------------------------------------------------------------------


def invoke(client, name, event=None, **kwargs):
    """Invokes synchronously with `event` as JSON; returns (response, decoded payload)."""
    kwargs["Payload"] = json.dumps({} if event is None else event).encode()
    resp = client.invoke(FunctionName=name, **kwargs)
    return resp, h.read_payload(resp)


def wait_updated(client, name):
    client.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)


def update_code(client, name, marker):
    """Replaces $LATEST's code with handler_zip(marker) and waits until the update is done."""
    zip_bytes = h.handler_zip(marker)
    updated = client.update_function_code(FunctionName=name, ZipFile=zip_bytes)
    assert updated["CodeSha256"] == h.code_sha256(zip_bytes)
    wait_updated(client, name)
    return zip_bytes


def publish(client, name, **kwargs):
    """Publishes $LATEST and waits until the version is active; returns the response."""
    resp = client.publish_version(FunctionName=name, **kwargs)
    client.get_waiter("published_version_active").wait(
        FunctionName=name, Qualifier=resp["Version"], WaiterConfig=WAIT
    )
    return resp


def function_with_versions(client, create_function, count):
    """Creates a function and publishes `count` versions; version N runs handler_zip(f"v{N}").

    $LATEST is left holding the code of the last version.
    """
    fn = create_function(zip_bytes=h.handler_zip("v1"))
    wait_updated(client, fn.name)
    for n in range(1, count + 1):
        if n > 1:
            update_code(client, fn.name, f"v{n}")
        resp = publish(client, fn.name)
        assert resp["Version"] == str(n), resp
    return fn


def version_numbers(client, name):
    return [v["Version"] for v in client.list_versions_by_function(FunctionName=name)["Versions"]]


def assert_latest_runs(client, name, marker):
    resp, payload = invoke(client, name)
    assert resp["StatusCode"] == 200
    assert resp["ExecutedVersion"] == "$LATEST"
    assert payload["version"] == marker


def alias_arn(name, alias):
    return f"{h.function_arn(name)}:{alias}"


# --- PublishVersion / ListVersionsByFunction ---------------------------------------------


def test_publish_version_and_list_versions(lambda_client, create_function):
    v1_zip = h.handler_zip("v1")
    fn = create_function(zip_bytes=v1_zip)
    wait_updated(lambda_client, fn.name)
    latest = lambda_client.get_function_configuration(FunctionName=fn.name)

    first = lambda_client.publish_version(FunctionName=fn.name)
    assert h.http_status(first) == 201
    assert first["Version"] == "1"
    assert first["FunctionName"] == fn.name
    assert first["FunctionArn"] == f"{h.function_arn(fn.name)}:1"
    assert first["CodeSha256"] == latest["CodeSha256"] == h.code_sha256(v1_zip)
    assert first["CodeSize"] == len(v1_zip)
    assert first["Runtime"] == h.RUNTIME
    assert first["Handler"] == h.HANDLER
    lambda_client.get_waiter("published_version_active").wait(
        FunctionName=fn.name, Qualifier="1", WaiterConfig=WAIT
    )

    # Nothing changed since version 1: Lambda returns version 1 again instead of a new one.
    again = lambda_client.publish_version(FunctionName=fn.name)
    assert again["Version"] == "1"
    assert again["FunctionArn"] == f"{h.function_arn(fn.name)}:1"
    assert again["CodeSha256"] == h.code_sha256(v1_zip)
    assert version_numbers(lambda_client, fn.name) == ["$LATEST", "1"]

    v2_zip = update_code(lambda_client, fn.name, "v2")
    second = publish(lambda_client, fn.name)
    assert h.http_status(second) == 201
    assert second["Version"] == "2"
    assert second["FunctionArn"] == f"{h.function_arn(fn.name)}:2"
    assert second["CodeSha256"] == h.code_sha256(v2_zip)

    listed = lambda_client.list_versions_by_function(FunctionName=fn.name)
    assert h.http_status(listed) == 200
    versions = listed["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "1", "2"]
    assert all(v["FunctionName"] == fn.name for v in versions)
    by_version = {v["Version"]: v for v in versions}
    assert by_version["$LATEST"]["CodeSha256"] == h.code_sha256(v2_zip)
    assert by_version["1"]["CodeSha256"] == h.code_sha256(v1_zip)
    assert by_version["1"]["FunctionArn"] == f"{h.function_arn(fn.name)}:1"
    assert by_version["2"]["CodeSha256"] == h.code_sha256(v2_zip)
    assert by_version["2"]["FunctionArn"] == f"{h.function_arn(fn.name)}:2"

    # Publishing leaves $LATEST alone: it still runs the newest code.
    assert_latest_runs(lambda_client, fn.name, "v2")


def test_publish_version_with_matching_code_sha256(lambda_client, create_function):
    fn = create_function(zip_bytes=h.handler_zip("v1"))
    wait_updated(lambda_client, fn.name)
    resp = lambda_client.publish_version(
        FunctionName=fn.name, CodeSha256=fn.config["CodeSha256"], Description="first release"
    )
    assert h.http_status(resp) == 201
    assert resp["Version"] == "1"
    assert resp["Description"] == "first release"


def test_publish_version_with_wrong_code_sha256(lambda_client, create_function):
    fn = create_function(zip_bytes=h.handler_zip("v1"))
    wait_updated(lambda_client, fn.name)
    wrong = h.code_sha256(h.handler_zip("something-else"))
    assert wrong != fn.config["CodeSha256"]
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException) as e:
        lambda_client.publish_version(FunctionName=fn.name, CodeSha256=wrong)
    assert h.http_status(e.value) == 400
    assert version_numbers(lambda_client, fn.name) == ["$LATEST"]


def test_publish_version_with_stale_revision_id(lambda_client, create_function):
    fn = create_function(zip_bytes=h.handler_zip("v1"))
    wait_updated(lambda_client, fn.name)
    stale = fn.config["RevisionId"]
    updated = lambda_client.update_function_configuration(FunctionName=fn.name, Description="changed")
    assert updated["RevisionId"] != stale
    wait_updated(lambda_client, fn.name)
    current = lambda_client.get_function_configuration(FunctionName=fn.name)["RevisionId"]

    with pytest.raises(lambda_client.exceptions.PreconditionFailedException) as e:
        lambda_client.publish_version(FunctionName=fn.name, RevisionId=stale)
    assert h.http_status(e.value) == 412
    assert version_numbers(lambda_client, fn.name) == ["$LATEST"]

    resp = lambda_client.publish_version(FunctionName=fn.name, RevisionId=current)
    assert resp["Version"] == "1"


# --- Invoke with a Qualifier ----------------------------------------------------------------


def test_invoke_published_versions(lambda_client, create_function):
    fn = function_with_versions(lambda_client, create_function, 2)
    arn = h.function_arn(fn.name)

    resp, payload = invoke(lambda_client, fn.name, {"n": 1}, Qualifier="1")
    assert resp["StatusCode"] == 200
    assert resp["ExecutedVersion"] == "1"
    assert "FunctionError" not in resp
    assert payload["version"] == "v1"
    assert payload["event"] == {"n": 1}
    assert payload["function_name"] == fn.name
    assert payload["invoked_function_arn"] == f"{arn}:1"

    resp, payload = invoke(lambda_client, fn.name, Qualifier="2")
    assert resp["ExecutedVersion"] == "2"
    assert payload["version"] == "v2"
    assert payload["invoked_function_arn"] == f"{arn}:2"

    # The qualifier may also be part of the function name (or of its ARN).
    resp, payload = invoke(lambda_client, f"{fn.name}:1")
    assert resp["StatusCode"] == 200
    assert resp["ExecutedVersion"] == "1"
    assert payload["version"] == "v1"
    resp, payload = invoke(lambda_client, f"{arn}:2")
    assert resp["ExecutedVersion"] == "2"
    assert payload["version"] == "v2"
    # The same qualifier in both places is fine.
    resp, payload = invoke(lambda_client, f"{fn.name}:1", Qualifier="1")
    assert resp["ExecutedVersion"] == "1"
    assert payload["version"] == "v1"

    # Explicit $LATEST and no qualifier both run the newest code.
    resp, payload = invoke(lambda_client, fn.name, Qualifier="$LATEST")
    assert resp["ExecutedVersion"] == "$LATEST"
    assert payload["version"] == "v2"
    assert_latest_runs(lambda_client, fn.name, "v2")

    cfg = lambda_client.get_function_configuration(FunctionName=fn.name, Qualifier="1")
    assert cfg["Version"] == "1"
    assert cfg["FunctionArn"] == f"{arn}:1"
    assert cfg["CodeSha256"] == h.code_sha256(h.handler_zip("v1"))
    got = lambda_client.get_function(FunctionName=fn.name, Qualifier="2")
    assert got["Configuration"]["Version"] == "2"
    assert got["Configuration"]["FunctionArn"] == f"{arn}:2"


def test_invoke_unknown_version(lambda_client, create_function):
    fn = function_with_versions(lambda_client, create_function, 1)
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException) as e:
        lambda_client.invoke(FunctionName=fn.name, Qualifier="9", Payload=b"{}")
    assert h.http_status(e.value) == 404
    assert fn.name in h.error_message(e.value)
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.invoke(FunctionName=f"{fn.name}:9", Payload=b"{}")
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.get_function_configuration(FunctionName=fn.name, Qualifier="9")


def test_invoke_conflicting_qualifiers(lambda_client, create_function):
    fn = function_with_versions(lambda_client, create_function, 2)
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException) as e:
        lambda_client.invoke(FunctionName=f"{fn.name}:1", Qualifier="2", Payload=b"{}")
    assert h.http_status(e.value) == 400


# --- Aliases ------------------------------------------------------------------------------


def test_alias_lifecycle(lambda_client, create_function):
    fn = function_with_versions(lambda_client, create_function, 2)
    expected_arn = alias_arn(fn.name, "live")

    created = lambda_client.create_alias(FunctionName=fn.name, Name="live", FunctionVersion="1")
    assert h.http_status(created) == 201
    assert created["AliasArn"] == expected_arn
    assert created["Name"] == "live"
    assert created["FunctionVersion"] == "1"
    assert isinstance(created["RevisionId"], str) and created["RevisionId"]

    with pytest.raises(lambda_client.exceptions.ResourceConflictException) as e:
        lambda_client.create_alias(FunctionName=fn.name, Name="live", FunctionVersion="2")
    assert h.http_status(e.value) == 409

    got = lambda_client.get_alias(FunctionName=fn.name, Name="live")
    assert h.http_status(got) == 200
    assert got["AliasArn"] == expected_arn
    assert got["Name"] == "live"
    assert got["FunctionVersion"] == "1"  # the duplicate create did not change it
    assert got["RevisionId"] == created["RevisionId"]

    listed = lambda_client.list_aliases(FunctionName=fn.name)
    assert h.http_status(listed) == 200
    assert [(a["Name"], a["FunctionVersion"], a["AliasArn"]) for a in listed["Aliases"]] == [
        ("live", "1", expected_arn)
    ]

    resp, payload = invoke(lambda_client, fn.name, {"via": "alias"}, Qualifier="live")
    assert resp["StatusCode"] == 200
    assert resp["ExecutedVersion"] == "1"
    assert payload["version"] == "v1"
    assert payload["event"] == {"via": "alias"}
    assert payload["invoked_function_arn"] == expected_arn
    resp, payload = invoke(lambda_client, f"{fn.name}:live")
    assert resp["ExecutedVersion"] == "1"
    assert payload["version"] == "v1"

    updated = lambda_client.update_alias(FunctionName=fn.name, Name="live", FunctionVersion="2")
    assert h.http_status(updated) == 200
    assert updated["AliasArn"] == expected_arn
    assert updated["FunctionVersion"] == "2"
    assert updated["RevisionId"] != created["RevisionId"]
    assert lambda_client.get_alias(FunctionName=fn.name, Name="live")["FunctionVersion"] == "2"

    resp, payload = invoke(lambda_client, fn.name, Qualifier="live")
    assert resp["ExecutedVersion"] == "2"
    assert payload["version"] == "v2"

    assert_latest_runs(lambda_client, fn.name, "v2")


def test_alias_on_missing_version(lambda_client, create_function):
    fn = function_with_versions(lambda_client, create_function, 1)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        lambda_client.create_alias(FunctionName=fn.name, Name="ghost", FunctionVersion="7")
    assert h.error_code(e.value) in {"ResourceNotFoundException", "InvalidParameterValueException"}
    assert lambda_client.list_aliases(FunctionName=fn.name)["Aliases"] == []


def test_alias_with_numeric_name_is_rejected(lambda_client, create_function):
    fn = function_with_versions(lambda_client, create_function, 1)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        lambda_client.create_alias(FunctionName=fn.name, Name="5", FunctionVersion="1")
    assert h.error_code(e.value) in VALIDATION_CODES
    assert h.http_status(e.value) == 400
    assert lambda_client.list_aliases(FunctionName=fn.name)["Aliases"] == []


# --- Weighted routing ----------------------------------------------------------------------


def test_alias_weighted_routing(lambda_client, create_function):
    fn = function_with_versions(lambda_client, create_function, 2)
    lambda_client.create_alias(FunctionName=fn.name, Name="live", FunctionVersion="1")

    updated = lambda_client.update_alias(
        FunctionName=fn.name,
        Name="live",
        FunctionVersion="1",
        RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}},
    )
    assert updated["FunctionVersion"] == "1"
    assert updated["RoutingConfig"]["AdditionalVersionWeights"] == {"2": 0.5}
    got = lambda_client.get_alias(FunctionName=fn.name, Name="live")
    assert got["RoutingConfig"]["AdditionalVersionWeights"] == {"2": 0.5}

    executed = Counter()
    for i in range(ROUTED_INVOKES):
        resp, payload = invoke(lambda_client, fn.name, {"i": i}, Qualifier="live")
        assert resp["StatusCode"] == 200
        assert "FunctionError" not in resp, payload
        version = resp["ExecutedVersion"]
        assert version in {"1", "2"}, version
        # The reported version is the one whose code actually ran.
        assert payload["version"] == f"v{version}", (version, payload)
        assert payload["event"] == {"i": i}
        executed[version] += 1
    assert executed["1"] >= MIN_SHARE and executed["2"] >= MIN_SHARE, dict(executed)

    assert_latest_runs(lambda_client, fn.name, "v2")


def test_alias_routing_to_two_additional_versions_is_rejected(lambda_client, create_function):
    fn = function_with_versions(lambda_client, create_function, 3)
    lambda_client.create_alias(FunctionName=fn.name, Name="live", FunctionVersion="1")
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException) as e:
        lambda_client.update_alias(
            FunctionName=fn.name,
            Name="live",
            RoutingConfig={"AdditionalVersionWeights": {"2": 0.3, "3": 0.2}},
        )
    assert h.http_status(e.value) == 400
    assert_alias_unrouted(lambda_client, fn.name, "live", "1")


def test_alias_routing_weight_above_one_is_rejected(lambda_client, create_function):
    fn = function_with_versions(lambda_client, create_function, 2)
    lambda_client.create_alias(FunctionName=fn.name, Name="live", FunctionVersion="1")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        lambda_client.update_alias(
            FunctionName=fn.name,
            Name="live",
            RoutingConfig={"AdditionalVersionWeights": {"2": 1.5}},
        )
    assert h.error_code(e.value) in VALIDATION_CODES
    assert h.http_status(e.value) == 400
    assert_alias_unrouted(lambda_client, fn.name, "live", "1")


def test_alias_routing_to_its_own_version_is_rejected(lambda_client, create_function):
    fn = function_with_versions(lambda_client, create_function, 2)
    lambda_client.create_alias(FunctionName=fn.name, Name="live", FunctionVersion="1")
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException) as e:
        lambda_client.update_alias(
            FunctionName=fn.name,
            Name="live",
            RoutingConfig={"AdditionalVersionWeights": {"1": 0.5}},
        )
    assert h.http_status(e.value) == 400
    assert_alias_unrouted(lambda_client, fn.name, "live", "1")


def assert_alias_unrouted(client, name, alias, version):
    """A rejected update left the alias as it was: `version`, no additional weights."""
    got = client.get_alias(FunctionName=name, Name=alias)
    assert got["FunctionVersion"] == version
    assert not got.get("RoutingConfig", {}).get("AdditionalVersionWeights"), got.get("RoutingConfig")


# --- Deleting aliases and versions ---------------------------------------------------------


def test_delete_alias(lambda_client, create_function):
    fn = function_with_versions(lambda_client, create_function, 1)
    lambda_client.create_alias(FunctionName=fn.name, Name="live", FunctionVersion="1")
    deleted = lambda_client.delete_alias(FunctionName=fn.name, Name="live")
    assert h.http_status(deleted) == 204

    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException) as e:
        lambda_client.get_alias(FunctionName=fn.name, Name="live")
    assert h.http_status(e.value) == 404
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.invoke(FunctionName=fn.name, Qualifier="live", Payload=b"{}")
    assert lambda_client.list_aliases(FunctionName=fn.name)["Aliases"] == []

    # The version the alias pointed to is still there.
    resp, payload = invoke(lambda_client, fn.name, Qualifier="1")
    assert resp["ExecutedVersion"] == "1"
    assert payload["version"] == "v1"


def test_delete_function_versions(lambda_client, create_function):
    fn = function_with_versions(lambda_client, create_function, 2)
    lambda_client.create_alias(FunctionName=fn.name, Name="live", FunctionVersion="2")

    deleted = lambda_client.delete_function(FunctionName=fn.name, Qualifier="1")
    assert h.http_status(deleted) == 204
    assert version_numbers(lambda_client, fn.name) == ["$LATEST", "2"]
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.invoke(FunctionName=fn.name, Qualifier="1", Payload=b"{}")
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.get_function_configuration(FunctionName=fn.name, Qualifier="1")

    # Version 2 is what the alias points to: it cannot be deleted.
    with pytest.raises(lambda_client.exceptions.ResourceConflictException) as e:
        lambda_client.delete_function(FunctionName=fn.name, Qualifier="2")
    assert h.http_status(e.value) == 409
    assert version_numbers(lambda_client, fn.name) == ["$LATEST", "2"]
    resp, payload = invoke(lambda_client, fn.name, Qualifier="live")
    assert resp["ExecutedVersion"] == "2"
    assert payload["version"] == "v2"

    # Once the alias is gone the version can go too, and its number is never reused.
    lambda_client.delete_alias(FunctionName=fn.name, Name="live")
    assert h.http_status(lambda_client.delete_function(FunctionName=fn.name, Qualifier="2")) == 204
    assert version_numbers(lambda_client, fn.name) == ["$LATEST"]
    assert_latest_runs(lambda_client, fn.name, "v2")
    update_code(lambda_client, fn.name, "v3")
    assert publish(lambda_client, fn.name)["Version"] == "3"
    resp, payload = invoke(lambda_client, fn.name, Qualifier="3")
    assert resp["ExecutedVersion"] == "3"
    assert payload["version"] == "v3"
    assert_latest_runs(lambda_client, fn.name, "v3")


def test_delete_function_latest_or_alias_qualifier_is_rejected(lambda_client, create_function):
    fn = function_with_versions(lambda_client, create_function, 1)
    lambda_client.create_alias(FunctionName=fn.name, Name="live", FunctionVersion="1")

    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException) as e:
        lambda_client.delete_function(FunctionName=fn.name, Qualifier="$LATEST")
    assert h.http_status(e.value) == 400
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException) as e:
        lambda_client.delete_function(FunctionName=fn.name, Qualifier="live")
    assert h.http_status(e.value) == 400

    # Nothing was deleted.
    assert version_numbers(lambda_client, fn.name) == ["$LATEST", "1"]
    assert lambda_client.get_alias(FunctionName=fn.name, Name="live")["FunctionVersion"] == "1"
    assert_latest_runs(lambda_client, fn.name, "v1")


def test_delete_function_removes_versions_and_aliases(lambda_client, create_function):
    fn = function_with_versions(lambda_client, create_function, 2)
    lambda_client.create_alias(FunctionName=fn.name, Name="live", FunctionVersion="1")

    deleted = lambda_client.delete_function(FunctionName=fn.name)
    assert h.http_status(deleted) == 204

    not_found = lambda_client.exceptions.ResourceNotFoundException
    with pytest.raises(not_found):
        lambda_client.get_function(FunctionName=fn.name)
    for qualifier in ("1", "2", "live"):
        with pytest.raises(not_found):
            lambda_client.get_function_configuration(FunctionName=fn.name, Qualifier=qualifier)
        with pytest.raises(not_found):
            lambda_client.invoke(FunctionName=fn.name, Qualifier=qualifier, Payload=b"{}")
    with pytest.raises(not_found):
        lambda_client.get_alias(FunctionName=fn.name, Name="live")
    with pytest.raises(not_found):
        lambda_client.list_versions_by_function(FunctionName=fn.name)
    with pytest.raises(not_found):
        lambda_client.list_aliases(FunctionName=fn.name)

    # The name is free again; the new function inherits neither versions nor aliases.
    again = create_function(name=fn.name, zip_bytes=h.handler_zip("fresh"))
    wait_updated(lambda_client, again.name)
    assert version_numbers(lambda_client, fn.name) == ["$LATEST"]
    assert lambda_client.list_aliases(FunctionName=fn.name)["Aliases"] == []
    assert_latest_runs(lambda_client, fn.name, "fresh")
    version = publish(lambda_client, fn.name)["Version"]
    resp, payload = invoke(lambda_client, fn.name, Qualifier=version)
    assert resp["ExecutedVersion"] == version
    assert payload["version"] == "fresh"


def test_publish_flag_on_create_and_update_code(lambda_client, create_function):
    fn = create_function(Publish=True)
    assert fn.config["Version"] == "1"
    assert fn.config["FunctionArn"].endswith(f":function:{fn.name}:1")
    resp = lambda_client.update_function_code(FunctionName=fn.name, ZipFile=h.handler_zip("v2"), Publish=True)
    assert resp["Version"] == "2"
    versions = [v["Version"] for v in lambda_client.list_versions_by_function(FunctionName=fn.name)["Versions"]]
    assert versions == ["$LATEST", "1", "2"]
    out = lambda_client.invoke(FunctionName=fn.name, Qualifier="2", Payload=b"{}")
    assert h.read_payload(out)["version"] == "v2"
