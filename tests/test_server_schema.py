"""Schemathesis against the app's own OpenAPI spec (positive and negative cases): no 5xx, ever.

The app runs in-process on a real redis-server and the seed library; an admin key is sent so
every operation (including the admin one) is exercised past authentication. Each operation's
strategy is driven by hypothesis directly (schemathesis' lazy pytest fixtures do not run under
pytest 9), with a bounded number of examples per operation and mode.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from server.auth import create_api_key
from server.main import create_app
from test_server_harness import SECRET, make_settings

# Shared session fixtures (redis_server, seed_library): one instance for all server test modules.
pytest_plugins = ["test_server_harness"]

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

EXAMPLES_PER_OPERATION = 10


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory, redis_server, seed_library):
    tmp = tmp_path_factory.mktemp("schema")
    # A small queue bound, so generated submissions also reach the 429 path.
    app = create_app(make_settings(tmp, redis_server, seed_library, max_active_jobs=30, max_upload_bytes=200_000))
    key = create_api_key(app.state.services.store, SECRET, name="fuzz", admin=True)[1]
    return schemathesis.openapi.from_asgi("/openapi.json", app), key


def _fuzz_operation(op, mode: GenerationMode, key: str, seen: dict[str, set[int]]) -> None:
    """Run hypothesis' examples of `op` in `mode` against the app; record each answer's status under its label."""

    @given(case=op.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    def run(case) -> None:
        resp = case.call_and_validate(headers={"X-API-Key": key}, checks=[not_a_server_error])
        seen.setdefault(op.label, set()).add(resp.status_code)

    run()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors(fuzz_target, mode):
    schema, key = fuzz_target
    ops = [r.ok() for r in schema.get_all_operations()]
    assert len(ops) >= 15
    seen: dict[str, set[int]] = {}
    for op in ops:
        try:
            _fuzz_operation(op, mode, key, seen)
        except Unsatisfiable:
            # Nothing to break in this mode (e.g. no parameters to make invalid).
            assert mode == GenerationMode.NEGATIVE, op.label
            seen.setdefault(op.label, set())
    # The run reached every operation and got real answers, not only auth failures.
    assert len(seen) == len(ops)
    assert all(code < 500 for codes in seen.values() for code in codes)
    if mode == GenerationMode.POSITIVE:
        assert all(codes - {401} for codes in seen.values()), seen
        assert seen["POST /v1/edits"] & {202, 422}
