"""Function management through boto3: create, read, list, update, delete, tags, account settings."""

import re

import botocore.exceptions
import pytest

import lambda_helpers as h

VALIDATION_CODES = {"InvalidParameterValueException", "ValidationException"}
UNSUPPORTED_PATTERN = r"(?i)not (yet |currently )?supported|unsupported"


def assert_not_created(client, name):
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_function(FunctionName=name)


# --- CreateFunction ---------------------------------------------------------------


def test_create_function_returns_configuration(lambda_client, create_function):
    name = h.unique_name("create")
    zip_bytes = h.handler_zip("create")
    created = create_function(
        name=name,
        zip_bytes=zip_bytes,
        Timeout=30,
        MemorySize=256,
        Description="made by boto3",
        Environment={"Variables": {"GREETING": "hello", "LEVEL": "debug"}},
        Tags={"team": "nimbus"},
    )
    cfg = created.config
    assert h.http_status(cfg) == 201
    assert cfg["FunctionName"] == name
    assert cfg["FunctionArn"] == f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    assert cfg["Runtime"] == "python3.12"
    assert cfg["Role"] == h.ROLE_ARN
    assert cfg["Handler"] == "app.handler"
    assert cfg["CodeSize"] == len(zip_bytes)
    assert cfg["CodeSha256"] == h.code_sha256(zip_bytes)
    assert cfg["Timeout"] == 30
    assert cfg["MemorySize"] == 256
    assert cfg["Description"] == "made by boto3"
    assert cfg["Version"] == "$LATEST"
    assert isinstance(cfg["RevisionId"], str) and cfg["RevisionId"]
    assert cfg["State"] == "Active"
    assert cfg["LastUpdateStatus"] == "Successful"
    assert cfg["Environment"]["Variables"] == {"GREETING": "hello", "LEVEL": "debug"}


def test_create_function_defaults(create_function):
    # Without Timeout, MemorySize or Description, Lambda uses 3 s, 128 MB and "".
    cfg = create_function().config
    assert cfg["Timeout"] == 3
    assert cfg["MemorySize"] == 128
    assert cfg["Description"] == ""


def test_create_duplicate_function_conflicts(lambda_client, create_function):
    created = create_function()
    with pytest.raises(lambda_client.exceptions.ResourceConflictException):
        create_function(name=created.name)


def test_create_function_with_invalid_role_is_rejected(lambda_client, create_function):
    name = h.unique_name("badrole")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        create_function(name=name, Role="not-a-role")
    assert h.error_code(e.value) in VALIDATION_CODES
    assert h.http_status(e.value) == 400
    assert_not_created(lambda_client, name)


@pytest.mark.parametrize(
    "setting",
    [{"MemorySize": 64}, {"Timeout": 901}, {"EphemeralStorage": {"Size": 511}}, {"EphemeralStorage": {"Size": 10241}}],
    ids=["memory-64", "timeout-901", "ephemeral-511", "ephemeral-10241"],
)
def test_create_function_out_of_range_is_rejected(server, lambda_client, setting):
    # botocore itself refuses MemorySize < 128 before sending anything; switch its
    # validation off so that the server's own range checks are what is tested.
    client = h.make_lambda_client(
        server.url, h.ADMIN_ACCESS_KEY_ID, h.ADMIN_SECRET_ACCESS_KEY, parameter_validation=False
    )
    name = h.unique_name("range")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.create_function(
            FunctionName=name,
            Runtime=h.RUNTIME,
            Role=h.ROLE_ARN,
            Handler=h.HANDLER,
            Code={"ZipFile": h.handler_zip()},
            **setting,
        )
    assert h.error_code(e.value) in VALIDATION_CODES
    assert h.http_status(e.value) == 400
    assert_not_created(lambda_client, name)


@pytest.mark.parametrize(
    "setting",
    [
        {"Layers": ["arn:aws:lambda:us-east-1:000000000000:layer:x:1"]},
    ],
    ids=["layers"],
)
def test_create_function_with_unsupported_setting_is_rejected(lambda_client, create_function, setting):
    name = h.unique_name("unsupported")
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException) as e:
        create_function(name=name, **setting)
    assert h.http_status(e.value) == 400
    assert re.search(UNSUPPORTED_PATTERN, h.error_message(e.value)), h.error_message(e.value)
    assert_not_created(lambda_client, name)


