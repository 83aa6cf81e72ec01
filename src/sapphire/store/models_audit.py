"""The hash-chained audit log and the encrypted exchange keys (migration 0005)."""

from __future__ import annotations
