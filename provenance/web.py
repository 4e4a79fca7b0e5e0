"""The verification page at / and the security headers every response carries."""

from __future__ import annotations

from flask import Blueprint, Response, render_template

from provenance.services import services

web = Blueprint("web", __name__)

# The page's script and styles are files under /static, so nothing inline and nothing from another
# origin may run. blob: shows the suspect the journalist chose without sending it anywhere else.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob: data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@web.get("/")
def page() -> str:
    """The page for people who have an image and no API key; it calls POST /v1/verify."""
    limit = services().settings.max_upload_bytes
    return render_template("index.html", max_upload_bytes=limit, max_upload_mb=f"{limit / 2**20:.3g}")


@web.after_app_request
def security_headers(response: Response) -> Response:
    """On every response, API ones too: JSON must never be sniffed as HTML or framed."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response
