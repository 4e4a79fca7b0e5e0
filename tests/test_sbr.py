"""The C2PA Soft Binding Resolution API: resolution, manifests, auth and errors, each response checked
against the API's OpenAPI document (openapi-core) by the client that made the request."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import c2pa
import pytest
from flask import Flask
from flask.testing import FlaskClient
from openapi_core import Config, OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIResponse
from openapi_core.exceptions import OpenAPIError
from openapi_core.testing import MockRequest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request, Response

from index import Thresholds, pdq_confidence
from index.fingerprints import pdq
from provenance import db
from provenance.app import create_app
from provenance.config import Settings
from provenance.manifest import SOFT_BINDING_ALG
from tests import transforms
from tests.conftest import FIXTURES, Signed, api_key, fixture_bytes

SPEC = FIXTURES / "c2pa_soft_binding_resolution_api_v1.0.0.openapi.json"
SHARED_SPEC = Path(__file__).parents[2] / "shared" / SPEC.name
PREFIX = "/sbr/v1"
PROBLEM = "application/problem+json"
PROBLEM_SCHEMA = {
    "type": "object",
    "required": ["type", "title", "status", "detail", "instance"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
}


def contract_document() -> dict[str, Any]:
    """The OpenAPI document, served under our prefix, with our error bodies described.

    The document lists error statuses with an empty content map (bodies undescribed) and leaves
    out the statuses its own ``security`` and request bodies imply; OpenAPI does not require a
    document to list every status. We describe exactly those gaps as RFC 9457 problem details and
    change nothing the document does describe, so every 200 is held to the document's schemas.
    """
    document: dict[str, Any] = json.loads(SPEC.read_text())
    document["servers"] = [{"url": f"http://localhost{PREFIX}"}]
    problem = {PROBLEM: {"schema": PROBLEM_SCHEMA}}
    for path_item in document["paths"].values():
        for operation in path_item.values():
            responses = operation["responses"]
            for status, response in responses.items():
                if int(status) >= 400:
                    assert response["content"] == {}, "only fill in what the document leaves open"
                    response["content"] = problem
            implied = ({"401", "403"} if "security" in operation else set()) | (
                {"400", "413", "415", "422"} if "requestBody" in operation else set()
            )
            for status in implied - set(responses):
                responses[status] = {"description": "problem details", "content": problem}
    return document


CONTRACT = OpenAPI.from_dict(
    contract_document(), config=Config(extra_media_type_deserializers={PROBLEM: json.loads})
)


def check_contract(request: Request, response: Response, contract: OpenAPI = CONTRACT) -> None:
    """Raises unless the response conforms to the document (openapi-core) and problems are RFC 9457."""
    # The operation is found from method and path alone; the request body was read by the view.
    operation = MockRequest(request.host_url, request.method, request.path, args=request.args)
    contract.validate_response(operation, WerkzeugOpenAPIResponse(response))
    if response.status_code >= 400:
        assert response.mimetype == PROBLEM
        assert json.loads(response.get_data())["status"] == response.status_code


class ContractClient(FlaskClient):
    """A test client that holds every /sbr/v1 response it receives to the contract."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        response = super().open(*args, **kwargs)
        if response.request.path.startswith(PREFIX):
            check_contract(response.request, response)
        return response


@pytest.fixture
def sbr(app: Flask) -> FlaskClient:
    app.test_client_class = ContractClient
    return app.test_client()


@pytest.fixture
def fetch_key(settings: Settings) -> str:
    return api_key(settings, "fetch:manifests")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def label(signed: Signed) -> str:
    return f"urn:c2pa:{signed.generation_id}"


def by_content(client: FlaskClient, key: str, image: bytes, mime: str = "image/jpeg", query: str = "") -> Any:
    return client.post(
        f"{PREFIX}/matches/byContent{query}", data=image, content_type=mime, headers=bearer(key)
    )


