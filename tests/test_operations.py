"""Operations: request ids, JSON access logs, /metrics, and the /v1 OpenAPI document, which every
response the tests below provoke (errors included) is held to with openapi-core."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openapi_core import Config, OpenAPI
from openapi_core.exceptions import OpenAPIError
from werkzeug.exceptions import HTTPException
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request, Response

from provenance.app import create_app
from provenance.config import Settings
from provenance.logs import JsonFormatter
from provenance.operations import OPENAPI_DOCUMENT
from tests import transforms
from tests.conftest import Signed, api_key, fixture_bytes
from tests.test_api import grille_and_panel
from tests.test_sbr import PROBLEM
from tests.test_sbr import check_contract as check_sbr_contract


def contract() -> OpenAPI:
    document: dict[str, Any] = json.loads(OPENAPI_DOCUMENT.read_text())
    document["servers"] = [{"url": "http://localhost/"}]
    return OpenAPI.from_dict(document, config=Config(extra_media_type_deserializers={PROBLEM: json.loads}))


CONTRACT = contract()
DOCUMENTED = set(json.loads(OPENAPI_DOCUMENT.read_text())["paths"])


def check_contract(request: Request, response: Response) -> None:
    """Raises unless the response conforms to the document and problems are RFC 9457."""
    check_sbr_contract(request, response, CONTRACT)


class ContractClient(FlaskClient):
    """Holds every response to a documented route to the document; counts what it checked."""

    checked: set[tuple[str, str, int]] = set()

    def open(self, *args: Any, **kwargs: Any) -> Any:
        response = super().open(*args, **kwargs)
        request = response.request
        try:
            rule, _ = self.application.url_map.bind("localhost").match(
                request.path, request.method, return_rule=True
            )
        except HTTPException:  # routing errors: about:blank, outside the document
            return response
        if rule.rule.replace("<", "{").replace(">", "}") in DOCUMENTED:
            check_contract(request, response)
            self.checked.add((request.method, rule.rule, response.status_code))
        return response


def contract_client(app: Flask) -> FlaskClient:
    app.test_client_class = ContractClient
    return app.test_client()


@pytest.fixture
def v1(app: Flask) -> FlaskClient:
    return contract_client(app)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def upload(data: bytes, name: str = "x.jpg") -> dict[str, Any]:
    return {"image": (io.BytesIO(data), name)}


def register(client: FlaskClient, key: str, data: bytes, metadata: str = '{"model": "m"}') -> Any:
    return client.post("/v1/generations", data={**upload(data), "metadata": metadata}, headers=bearer(key))


def test_the_document_is_served_and_is_openapi_3_1(client: FlaskClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    assert document["openapi"].startswith("3.1")
    OpenAPI.from_dict(document)


def test_every_v1_route_and_probe_is_documented(app: Flask) -> None:
    routes = {
        rule.rule.replace("<", "{").replace(">", "}")
        for rule in app.url_map.iter_rules()
        if not rule.rule.startswith(("/sbr/", "/static")) and rule.rule != "/"
    }
    assert routes == DOCUMENTED


def test_real_responses_of_every_route_hold_to_the_document(settings: Settings) -> None:
    """Successes and every problem each route answers, from one scenario."""
    app = create_app(dataclasses.replace(settings, max_upload_bytes=400_000, verify_per_minute=10))
    client = contract_client(app)
    ContractClient.checked = set()
    sign, read, verify = (api_key(settings, scope) for scope in ("sign", "read", "verify"))
    coffee = fixture_bytes("coffee.jpg")

    created = register(client, sign, coffee)
    assert created.status_code == 201
    generation = created.headers["X-Generation-Id"]
    assert register(client, sign, coffee, metadata="[]").status_code == 400
    assert register(client, "nope", coffee).status_code == 401
    assert register(client, read, coffee).status_code == 403
    assert register(client, sign, b"x" * 500_000).status_code == 413
    assert register(client, sign, b"plain text").status_code == 415
    assert register(client, sign, coffee[:3000]).status_code == 422
    retry = {**bearer(sign), "Idempotency-Key": '"once"'}
    first = client.post(
        "/v1/generations", data={**upload(coffee), "metadata": '{"model": "m"}'}, headers=retry
    )
    replayed = client.post(
        "/v1/generations", data={**upload(coffee), "metadata": '{"model": "m"}'}, headers=retry
    )
    assert (
        first.status_code == replayed.status_code == 201 and replayed.headers["Idempotent-Replayed"] == "true"
    )
    reused = client.post(
        "/v1/generations", data={**upload(coffee), "metadata": '{"model": "n"}'}, headers=retry
    )
    assert reused.get_json()["type"] == "/problems/idempotency-key-reused"

    assert client.get(f"/v1/generations/{generation}", headers=bearer(read)).status_code == 200
    assert client.get(f"/v1/generations/{generation}").status_code == 401
    assert client.get(f"/v1/generations/{generation}", headers=bearer(sign)).status_code == 403
    assert client.get("/v1/generations/missing", headers=bearer(read)).status_code == 404
    assert client.get(f"/v1/generations/{generation}/thumbnail", headers=bearer(read)).status_code == 200
    assert client.get(f"/v1/generations/{generation}/thumbnail").status_code == 401
    assert client.get(f"/v1/generations/{generation}/thumbnail", headers=bearer(sign)).status_code == 403
    assert client.get("/v1/generations/missing/thumbnail", headers=bearer(read)).status_code == 404

    cropped = transforms.crop(created.data, 0.6)[0]
    authentic = client.post("/v1/verify", data=upload(created.data)).get_json()
    assert authentic["verdict"] == "authentic"
    assert client.get(authentic["matches"][0]["record"]["thumbnail_url"]).status_code == 200
    assert client.get(authentic["matches"][0]["record"]["thumbnail_url"] + "x").status_code == 403
    assert client.post("/v1/verify", data=upload(cropped), headers=bearer(read)).status_code == 200
    assert client.post("/v1/verify", data={}).status_code == 400
    assert client.post("/v1/verify", data=upload(coffee), headers=bearer("nope")).status_code == 401
    assert client.post("/v1/verify", data=upload(b"x" * 500_000)).status_code == 413
    assert client.post("/v1/verify", data=upload(b"plain text")).status_code == 415
    assert client.post("/v1/verify", data=upload(coffee[:3000])).status_code == 422

    batch = client.post(
        "/v1/verify/batch",
        data={"image": [(io.BytesIO(cropped), "a.jpg"), (io.BytesIO(b"text"), "b.txt")]},
        headers=bearer(verify),
    )
    assert [sorted(r)[:2] for r in batch.get_json()["results"]] == [["c2pa", "deleted"], ["error", "file"]]
    assert client.post("/v1/verify/batch", data={}, headers=bearer(verify)).status_code == 400
    assert client.post("/v1/verify/batch", data=upload(coffee)).status_code == 401
    assert client.post("/v1/verify/batch", data=upload(coffee), headers=bearer(read)).status_code == 403

    grille, panel = grille_and_panel()
    register(client, sign, grille)
    possible = client.post("/v1/verify", data=upload(panel, "panel.png")).get_json()
    assert possible["verdict"] == "possible_match" and possible["matches"][0]["withheld"] is True
    admin = api_key(settings, "admin")
    deleted = client.delete(f"/v1/generations/{generation}", headers=bearer(admin))
    assert deleted.status_code == 200
    assert client.post("/v1/verify", data=upload(created.data)).get_json()["verdict"] == "deleted"
    assert client.delete(f"/v1/generations/{generation}", headers=bearer(admin)).status_code == 404
    assert client.delete(f"/v1/generations/{generation}").status_code == 401
    assert client.delete(f"/v1/generations/{generation}", headers=bearer(read)).status_code == 403

    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert client.get(path).status_code == 200
    while (limited := client.post("/v1/verify", data=upload(coffee))).status_code != 429:
        assert limited.status_code == 200
    assert ContractClient.checked >= {("POST", "/v1/verify", 429), ("POST", "/v1/verify/batch", 200)}


def problem(status: int) -> bytes:
    return json.dumps({"type": "t", "title": "t", "status": status, "detail": "d", "instance": "i"}).encode()


def broken(method: str, path: str, status: int, body: bytes, mimetype: str) -> tuple[Request, Response]:
    request = Request(EnvironBuilder(path=path, method=method).get_environ())
    return request, Response(body, status=status, mimetype=mimetype)


@pytest.mark.parametrize(
    "case",
    [
        broken("GET", "/healthz", 200, b'{"status": "fine"}', "application/json"),
        broken("GET", "/readyz", 200, b'{"status": "ready"}', "application/json"),
        broken("GET", "/v1/generations/x", 200, b'{"generation_id": "x"}', "application/json"),
        broken("GET", "/v1/generations/x", 404, b"not found", "text/plain"),
        broken("GET", "/v1/generations/x", 409, problem(409), PROBLEM),
        broken("GET", "/readyz", 401, problem(401), PROBLEM),
        broken("POST", "/v1/verify", 200, b'{"verdict": "maybe"}', "application/json"),
        broken("POST", "/v1/verify", 429, problem(429), PROBLEM),  # no Retry-After
    ],
    ids=[
        "health",
        "ready-fields",
        "record-fields",
        "plain-404",
        "undeclared-409",
        "401-on-public",
        "verdict",
        "429-without-retry-after",
    ],
)
def test_the_contract_check_rejects_broken_responses(case: tuple[Request, Response]) -> None:
    with pytest.raises((OpenAPIError, AssertionError)):
        check_contract(*case)


def test_a_valid_request_id_is_echoed_and_others_are_replaced(client: FlaskClient) -> None:
    given = client.get("/healthz", headers={"X-Request-Id": "lb-7f3a.2"})
    assert given.headers["X-Request-Id"] == "lb-7f3a.2"
    for bad in ("", "has space", "x" * 129, 'quote"'):
        answered = client.get("/healthz", headers={"X-Request-Id": bad}).headers["X-Request-Id"]
        assert answered != bad and len(answered) == 32
    first, second = (client.get("/nowhere").headers["X-Request-Id"] for _ in range(2))
    assert first != second


def test_each_request_logs_one_json_line_with_its_id(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="provenance.access")
    client.post("/v1/verify", data=upload(b"text"), headers={"X-Request-Id": "req-1"})
    (record,) = [r for r in caplog.records if r.name == "provenance.access"]
    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == "req-1"
    assert {k: line[k] for k in ("level", "logger", "method", "path", "status")} == {
        "level": "INFO",
        "logger": "provenance.access",
        "method": "POST",
        "path": "/v1/verify",
        "status": 415,
    }
    assert line["duration_ms"] >= 0 and line["time"].endswith("+00:00")


def metric(text: str, name: str) -> float:
    """The value of the sample line starting with ``name`` (labels included, in order)."""
    (value,) = [line.split(" ")[-1] for line in text.splitlines() if line.startswith(name + " ")]
    return float(value)


def test_metrics_count_requests_verdicts_stages_registrations_and_index_lag(
    client: FlaskClient, signed_image: Signed
) -> None:
    client.post("/v1/verify", data=upload(signed_image.data))
    client.post("/v1/verify", data=upload(fixture_bytes("hubble.jpg")))
    client.get("/nowhere")
    text = client.get("/metrics").get_data(as_text=True)
    assert metric(text, 'provenance_http_requests_total{method="POST",route="/v1/verify",status="200"}') == 2
    assert metric(text, 'provenance_http_requests_total{method="GET",route="unmatched",status="404"}') == 1
    assert metric(text, 'provenance_verdicts_total{verdict="authentic"}') == 1
    assert metric(text, 'provenance_verdicts_total{verdict="no_match"}') == 1
    assert metric(text, 'provenance_verify_stage_seconds_count{stage="decode"}') == 2
    assert metric(text, 'provenance_verify_stage_seconds_count{stage="pdq"}') == 1  # exact match: no search
    assert metric(text, "provenance_registrations_total") == 1
    assert metric(text, "provenance_store_last_record_id") == 1
    assert metric(text, "provenance_index_indexed_through") == 1


def test_a_made_up_method_is_counted_as_other_and_a_405_names_the_allowed_ones(client: FlaskClient) -> None:
    """Any upper-case token is a method to gunicorn: each one a new series, kept for good."""
    for method in ("ZZ0QQ", "ZZ1QQ", "PUT"):
        refused = client.open("/v1/verify", method=method)
        assert refused.status_code == 405 and "POST" in refused.headers["Allow"]
    text = client.get("/metrics").get_data(as_text=True)
    assert "ZZ0QQ" not in text and "ZZ1QQ" not in text
    assert metric(text, 'provenance_http_requests_total{method="other",route="unmatched",status="405"}') == 2
