"""The node side: sizing specs that cross the process boundary, the crash hook."""

from __future__ import annotations

from decimal import Decimal

import pytest

from sapphire.engine import VectorAdapter
from sapphire.paper.client import maybe_crash, sizer_spec
from sapphire.paper.config import PaperConfig
from sapphire.paper.server import make_sizer
from sapphire.strategy.registry import get_strategy


def test_an_adapter_sizer_round_trips_as_data() -> None:
    strategy = get_strategy("sma_cross")(fast=3, slow=8)
    adapter = VectorAdapter(
        strategy, PaperConfig().instrument_id, size=0.25, size_mode="equity", lot=0.001
    )
    spec = sizer_spec(adapter._quantity)
    assert spec == {"mode": "equity", "size": "0.25", "lot": "0.001"}
    rebuilt = make_sizer(spec, PaperConfig())
    assert rebuilt is not None
    for px, equity in ((Decimal("101.5"), Decimal("10000")), (Decimal("3"), Decimal("7.5"))):
        assert rebuilt(px, equity) == adapter._quantity(px, equity)
    assert sizer_spec(None) is None


def test_other_sizers_are_refused() -> None:
    with pytest.raises(ValueError, match="sizing it can rebuild"):
        sizer_spec(lambda px, equity: Decimal(1))


def test_the_crash_hook_is_inert_unless_armed_for_that_point(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SAPPHIRE_PAPER_CRASH_POINT", raising=False)
    maybe_crash("after_send")  # not armed: returns
    monkeypatch.setenv("SAPPHIRE_PAPER_CRASH_POINT", "before_send")
    monkeypatch.setenv("SAPPHIRE_PAPER_CRASH_AT", "1")
    maybe_crash("after_send")  # armed for another point: returns