def test_create_image_function_is_rejected(lambda_client):
    name = h.unique_name("image")
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException) as e:
        lambda_client.create_function(
            FunctionName=name,
            Role=h.ROLE_ARN,
            PackageType="Image",
            Code={"ImageUri": "000000000000.dkr.ecr.us-east-1.amazonaws.com/fn:latest"},
        )
    assert h.http_status(e.value) == 400
    assert re.search(UNSUPPORTED_PATTERN, h.error_message(e.value)), h.error_message(e.value)
    assert_not_created(lambda_client, name)


# --- GetFunction / GetFunctionConfiguration -------------------------------------------


def test_get_function(lambda_client, create_function):
    created = create_function(
        Environment={"Variables": {"K": "v"}},
        Tags={"env": "test", "owner": "qa"},
    )
    got = lambda_client.get_function(FunctionName=created.name)
    cfg = got["Configuration"]
    assert cfg["FunctionName"] == created.name
    assert cfg["FunctionArn"] == h.function_arn(created.name)
    assert cfg["Runtime"] == "python3.12"
    assert cfg["Handler"] == "app.handler"
    assert cfg["CodeSha256"] == h.code_sha256(created.zip)
    assert cfg["CodeSize"] == len(created.zip)
    assert cfg["Version"] == "$LATEST"
    assert cfg["RevisionId"] == created.config["RevisionId"]
    assert cfg["State"] == "Active"
    assert cfg["Environment"]["Variables"] == {"K": "v"}
    assert isinstance(got["Code"]["Location"], str) and got["Code"]["Location"]
    assert got["Tags"] == {"env": "test", "owner": "qa"}


def test_get_function_configuration(lambda_client, create_function):
    created = create_function(MemorySize=512, Timeout=10, Description="cfg")
    cfg = lambda_client.get_function_configuration(FunctionName=created.name)
    assert h.http_status(cfg) == 200
    for key in ("FunctionName", "FunctionArn", "Runtime", "Handler", "CodeSha256", "CodeSize",
                "Version", "RevisionId", "Role"):
        assert cfg[key] == created.config[key], key
    assert cfg["MemorySize"] == 512
    assert cfg["Timeout"] == 10
    assert cfg["Description"] == "cfg"


def test_get_unknown_function_is_not_found(lambda_client):
    name = h.unique_name("missing")
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException) as e:
        lambda_client.get_function(FunctionName=name)
    assert h.http_status(e.value) == 404
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.get_function_configuration(FunctionName=name)


# --- ListFunctions ----------------------------------------------------------------------


def test_list_functions_paginates(lambda_client, create_function):
    prefix = h.unique_name("page")
    zip_bytes = h.handler_zip("page")
    created = {create_function(name=f"{prefix}-{i:02d}", zip_bytes=zip_bytes).name for i in range(56)}

    # One call never returns more than 50 functions, even when asked for more.
    first = lambda_client.list_functions()
    assert len(first["Functions"]) <= 50
    assert first.get("NextMarker")
    asked_more = lambda_client.list_functions(MaxItems=100)
    assert len(asked_more["Functions"]) <= 50
    assert asked_more.get("NextMarker")

    # The paginator visits every function exactly once.
    seen = []
    pages = 0
    for page in lambda_client.get_paginator("list_functions").paginate():
        pages += 1
        assert len(page["Functions"]) <= 50
        seen.extend(f["FunctionName"] for f in page["Functions"])
    assert pages >= 2
    assert len(seen) == len(set(seen)), "a function was listed twice"
    assert {n for n in seen if n.startswith(prefix)} == created
    listed = {f["FunctionName"]: f for f in first["Functions"]}
    for name in listed.keys() & created:
        assert listed[name]["FunctionArn"] == h.function_arn(name)
        assert listed[name]["CodeSha256"] == h.code_sha256(zip_bytes)


