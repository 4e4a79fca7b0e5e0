"""Provenance: C2PA signing, generation records and reverse-search verification of AI images."""

__version__ = "0.1.0"
