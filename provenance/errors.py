"""Domain errors that the edges render as RFC 9457 problem details or CLI messages."""

from __future__ import annotations

PROBLEM_BASE = "/problems/"


class ProvenanceError(Exception):
    """An error with an HTTP status, a short title and a stable slug for its problem type."""

    status = 500
    title = "Internal error"
    slug = "internal-error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    @property
    def type_uri(self) -> str:
        return PROBLEM_BASE + self.slug

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers the problem response carries besides its body."""
        return {}


class BadRequest(ProvenanceError):
    status, title, slug = 400, "Bad request", "bad-request"


class InvalidMetadata(ProvenanceError):
    status, title, slug = 400, "Invalid metadata", "invalid-metadata"


class InvalidImage(ProvenanceError):
    status, title, slug = 422, "Unreadable image", "invalid-image"


class UnsupportedMediaType(ProvenanceError):
    status, title, slug = 415, "Unsupported media type", "unsupported-media-type"


class PayloadTooLarge(ProvenanceError):
    status, title, slug = 413, "Payload too large", "payload-too-large"


class ImageTooLarge(ProvenanceError):
    status, title, slug = 413, "Image too large", "image-too-large"


class UriTooLong(ProvenanceError):
    status, title, slug = 414, "URI too long", "uri-too-long"


class Unauthorized(ProvenanceError):
    status, title, slug = 401, "Unauthorized", "unauthorized"


class Forbidden(ProvenanceError):
    status, title, slug = 403, "Forbidden", "forbidden"


class NotFound(ProvenanceError):
    status, title, slug = 404, "Not found", "not-found"


class TooManyRequests(ProvenanceError):
    """A client's verification allowance is used up for now."""

    status, title, slug = 429, "Too many requests", "too-many-requests"

    def __init__(self, detail: str, retry_after_seconds: int) -> None:
        super().__init__(detail)
        self.retry_after_seconds = retry_after_seconds

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_seconds)}


class IdempotencyKeyReused(ProvenanceError):
    """An Idempotency-Key sent again with a different request (draft-ietf-httpapi-idempotency-key-header)."""

    status, title, slug = 422, "Idempotency key reused", "idempotency-key-reused"


class SigningUnavailable(ProvenanceError):
    """The signing credentials are missing or the signer (KMS, TSA) failed."""

    status, title, slug = 503, "Signing unavailable", "signing-unavailable"


class IndexUnavailable(ProvenanceError):
    """The search index cannot answer yet: Milvus is unreachable or still loading its collections."""

    status, title, slug = 503, "Index unavailable", "index-unavailable"


ALL_ERRORS: tuple[type[ProvenanceError], ...] = (
    ProvenanceError,
    BadRequest,
    InvalidMetadata,
    InvalidImage,
    UnsupportedMediaType,
    PayloadTooLarge,
    ImageTooLarge,
    UriTooLong,
    Unauthorized,
    Forbidden,
    NotFound,
    TooManyRequests,
    IdempotencyKeyReused,
    SigningUnavailable,
    IndexUnavailable,
)