def soft_binding_value(signed: bytes) -> str:
    """The value of the soft-binding assertion, as a C2PA tool reads it from the manifest."""
    with c2pa.Reader("image/jpeg", io.BytesIO(signed)) as reader:
        manifest = reader.get_active_manifest()
    (binding,) = [a["data"] for a in manifest["assertions"] if a["label"] == "c2pa.soft-binding"]
    assert binding["alg"] == SOFT_BINDING_ALG
    value: str = binding["blocks"][0]["value"]
    return value


def c2pa_state(settings: Settings, asset: bytes, manifest_store: bytes) -> tuple[str, list[str], dict]:
    context = c2pa.Context.from_dict(
        {"trust": {"trust_anchors": settings.trust_anchors.read_text()}, "verify": {"ocsp_fetch": False}}
    )
    with c2pa.Reader(
        "image/jpeg", io.BytesIO(asset), manifest_data=manifest_store, context=context
    ) as reader:
        store = json.loads(reader.json())
        return reader.get_validation_state(), list(store["manifests"]), reader.get_active_manifest()


def test_supported_algorithms_need_no_key(sbr: FlaskClient) -> None:
    response = sbr.get(f"{PREFIX}/services/supportedAlgorithms")
    assert response.status_code == 200
    assert response.get_json()["fingerprints"] == [{"alg": SOFT_BINDING_ALG}]


def test_stripped_and_cropped_copies_resolve_to_their_manifest_as_verify_scores_them(
    sbr: FlaskClient, fetch_key: str, registered_set: dict[str, Signed]
) -> None:
    copies = {
        "coffee": transforms.strip(registered_set["coffee"].data),
        "chelsea": transforms.crop(registered_set["chelsea"].data, 0.5)[0],
    }
    for name, copy in copies.items():
        response = by_content(sbr, fetch_key, copy)
        assert response.status_code == 200
        matches = response.get_json()["matches"]
        assert [m["manifestId"] for m in matches] == [label(registered_set[name])]
        verified = sbr.post("/v1/verify", data={"image": (io.BytesIO(copy), "copy.jpg")}).get_json()
        assert verified["verdict"] == "matched"
        assert matches[0]["similarityScore"] == round(100 * verified["matches"][0]["confidence"])


def test_an_unrelated_image_resolves_to_nothing(
    sbr: FlaskClient, fetch_key: str, registered_set: dict[str, Signed]
) -> None:
    response = by_content(sbr, fetch_key, fixture_bytes("hubble.jpg"))
    assert response.get_json() == {"matches": []}


def test_a_copy_whose_manifest_c2pa_cannot_load_resolves_by_its_pixels(
    sbr: FlaskClient, fetch_key: str, signed_image: Signed
) -> None:
    response = by_content(sbr, fetch_key, transforms.break_manifest(signed_image.data))
    assert response.status_code == 200
    assert [m["manifestId"] for m in response.get_json()["matches"]] == [label(signed_image)]


def test_the_manifest_validates_as_trusted_with_the_signed_original(
    sbr: FlaskClient, fetch_key: str, signed_image: Signed, settings: Settings
) -> None:
    manifest_id = label(signed_image)
    response = sbr.get(f"{PREFIX}/manifests/{manifest_id}", headers=bearer(fetch_key))
    assert response.status_code == 200
    assert response.mimetype == "application/c2pa"
    state, manifests, active = c2pa_state(settings, signed_image.data, response.data)
    assert (state, manifests, active["label"]) == ("Trusted", [manifest_id], manifest_id)
    # It is the original's manifest: a stripped copy has other bytes, so the hard binding fails.
    assert c2pa_state(settings, transforms.strip(signed_image.data), response.data)[0] == "Invalid"
    encoded = manifest_id.replace(":", "%3A")
    for query in ("?returnActiveManifest=true", "?returnActiveManifest=false"):
        again = sbr.get(f"{PREFIX}/manifests/{encoded}{query}", headers=bearer(fetch_key))
        assert again.data == response.data


