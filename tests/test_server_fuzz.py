"""The OpenAPI document of the real server fuzzed with schemathesis: no input may cause a server error.

Valid and invalid requests are generated from the document for each operation (hypothesis strategies
from schemathesis, without its pytest plugin); every answer must be documented, of its declared media
type and schema, and never a 5xx.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

from pipeline_support import make_tiny_restorer, test_options
from server_support import live_server
from vidrestore.pipeline.restorer_api import Restorer

OPERATIONS = [
    ("POST", "/v1/images:restore"),
    ("POST", "/v1/videos"),
    ("GET", "/v1/jobs/{job_id}"),
    ("GET", "/v1/jobs/{job_id}/result"),
    ("DELETE", "/v1/jobs/{job_id}"),
    ("GET", "/healthz"),
    ("GET", "/metrics"),
]
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory, detector_weights: Path):
    """The OpenAPI document as a real server on 127.0.0.1 serves it (small limits, tiny model)."""
    tiny = make_tiny_restorer(tmp_path_factory.mktemp("fuzz") / "tiny.pth")
    restorer = Restorer(test_options(tiny, detector_weights))
    with live_server(restorer, max_image_bytes=200_000, max_video_bytes=200_000, max_pixels=500_000,
                     upload_timeout_s=10.0) as (server, _):
        yield schemathesis.openapi.from_url(server.url + "/openapi.json")


def test_every_operation_is_fuzzed(api_schema) -> None:
    found = {(op.ok().method.upper(), op.ok().path) for op in api_schema.get_all_operations()}
    assert found == set(OPERATIONS)


@pytest.mark.parametrize("method,path", OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_no_input_causes_a_server_error(api_schema, method: str, path: str) -> None:
    operation = api_schema[path][method]
    strategy = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(GenerationMode.NEGATIVE)

    @given(case=strategy)
    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def call(case: schemathesis.Case) -> None:
        case.call_and_validate(checks=CHECKS)

    call()
