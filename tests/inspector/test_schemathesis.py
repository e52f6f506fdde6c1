"""Property-based fuzzing of the live API from its own OpenAPI spec (schemathesis).

Every operation gets generated requests (valid and edge-case path, query and
header values) with a facility manager's token, sent to the real uvicorn server
backed by the real influxd and rules API. The check: no 5xx, ever — bad input
must be refused with a 4xx that says why. Examples are bounded per operation so
the run stays well under a minute.
"""

from __future__ import annotations

import time

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from tests.inspector.conftest import MANAGER_TOKEN, Stack, auth

pytestmark = pytest.mark.slow
EXAMPLES = 25
BUDGET_S = 90.0


def test_no_server_errors_anywhere(stack: Stack) -> None:
    schema = schemathesis.openapi.from_url(stack.url + "/openapi.json")
    headers = auth(MANAGER_TOKEN)
    t0 = time.monotonic()
    seen: list[str] = []
    failures: list[str] = []
    statuses: dict[int, int] = {}
    for result in schema.get_all_operations():
        op = result.ok()
        seen.append(op.label)
        strategy = op.as_strategy()

        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=strategy, data=st.data())
        def run(case: schemathesis.Case, data: st.DataObject) -> None:
            if time.monotonic() - t0 > BUDGET_S:
                return  # bounded in time as well as in count
            response = case.call(base_url=stack.url, headers=headers, timeout=60)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            case.validate_response(response, checks=[not_a_server_error])

        try:
            run()
        except Exception as exc:  # collect every operation's failure, then report all
            failures.append(f"{op.label}: {exc}"[:2000])
    assert len(seen) >= 9, seen
    assert not failures, "\n\n".join(failures)
    # the fuzzer really reached the endpoints: plenty of successes and of refusals
    assert statuses.get(200, 0) >= 20 and sum(statuses.values()) >= 60, statuses
    print("schemathesis statuses:", dict(sorted(statuses.items())))