def test_by_binding_finds_the_record_from_its_soft_binding_value(
    sbr: FlaskClient, fetch_key: str, registered_set: dict[str, Signed]
) -> None:
    signed = registered_set["rocket"]
    value = soft_binding_value(signed.data)
    # Distance 0 scores what /v1/verify gives an exact PDQ hit: a hash alone is never certainty.
    score = round(100 * pdq_confidence(0, 100, Thresholds()))
    expected = [{"manifestId": label(signed), "similarityScore": score}]
    found = sbr.get(
        f"{PREFIX}/matches/byBinding",
        query_string={"alg": SOFT_BINDING_ALG, "value": value, "maxResults": 3},
        headers=bearer(fetch_key),
    )
    assert found.get_json()["matches"] == expected
    posted = sbr.post(
        f"{PREFIX}/matches/byBinding",
        json={"alg": SOFT_BINDING_ALG, "value": value},
        headers=bearer(fetch_key),
    )
    assert posted.get_json()["matches"] == expected
    # A client's own PDQ of a stripped copy, in URL-safe base64, finds it too.
    stripped = pdq(transforms.decode(transforms.strip(signed.data))).bits
    near = sbr.get(
        f"{PREFIX}/matches/byBinding",
        query_string={"alg": SOFT_BINDING_ALG, "value": base64.urlsafe_b64encode(stripped).decode()},
        headers=bearer(fetch_key),
    )
    assert [m["manifestId"] for m in near.get_json()["matches"]] == [label(signed)]
    unrelated = base64.b64encode(pdq(transforms.decode(fixture_bytes("hubble.jpg"))).bits).decode()
    none = sbr.get(
        f"{PREFIX}/matches/byBinding",
        query_string={"alg": SOFT_BINDING_ALG, "value": unrelated},
        headers=bearer(fetch_key),
    )
    assert none.get_json() == {"matches": []}


def test_a_binding_hint_adds_its_matches_to_the_content_search(
    sbr: FlaskClient, fetch_key: str, registered_set: dict[str, Signed]
) -> None:
    hint = soft_binding_value(registered_set["astronaut"].data).replace("+", "%2B").replace("/", "%2F")
    query = f"?alg={SOFT_BINDING_ALG}&maxResults=5&hintAlg={SOFT_BINDING_ALG}&hintValue={hint}"
    response = by_content(sbr, fetch_key, transforms.strip(registered_set["coffee"].data), query=query)
    assert {m["manifestId"] for m in response.get_json()["matches"]} == {
        label(registered_set["coffee"]),
        label(registered_set["astronaut"]),
    }


def test_records_without_a_stored_manifest_are_neither_listed_nor_served(
    sbr: FlaskClient, fetch_key: str, signed_image: Signed, settings: Settings
) -> None:
    with db.open_database(settings.database) as connection:
        connection.execute("DELETE FROM manifest_stores")  # as for records older than the migration
    assert by_content(sbr, fetch_key, signed_image.data).get_json() == {"matches": []}
    response = sbr.get(f"{PREFIX}/manifests/{label(signed_image)}", headers=bearer(fetch_key))
    assert response.status_code == 404


PROTECTED = [
    ("get", "/matches/byBinding", {"query_string": {"alg": SOFT_BINDING_ALG, "value": "AA=="}}),
    ("post", "/matches/byBinding", {"json": {"alg": SOFT_BINDING_ALG, "value": "AA=="}}),
    ("post", "/matches/byContent", {"data": b"x", "content_type": "image/jpeg"}),
    ("get", "/manifests/urn:c2pa:00000000-0000-0000-0000-000000000000", {}),
]


@pytest.mark.parametrize(("method", "path", "request_args"), PROTECTED, ids=lambda v: str(v)[:30])
def test_operations_need_a_key_with_scope_fetch_manifests(
    sbr: FlaskClient, settings: Settings, method: str, path: str, request_args: dict
) -> None:
    call = getattr(sbr, method)
    missing = call(PREFIX + path, **request_args)
    assert (missing.status_code, missing.get_json()["type"]) == (401, "/problems/unauthorized")
    assert missing.headers["WWW-Authenticate"] == 'Bearer scope="fetch:manifests"'
    wrong = call(PREFIX + path, headers=bearer(api_key(settings, "sign,read,verify")), **request_args)
    assert (wrong.status_code, wrong.get_json()["type"]) == (403, "/problems/forbidden")
    assert 'error="insufficient_scope"' in wrong.headers["WWW-Authenticate"]


