"""Schemathesis against the native API: every operation of
crates/nimbus-api/openapi.json is called with generated requests (valid and
invalid ones) on a real `nimbus up`, and every check schemathesis has must
pass: no 5xx, status codes, content types, headers and bodies as the document
describes them, invalid input refused and valid input accepted.

The document describes the API as it should be, so a failure here is a bug in
a handler or in the document. One check is left out: `positive_data_acceptance`
(a schema-valid request must not get 400), because validity here also depends
on server state and rules a schema cannot carry: a code package that must have
been uploaded, server-issued page tokens, a definition that must be valid ASL,
a route key's grammar, an IAM policy document, `stream=true` with
`type=event`. Those refusals are 400s with a message, which the other checks
(documented status, error shape) still verify. The number of examples per operation is bounded
(NIMBUS_SCHEMATHESIS_EXAMPLES, default 6) so the module takes well under a
minute; `st run crates/nimbus-api/openapi.json --url … -H 'Authorization:
Bearer …' --checks all` is the long form (see fuzz/README.md).
"""

import os

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402

from schemathesis.specs.openapi.checks import positive_data_acceptance  # noqa: E402

from lambda_helpers import ADMIN_ACCESS_KEY_ID, ADMIN_SECRET_ACCESS_KEY, REPO_ROOT  # noqa: E402

OPENAPI = REPO_ROOT / "crates" / "nimbus-api" / "openapi.json"
EXAMPLES = int(os.environ.get("NIMBUS_SCHEMATHESIS_EXAMPLES", "6"))

# POST /v1/code takes the zip's bytes as they are.
schemathesis.serializer.alias("application/zip", "application/octet-stream")


def test_native_api_conforms_to_its_openapi_document(server):
    # The operations are walked here rather than with schemathesis' pytest
    # plugin, which does not support the pytest this suite pins.
    schema = schemathesis.openapi.from_path(OPENAPI)
    schema.config.update(
        base_url=server.url,
        headers={"Authorization": f"Bearer {ADMIN_ACCESS_KEY_ID}:{ADMIN_SECRET_ACCESS_KEY}"},
    )
    failures = []
    calls = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in schemathesis.GenerationMode:

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                derandomize=True,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def check(case):
                nonlocal calls
                calls += 1
                case.call_and_validate(excluded_checks=[positive_data_acceptance])

            try:
                check()
            except Unsatisfiable:
                pass  # nothing to make invalid (no parameters, or only free-form ones)
            except Exception as e:  # every operation is tried; all failures are reported
                failures.append(f"{operation.label} ({mode.value}): {e}")
    assert calls > 0
    assert not failures, "\n\n".join(failures)
