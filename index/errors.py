"""Exceptions raised by the index library."""

from __future__ import annotations


class FingerprintError(ValueError):
    """An image could not be fingerprinted (empty, degenerate, or of an unusable shape)."""


class IndexNotReady(RuntimeError):
    """The in-memory index has not been loaded or caught up with the store yet."""