def test_list_functions_max_items(lambda_client, create_function):
    for _ in range(12):
        create_function()
    page1 = lambda_client.list_functions(MaxItems=10)
    assert len(page1["Functions"]) == 10
    assert page1.get("NextMarker")
    page2 = lambda_client.list_functions(MaxItems=10, Marker=page1["NextMarker"])
    assert 1 <= len(page2["Functions"]) <= 10
    names1 = {f["FunctionName"] for f in page1["Functions"]}
    names2 = {f["FunctionName"] for f in page2["Functions"]}
    assert not names1 & names2, "pages overlap"


def test_list_functions_markers_end_on_last_page(lambda_client, create_function):
    created = {create_function().name for _ in range(3)}
    total = count_functions(lambda_client)
    seen = []
    marker = None
    for _ in range(total + 1):  # at most one page per function, plus the first call
        page = lambda_client.list_functions(MaxItems=2, **({"Marker": marker} if marker else {}))
        assert len(page["Functions"]) <= 2
        seen.extend(f["FunctionName"] for f in page["Functions"])
        marker = page.get("NextMarker")
        if not marker:
            break
    assert not marker, "NextMarker never ran out"
    assert len(seen) == total
    assert created <= set(seen)


# --- UpdateFunctionCode ------------------------------------------------------------------


def test_update_function_code(lambda_client, create_function):
    created = create_function(zip_bytes=h.handler_zip("old"))
    before = h.read_payload(lambda_client.invoke(FunctionName=created.name, Payload=b"{}"))
    assert before["version"] == "old"

    new_zip = h.handler_zip("new")
    updated = lambda_client.update_function_code(FunctionName=created.name, ZipFile=new_zip)
    assert h.http_status(updated) == 200
    assert updated["CodeSha256"] == h.code_sha256(new_zip)
    assert updated["CodeSha256"] != created.config["CodeSha256"]
    assert updated["CodeSize"] == len(new_zip)
    assert updated["RevisionId"] != created.config["RevisionId"]

    # Clients wait for the update to finish before invoking (returns at once if it has).
    lambda_client.get_waiter("function_updated_v2").wait(
        FunctionName=created.name, WaiterConfig={"Delay": 1, "MaxAttempts": 30}
    )
    cfg = lambda_client.get_function_configuration(FunctionName=created.name)
    assert cfg["CodeSha256"] == h.code_sha256(new_zip)
    after = h.read_payload(lambda_client.invoke(FunctionName=created.name, Payload=b"{}"))
    assert after["version"] == "new"


# --- UpdateFunctionConfiguration -----------------------------------------------------------


def test_update_function_configuration(lambda_client, create_function):
    created = create_function(
        MemorySize=128,
        Description="before",
        Environment={"Variables": {"A": "1", "B": "2"}},
    )
    updated = lambda_client.update_function_configuration(
        FunctionName=created.name,
        MemorySize=256,
        Description="after",
        Environment={"Variables": {"C": "3"}},
    )
    assert h.http_status(updated) == 200
    assert updated["MemorySize"] == 256
    assert updated["Description"] == "after"
    # Environment.Variables replaces the whole map.
    assert updated["Environment"]["Variables"] == {"C": "3"}
    assert updated["RevisionId"] != created.config["RevisionId"]
    assert updated["CodeSha256"] == created.config["CodeSha256"]

    lambda_client.get_waiter("function_updated_v2").wait(
        FunctionName=created.name, WaiterConfig={"Delay": 1, "MaxAttempts": 30}
    )
    cfg = lambda_client.get_function_configuration(FunctionName=created.name)
    assert cfg["MemorySize"] == 256
    assert cfg["Description"] == "after"
    assert cfg["Environment"]["Variables"] == {"C": "3"}
    env = h.read_payload(
        lambda_client.invoke(FunctionName=created.name, Payload=b'{"action":"env","keys":["A","B","C"]}')
    )
    assert env == {"A": None, "B": None, "C": "3"}


def test_update_function_configuration_revision_id(lambda_client, create_function):
    created = create_function()
    stale = created.config["RevisionId"]
    current = lambda_client.update_function_configuration(
        FunctionName=created.name, Description="one", RevisionId=stale
    )["RevisionId"]
    assert current != stale

    with pytest.raises(lambda_client.exceptions.PreconditionFailedException) as e:
        lambda_client.update_function_configuration(
            FunctionName=created.name, Description="two", RevisionId=stale
        )
    assert h.http_status(e.value) == 412
    cfg = lambda_client.get_function_configuration(FunctionName=created.name)
    assert cfg["Description"] == "one"
    assert cfg["RevisionId"] == current