BAD_REQUESTS = [
    ("get", "/matches/byBinding", {"query_string": {"alg": "org.example.other.1", "value": "AA=="}}),
    ("get", "/matches/byBinding", {"query_string": {"alg": SOFT_BINDING_ALG, "value": "not base64!"}}),
    ("get", "/matches/byBinding", {"query_string": {"alg": SOFT_BINDING_ALG, "value": "AAAA"}}),
    ("get", "/matches/byBinding", {"query_string": {"alg": SOFT_BINDING_ALG}}),
    (
        "get",
        "/matches/byBinding",
        {"query_string": {"alg": SOFT_BINDING_ALG, "value": "AA==", "maxResults": 0}},
    ),
    ("post", "/matches/byBinding", {"json": {"alg": SOFT_BINDING_ALG}}),
    ("post", "/matches/byBinding", {"data": b"{", "content_type": "application/json"}),
    ("post", "/matches/byContent?maxResults=many", {"data": b"x", "content_type": "image/png"}),
    ("post", "/matches/byContent?alg=org.example.other.1", {"data": b"x", "content_type": "image/png"}),
    ("post", "/matches/byContent?hintAlg=dev.provenance.pdq.1", {"data": b"x", "content_type": "image/png"}),
    (
        "post",
        "/matches/byContent?hintAlg=dev.provenance.pdq.1&hintValue=AAAA",
        {"data": b"x", "content_type": "image/png"},
    ),
    ("get", "/manifests/generation-1", {}),
    ("get", "/manifests/urn:c2pa:00000000-0000-0000-0000-000000000000?returnActiveManifest=yes", {}),
]


@pytest.mark.parametrize(("method", "path", "request_args"), BAD_REQUESTS, ids=lambda v: str(v)[:40])
def test_invalid_queries_are_400(
    sbr: FlaskClient, fetch_key: str, method: str, path: str, request_args: dict
) -> None:
    response = getattr(sbr, method)(PREFIX + path, headers=bearer(fetch_key), **request_args)
    assert (response.status_code, response.get_json()["type"]) == (400, "/problems/bad-request")


def test_an_unknown_manifest_is_404(sbr: FlaskClient, fetch_key: str) -> None:
    response = sbr.get(
        f"{PREFIX}/manifests/urn:c2pa:00000000-0000-0000-0000-000000000000", headers=bearer(fetch_key)
    )
    assert (response.status_code, response.get_json()["type"]) == (404, "/problems/not-found")


def test_oversized_bodies_are_413(settings: Settings) -> None:
    app = create_app(dataclasses.replace(settings, max_upload_bytes=10_000))
    app.test_client_class = ContractClient
    client = app.test_client()
    key = api_key(settings, "fetch:manifests")
    image = by_content(client, key, fixture_bytes("coffee.jpg"))
    assert (image.status_code, image.get_json()["type"]) == (413, "/problems/payload-too-large")
    value = {"alg": SOFT_BINDING_ALG, "value": "A" * 70_000}
    posted = client.post(f"{PREFIX}/matches/byBinding", json=value, headers=bearer(key))
    assert (posted.status_code, posted.get_json()["type"]) == (413, "/problems/payload-too-large")


def test_an_over_long_query_is_414(sbr: FlaskClient, fetch_key: str) -> None:
    response = sbr.get(
        f"{PREFIX}/matches/byBinding",
        query_string={"alg": SOFT_BINDING_ALG, "value": "A" * 3000},
        headers=bearer(fetch_key),
    )
    assert (response.status_code, response.get_json()["type"]) == (414, "/problems/uri-too-long")


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/matches/byContent", "text/plain"),
        ("/matches/byContent", "multipart/form-data; boundary=x"),
        ("/matches/byContent", None),
        ("/matches/byBinding", "text/plain"),
    ],
)
def test_unsupported_media_types_are_415(
    sbr: FlaskClient, fetch_key: str, path: str, content_type: str | None
) -> None:
    response = sbr.post(PREFIX + path, data=b"{}", content_type=content_type, headers=bearer(fetch_key))
    assert (response.status_code, response.get_json()["type"]) == (415, "/problems/unsupported-media-type")


