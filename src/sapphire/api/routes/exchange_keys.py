"""The /api/v1 routes of exchange-keys."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["exchange-keys"])
