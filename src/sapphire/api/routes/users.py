"""The /api/v1 routes of users."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["users"])