def test_update_unknown_function_is_not_found(lambda_client):
    name = h.unique_name("missing")
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.update_function_configuration(FunctionName=name, Description="x")
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.update_function_code(FunctionName=name, ZipFile=h.handler_zip())


# --- DeleteFunction ----------------------------------------------------------------------------


def test_delete_function(lambda_client, create_function):
    created = create_function()
    resp = lambda_client.delete_function(FunctionName=created.name)
    assert h.http_status(resp) == 204
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.get_function(FunctionName=created.name)
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.invoke(FunctionName=created.name, Payload=b"{}")
    names = {
        f["FunctionName"]
        for page in lambda_client.get_paginator("list_functions").paginate()
        for f in page["Functions"]
    }
    assert created.name not in names


def test_delete_unknown_function_is_not_found(lambda_client):
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.delete_function(FunctionName=h.unique_name("missing"))


def test_delete_function_latest_qualifier_is_rejected(lambda_client, create_function):
    created = create_function()
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException) as e:
        lambda_client.delete_function(FunctionName=created.name, Qualifier="$LATEST")
    assert h.http_status(e.value) == 400
    # The function is still there.
    assert lambda_client.get_function(FunctionName=created.name)["Configuration"]["FunctionName"] == created.name


# --- Tags ------------------------------------------------------------------------------------------


def test_tag_untag_list_tags(lambda_client, create_function):
    created = create_function(Tags={"team": "nimbus"})
    arn = created.config["FunctionArn"]
    assert lambda_client.list_tags(Resource=arn)["Tags"] == {"team": "nimbus"}

    lambda_client.tag_resource(Resource=arn, Tags={"env": "test", "team": "platform"})
    assert lambda_client.list_tags(Resource=arn)["Tags"] == {"team": "platform", "env": "test"}

    lambda_client.untag_resource(Resource=arn, TagKeys=["team"])
    assert lambda_client.list_tags(Resource=arn)["Tags"] == {"env": "test"}
    assert lambda_client.get_function(FunctionName=created.name)["Tags"] == {"env": "test"}


# --- GetAccountSettings ---------------------------------------------------------------------------


def count_functions(client):
    return sum(len(p["Functions"]) for p in client.get_paginator("list_functions").paginate())


def test_get_account_settings(lambda_client, create_function):
    create_function()
    settings = lambda_client.get_account_settings()
    assert settings["AccountLimit"]["ConcurrentExecutions"] == 1000
    assert settings["AccountUsage"]["FunctionCount"] == count_functions(lambda_client)

    before = settings["AccountUsage"]["FunctionCount"]
    extra = create_function()
    assert lambda_client.get_account_settings()["AccountUsage"]["FunctionCount"] == before + 1
    lambda_client.delete_function(FunctionName=extra.name)
    assert lambda_client.get_account_settings()["AccountUsage"]["FunctionCount"] == before


def test_ephemeral_storage_sizes_the_private_tmp(lambda_client, create_function):
    code = h.make_zip({"app.py": "import os\ndef handler(e, c):\n    st = os.statvfs('/tmp')\n    return st.f_blocks * st.f_frsize >> 20\n"})
    created = create_function(zip_bytes=code, Handler="app.handler", EphemeralStorage={"Size": 1024})
    cfg = lambda_client.get_function_configuration(FunctionName=created.name)
    assert cfg["EphemeralStorage"] == {"Size": 1024}
    out = lambda_client.invoke(FunctionName=created.name, Payload=b"{}")
    assert "FunctionError" not in out, h.read_payload(out)
    assert h.read_payload(out) == 1024
    lambda_client.update_function_configuration(FunctionName=created.name, EphemeralStorage={"Size": 2048})
    cfg = lambda_client.get_function_configuration(FunctionName=created.name)
    assert cfg["EphemeralStorage"] == {"Size": 2048}
    out = lambda_client.invoke(FunctionName=created.name, Payload=b"{}")
    assert h.read_payload(out) == 2048
