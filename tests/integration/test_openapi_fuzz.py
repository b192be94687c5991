"""Schemathesis against the served OpenAPI spec: no generated request may get a 5xx."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pytest
from jsonschema import Draft202012Validator

from tests.conftest import ApiServer

pytestmark = pytest.mark.integration

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


def test_openapi_spec_lists_every_route_with_its_body(api: ApiServer) -> None:
    spec = httpx.get(f"{api.url}/openapi.json").json()
    paths = set(spec["paths"])
    assert {"/v1/events", "/v1/batch", "/v1/track", "/v1/page", "/v1/alias", "/healthz", "/readyz", "/metrics"} <= paths
    body = spec["paths"]["/v1/track"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["messageId", "event"]
    assert set(spec["paths"]["/v1/events"]["post"]["responses"]) >= {"202", "400", "401", "413", "429", "503"}


@pytest.mark.parametrize(
    ("path", "request_", "status"),
    [
        ("/v1/events", {"json": [{"uuid": "a", "timestamp": 0}, {"timestamp": 0}]}, "202"),  # one rejected
        ("/v1/events", {"content": b"{not json"}, "400"),
        ("/v1/events", {"json": {"uuid": "b", "timestamp": 0}, "headers": {"X-Write-Key": "unknown"}}, "401"),
        ("/v1/events", {"content": b"x", "headers": {"Content-Encoding": "br"}}, "415"),
        (
            "/v1/batch",
            {"json": {"batch": [{"type": "page", "messageId": "m1", "userId": "u"}, {"messageId": 3}]}},
            "200",
        ),
        ("/v1/batch", {"content": b" " * 600_000}, "413"),
        ("/v1/track", {"json": {"messageId": "m2", "userId": "u"}}, "400"),  # no event
    ],
)
def test_answers_are_what_the_spec_documents(api: ApiServer, path: str, request_: dict, status: str) -> None:
    spec = httpx.get(f"{api.url}/openapi.json").json()
    response = api.post(path, **request_)
    assert str(response.status_code) == status
    documented = spec["paths"][path]["post"]["responses"][status]["content"]["application/json"]["schema"]
    validator = Draft202012Validator({**documented, "components": spec["components"]})
    assert list(validator.iter_errors(response.json())) == []


def test_schemathesis_finds_no_server_error(api: ApiServer, tmp_path: Path) -> None:
    # Coverage phase (boundary values per schema keyword) plus 50 fuzzed cases per operation,
    # authenticated with the local source's key; seeded for reproducible failures (~1.5 min).
    done = subprocess.run(
        [
            str(SCHEMATHESIS),
            "run",
            f"{api.url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--header",
            f"X-Write-Key: {api.key}",
            "--max-examples",
            "50",
            "--seed",
            "20261130",
            "--generation-allow-x00",
            "true",
            "--request-timeout",
            "30",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,  # its cache (.schemathesis/) stays out of the repository
    )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
    requests = [orjson.loads(line) for line in api.log.read_text().splitlines() if line.startswith("{")]
    assert len(requests) > 500  # the server's own request log saw the run, and no 5xx in it
    assert [r for r in requests if r["status"] >= 500] == []
