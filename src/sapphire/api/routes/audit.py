"""The /api/v1 routes of audit."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["audit"])
