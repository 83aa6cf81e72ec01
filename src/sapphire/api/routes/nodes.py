"""The /api/v1 routes of nodes."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["nodes"])
