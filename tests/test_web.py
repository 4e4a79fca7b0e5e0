"""The verification page as served: markup, assets, and the security headers on every response."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

from flask.testing import FlaskClient

from provenance.web import CONTENT_SECURITY_POLICY

PACKAGE = Path(__file__).parents[1] / "provenance"


class PageParser(HTMLParser):
    """Collects what CSP and accessibility care about: scripts, inline styles, handlers, labels."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.inline_script = False
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_script = True


def parsed_page(client: FlaskClient) -> PageParser:
    response = client.get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    parser = PageParser()
    parser.feed(response.get_data(as_text=True))
    return parser


def test_page_says_what_it_does_and_that_nothing_is_stored(client: FlaskClient) -> None:
    text = client.get("/").get_data(as_text=True)
    assert "Did our AI model make this image?" in text
    assert "We do not store the images you check." in text
    assert 'data-verify-url="/v1/verify"' in text


def test_page_carries_a_strict_content_security_policy(client: FlaskClient) -> None:
    headers = client.get("/").headers
    policy = headers["Content-Security-Policy"]
    assert policy == CONTENT_SECURITY_POLICY
    assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"


def test_api_answers_and_errors_carry_the_headers_too(client: FlaskClient) -> None:
    for response in (client.get("/healthz"), client.post("/v1/verify"), client.get("/nowhere")):
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_page_has_no_inline_script_style_or_handlers(client: FlaskClient) -> None:
    page = parsed_page(client)
    assert not page.inline_script
    for tag, attrs in page.tags:
        assert "style" not in attrs, tag
        assert not [name for name in attrs if name.startswith("on")], tag
        if tag == "script":
            assert attrs["src"] and attrs["src"].startswith("/static/")


def test_every_asset_the_page_names_is_served_from_our_origin(client: FlaskClient) -> None:
    page = parsed_page(client)
    urls = [
        attrs.get("src") or attrs.get("href") for tag, attrs in page.tags if tag in {"script", "link", "img"}
    ]
    urls = [url for url in urls if url]
    assert urls
    for url in urls:
        assert url.startswith("/static/"), url
        with client.get(url) as response:  # a file response holds the file open until closed
            assert response.status_code == 200, url


def test_static_files_reach_no_other_origin() -> None:
    files = [*(PACKAGE / "static").iterdir(), *(PACKAGE / "templates").iterdir()]
    for path in files:
        text = path.read_text()
        # The SVG namespace is a name, not something fetched.
        fetched = re.findall(r"(?:https?:)?//[\w.-]+\.\w+", text.replace("http://www.w3.org/2000/svg", ""))
        assert not fetched, (path.name, fetched)


def test_every_control_has_a_label(client: FlaskClient) -> None:
    page = parsed_page(client)
    labelled = {attrs["for"] for tag, attrs in page.tags if tag == "label"}
    for tag, attrs in page.tags:
        if tag == "input":
            assert attrs["id"] in labelled
        if tag == "img":
            assert "alt" in attrs
