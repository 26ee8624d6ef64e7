"""Everything the Lambda API created survives a restart: functions, versions,
aliases with their routing, tags and reserved concurrency."""

import json

from conftest import NimbusServer

import lambda_helpers as h


def test_versions_and_aliases_survive_a_restart(tmp_path):
    data = tmp_path / "data"
    first = NimbusServer(data, tmp_path).start()
    try:
        c = h.make_lambda_client(first.url, h.ADMIN_ACCESS_KEY_ID, h.ADMIN_SECRET_ACCESS_KEY)
        name = h.unique_name("restart")
        c.create_function(
            FunctionName=name, Runtime=h.RUNTIME, Role=h.ROLE_ARN, Handler=h.HANDLER,
            Code={"ZipFile": h.handler_zip("v1")}, Tags={"team": "core"},
        )
        assert c.publish_version(FunctionName=name)["Version"] == "1"
        c.update_function_code(FunctionName=name, ZipFile=h.handler_zip("v2"))
        assert c.publish_version(FunctionName=name)["Version"] == "2"
        c.create_alias(FunctionName=name, Name="live", FunctionVersion="1",
                       RoutingConfig={"AdditionalVersionWeights": {"2": 0.25}})
        c.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=7)
    finally:
        first.stop()

    second = NimbusServer(data, tmp_path).start()
    try:
        c = h.make_lambda_client(second.url, h.ADMIN_ACCESS_KEY_ID, h.ADMIN_SECRET_ACCESS_KEY)
        versions = [v["Version"] for v in c.list_versions_by_function(FunctionName=name)["Versions"]]
        assert versions == ["$LATEST", "1", "2"]
        alias = c.get_alias(FunctionName=name, Name="live")
        assert alias["FunctionVersion"] == "1"
        assert alias["RoutingConfig"] == {"AdditionalVersionWeights": {"2": 0.25}}
        assert c.list_tags(Resource=h.function_arn(name))["Tags"] == {"team": "core"}
        assert c.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"] == 7
        r = c.invoke(FunctionName=name, Qualifier="1", Payload=b"{}")
        assert json.loads(r["Payload"].read())["version"] == "v1"
        r = c.invoke(FunctionName=name, Payload=b"{}")
        assert json.loads(r["Payload"].read())["version"] == "v2"
        r = c.invoke(FunctionName=name, Qualifier="live", Payload=b"{}")
        assert r["ExecutedVersion"] in ("1", "2")
        # Version numbers continue, never reused.
        c.update_function_code(FunctionName=name, ZipFile=h.handler_zip("v3"))
        assert c.publish_version(FunctionName=name)["Version"] == "3"
    finally:
        second.stop()
