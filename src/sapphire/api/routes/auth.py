"""The /api/v1 routes of auth."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["auth"])
