"""Soft-binding resolution: binding values and verification results -> manifest ids with a score.

The C2PA Soft Binding Resolution API names manifests by id and ranks them by a 0-100
``similarityScore``. Both come from what the rest of the service already decides: the id is the
manifest label (``urn:c2pa:<generation id>``), and the score is 100 x the calibrated confidence
that /v1/verify reports, so a record is resolved exactly when /v1/verify calls it ``matched``
(score >= 90). Weaker, ``possible_match`` evidence is for a person to review and is never handed
to third-party tools that would show the manifest as the image's credentials.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from index import FingerprintStore, PdqHash, SearchIndex, Thresholds, pdq_confidence, verdict_for
from provenance.engines import Database
from provenance.errors import BadRequest, NotFound
from provenance.manifest import SOFT_BINDING_ALG
from provenance.records import RecordStore
from provenance.verify import VerificationResult

# The algorithm ids we resolve. Ours is the value of our c2pa.soft-binding assertion: the 32 bytes
# of the PDQ hash, which c2pa's Reader prints as standard base64, the form the API asks for.
FINGERPRINT_ALGORITHMS = (SOFT_BINDING_ALG,)
_MANIFEST_ID = re.compile(r"urn:c2pa:([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")


@dataclass(frozen=True)
class ManifestMatch:
    """A manifest the query resolves to, scored 0-100."""

    manifest_id: str
    similarity_score: int


def similarity_score(confidence: float) -> int:
    """The API's 0-100 score for a calibrated confidence 0..1."""
    return max(0, min(100, round(100 * confidence)))


def check_algorithm(alg: str) -> None:
    """Raises BadRequest unless ``alg`` is one we resolve."""
    if alg not in FINGERPRINT_ALGORITHMS:
        supported = ", ".join(FINGERPRINT_ALGORITHMS)
        raise BadRequest(f"unsupported soft binding algorithm {alg[:100]!r}; supported: {supported}")


def decode_binding(alg: str, value: str) -> PdqHash:
    """A base64 soft-binding value of one of our algorithms as a PDQ hash.

    Accepts standard or URL-safe base64 with or without padding, and a '+' that query-string
    decoding turned into a space, since clients build these URLs by hand.
    """
    check_algorithm(alg)
    # Spaces first: a leading "+" that arrived as a space must not be stripped away.
    text = value.replace(" ", "+").strip().replace("-", "+").replace("_", "/")
    try:
        bits = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"the soft binding value is not base64: {exc}") from exc
    try:
        # A binding value carries no quality; matches_by_binding uses the stored hash's.
        return PdqHash(bits, quality=100)
    except ValueError as exc:
        raise BadRequest(f"a {alg} value is a PDQ hash: {exc}") from exc


def matches_by_binding(
    connection: Database,
    index: SearchIndex,
    thresholds: Thresholds,
    query: PdqHash,
    max_results: int,
) -> tuple[ManifestMatch, ...]:
    """Records whose PDQ hash is within the calibrated match distance of ``query``, best first.

    The confidence is the one /v1/verify gives a PDQ hit at that distance, with the stored
    hash's quality in place of the query's (the value comes from that record's manifest).
    """
    store = FingerprintStore(connection)
    index.catch_up(store)
    records = RecordStore(connection)
    found = []
    for record_id, hit in index.search_pdq([query], thresholds.pdq_match, k=max_results).items():
        confidence = pdq_confidence(hit.distance, store.pdq_quality(record_id), thresholds)
        record = records.by_id(record_id) if verdict_for(confidence) == "matched" else None
        # Records older than the manifest_stores migration have nothing to serve at /manifests.
        if record is not None and records.has_manifest_store(record.id):
            found.append(ManifestMatch(record.manifest_label, similarity_score(confidence)))
    return _best(found, max_results)


def matches_by_content(
    connection: Database, result: VerificationResult, max_results: int
) -> tuple[ManifestMatch, ...]:
    """The records a /v1/verify result calls ``matched``, best first."""
    records = RecordStore(connection)
    found = [
        ManifestMatch(match.record.manifest_label, similarity_score(match.confidence))
        for match in result.matches
        if match.verdict == "matched" and records.has_manifest_store(match.record.id)
    ]
    return _best(found, max_results)


def merge(*groups: tuple[ManifestMatch, ...], max_results: int) -> tuple[ManifestMatch, ...]:
    """One list from several queries, each manifest once with its best score."""
    return _best([match for group in groups for match in group], max_results)


def _best(found: list[ManifestMatch], max_results: int) -> tuple[ManifestMatch, ...]:
    best: dict[str, int] = {}
    for match in found:
        best[match.manifest_id] = max(match.similarity_score, best.get(match.manifest_id, 0))
    ranked = sorted(best.items(), key=lambda item: (-item[1], item[0]))
    return tuple(ManifestMatch(manifest_id, score) for manifest_id, score in ranked[:max_results])


def manifest_store(connection: Database, manifest_id: str) -> bytes:
    """The stored manifest store labelled ``manifest_id``.

    Raises:
        BadRequest: the id is not one of our manifest labels' shape.
        NotFound: no such record, or one registered before manifest stores were kept.
    """
    shape = _MANIFEST_ID.fullmatch(manifest_id)
    if shape is None:
        raise BadRequest("a manifest id is 'urn:c2pa:<lower-case uuid>', as the matches endpoints return")
    records = RecordStore(connection)
    record = records.by_generation_id(shape.group(1))
    data = records.manifest_store(record.id) if record is not None else None
    if record is None or record.manifest_label != manifest_id or data is None:
        raise NotFound(f"no manifest {manifest_id} is stored here")
    return data
