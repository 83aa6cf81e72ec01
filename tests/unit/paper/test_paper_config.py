"""Paper configuration: speeds, validation, round trip."""

from __future__ import annotations

import pytest

from sapphire.paper import PaperConfig, parse_speed


@pytest.mark.parametrize(("text", "factor"), [("1x", 1.0), ("100x", 100.0), ("2.5x", 2.5)])
def test_speeds(text: str, factor: float) -> None:
    assert parse_speed(text) == factor


def test_max_is_lockstep() -> None:
    assert parse_speed("max") is None
    assert parse_speed(" MAX ") is None


@pytest.mark.parametrize("bad", ["0x", "fast", "100", "-1x", ""])
def test_bad_speeds_name_the_value(bad: str) -> None:
    with pytest.raises(ValueError, match=f"speed={bad!r}"):
        parse_speed(bad)


@pytest.mark.parametrize(
    ("field", "value"),
    [("cash", 0.0), ("size", -1.0), ("size_mode", "kelly"), ("intrabar", "best"),
     ("taker_fee", -0.1), ("speed", "slow")],
)  # fmt: skip
def test_bad_config_values_are_refused_by_name(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        PaperConfig(**{field: value})  # type: ignore[arg-type]


def test_round_trip_and_unknown_keys() -> None:
    cfg = PaperConfig(params={"fast": "3"}, speed="max", cash=500.0)
    assert PaperConfig.from_mapping(cfg.to_mapping()) == cfg
    with pytest.raises(ValueError, match="unknown PaperConfig keys: bogus"):
        PaperConfig.from_mapping({**cfg.to_mapping(), "bogus": 1})


def test_instrument_follows_the_options() -> None:
    inst = PaperConfig(tick_size=0.5, lot_size=0.001, taker_fee=0.0004).instrument()
    assert str(inst.tick_size) == "0.5" and str(inst.lot_size) == "0.001"
    assert str(inst.taker_fee) == "0.0004"
    assert str(inst.id) == "BTC-PERP@PAPER"