def test_an_image_of_a_format_we_do_not_read_is_415_and_a_corrupt_one_422(
    sbr: FlaskClient, fetch_key: str
) -> None:
    assert by_content(sbr, fetch_key, b"not an image", "image/png").status_code == 415
    assert by_content(sbr, fetch_key, fixture_bytes("coffee.jpg")[:2000]).status_code == 422


def broken(method: str, path: str, status: int, body: bytes, mimetype: str) -> tuple[Request, Response]:
    request = Request(EnvironBuilder(path=PREFIX + path, method=method).get_environ())
    return request, Response(body, status=status, mimetype=mimetype)


@pytest.mark.parametrize(
    "case",
    [
        broken(
            "GET", "/matches/byBinding", 200, b'{"matches": [{"similarityScore": 90}]}', "application/json"
        ),
        broken(
            "GET",
            "/matches/byBinding",
            200,
            b'{"matches": [{"manifestId": "m", "similarityScore": 101}]}',
            "application/json",
        ),
        broken(
            "GET",
            "/services/supportedAlgorithms",
            200,
            b'{"fingerprints": [{"name": "x"}]}',
            "application/json",
        ),
        broken("GET", "/manifests/urn:c2pa:x", 200, b"{}", "application/json"),
        broken(
            "GET",
            "/matches/byBinding",
            409,
            b'{"type": "t", "title": "t", "status": 409, "detail": "d", "instance": "i"}',
            PROBLEM,
        ),
        broken("GET", "/manifests/urn:c2pa:x", 404, b'{"title": "missing type"}', PROBLEM),
        broken("GET", "/manifests/urn:c2pa:x", 404, b"not found", "text/plain"),
        broken(
            "GET",
            "/services/supportedAlgorithms",
            401,
            b'{"type": "t", "title": "t", "status": 401, "detail": "d", "instance": "i"}',
            PROBLEM,
        ),
    ],
    ids=[
        "no-manifestId",
        "score-101",
        "alg-missing",
        "manifest-as-json",
        "undeclared-409",
        "problem-shape",
        "plain-404",
        "401-on-public",
    ],
)
def test_the_contract_check_rejects_broken_responses(case: tuple[Request, Response]) -> None:
    with pytest.raises((OpenAPIError, AssertionError)):
        check_contract(*case)


def test_the_vendored_document_is_the_shared_one() -> None:
    if not SHARED_SPEC.exists():
        pytest.skip("no shared/ folder beside this checkout")
    assert json.loads(SHARED_SPEC.read_text()) == json.loads(SPEC.read_text())


def test_the_client_holds_real_responses_to_the_contract(
    sbr: FlaskClient, fetch_key: str, signed_image: Signed, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("provenance.resolution.similarity_score", lambda confidence: 150)
    with pytest.raises(OpenAPIError, match="greater than the maximum"):
        by_content(sbr, fetch_key, signed_image.data)


def test_binding_lookups_count_against_the_keys_allowance(settings: Settings, signed_image: Signed) -> None:
    """A hash computed after each edit would otherwise be an unlimited oracle for editing a picture
    until it no longer matches."""
    limited = create_app(dataclasses.replace(settings, verify_per_minute_with_key=3)).test_client()
    headers = bearer(api_key(settings, "fetch:manifests"))
    query = {"alg": SOFT_BINDING_ALG, "value": soft_binding_value(signed_image.data)}
    answers = [
        limited.get(f"{PREFIX}/matches/byBinding", query_string=query, headers=headers).status_code,
        limited.post(f"{PREFIX}/matches/byBinding", json=query, headers=headers).status_code,
        limited.get(f"{PREFIX}/matches/byBinding", query_string=query, headers=headers).status_code,
    ]
    assert answers == [200, 200, 200]
    refused = limited.post(f"{PREFIX}/matches/byBinding", json=query, headers=headers)
    assert refused.status_code == 429 and refused.headers["Retry-After"]
