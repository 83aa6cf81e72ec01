"""Compliance: the hash-chained audit log."""
