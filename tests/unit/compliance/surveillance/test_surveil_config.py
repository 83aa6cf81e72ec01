"""The surveillance config: frozen typed sections with defaults, every bad value named,
unknown keys refused, YAML files read."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from sapphire.compliance.surveillance import (
    MarkingCloseConfig,
    SpoofingConfig,
    SurveillanceConfig,
    WashConfig,
)

NS = 1_000_000_000


def test_the_defaults_are_valid_and_round_trip() -> None:
    config = SurveillanceConfig()
    assert config.spoofing.size_ratio == 3.0 and config.marking_close.close_times == ("00:00",)
    assert SurveillanceConfig.from_mapping(config.to_mapping()) == config
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.wash.window_s = 1.0  # type: ignore[misc]


def test_a_mapping_overrides_only_what_it_names() -> None:
    config = SurveillanceConfig.from_mapping(
        {"spoofing": {"size_ratio": 5}, "marking_close": {"close_times": ["16:00", "08:00"]}}
    )
    assert config.spoofing == SpoofingConfig(size_ratio=5.0)
    assert config.marking_close.close_times == ("08:00", "16:00")  # sorted
    assert config.wash == WashConfig()


BAD: list[tuple[dict[str, Any], str]] = [
    ({"spoofing": {"size_ratio": 0.5}}, "spoofing.size_ratio=0.5 is invalid: expected a "
     "number >= 1"),
    ({"wash": {"window_s": -1}}, "wash.window_s=-1 is invalid: expected a number >= 0"),
    ({"wash": {"min_qty_match": 0}}, "wash.min_qty_match=0 is invalid: expected a number > 0 and "
     "<= 1"),
    ({"wash": {"same_strategy": "yes"}}, "wash.same_strategy='yes' is invalid: expected true or "
     "false"),
    ({"spoofing": {"max_fill_fraction": 1}}, "spoofing.max_fill_fraction=1 is invalid: expected "
     "a number >= 0 and < 1"),
    ({"layering": {"min_orders": 1}}, "layering.min_orders=1 is invalid: expected a whole number "
     ">= 2"),
    ({"layering": {"min_orders": 2.5}}, "layering.min_orders=2.5 is invalid"),
    ({"order_to_trade": {"max_ratio": "20"}}, "order_to_trade.max_ratio='20' is invalid: "
     "expected a number > 0"),
    ({"order_to_trade": {"window_min": float("nan")}}, "order_to_trade.window_min=nan is invalid"),
    ({"marking_close": {"close_times": ["25:00"]}}, "marking_close.close_times='25:00' is invalid"),
    ({"marking_close": {"close_times": [960]}}, "marking_close.close_times=960 is invalid: "
     'expected a UTC time "HH:MM" (quoted in YAML)'),
    ({"marking_close": {"close_times": "16:00"}}, "marking_close.close_times='16:00' is invalid: "
     "expected a list"),
    ({"marking_close": {"close_times": ["00:00", "00:03"]}}, "marking_close.window_min=5.0 is "
     "invalid: expected fewer minutes than the shortest period between closes (3)"),
    ({"reorder_s": -1}, "reorder_s=-1 is invalid: expected a number >= 0"),
    ({"spoofing": 3}, "spoofing=3 is invalid: expected a mapping of its settings"),
    ({"spoofing": {"sise_ratio": 3}}, "unknown surveillance setting(s) spoofing.sise_ratio; "
     "allowed in spoofing: enabled, max_fill_fraction, max_rest_s, near_touch_bps, size_ratio"),
    ({"wsh": {}}, "unknown surveillance setting(s) wsh; allowed: layering, marking_close"),
]  # fmt: skip


@pytest.mark.parametrize(("mapping", "message"), BAD)
def test_a_bad_value_is_named(mapping: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        SurveillanceConfig.from_mapping(mapping)
    assert str(info.value).startswith(message)


def test_a_yaml_file_is_read_and_its_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "surveil.yaml"
    path.write_text('spoofing:\n  near_touch_bps: 20\nmarking_close:\n  close_times: ["16:00"]\n')
    config = SurveillanceConfig.load(path)
    assert config.spoofing.near_touch_bps == 20.0
    assert config.marking_close == MarkingCloseConfig(close_times=("16:00",))
    path.write_text("")
    assert SurveillanceConfig.load(path) == SurveillanceConfig()
    path.write_text("marking_close:\n  close_times: [16:00]\n")  # YAML reads 16:00 as 960
    with pytest.raises(ValueError, match=r"surveil.yaml: marking_close.close_times=960 is invalid"):
        SurveillanceConfig.load(path)
    path.write_text("spoofing: [1, 2\n")
    with pytest.raises(ValueError, match=r"surveil.yaml: not valid YAML"):
        SurveillanceConfig.load(path)
    path.write_text("- 1\n")
    with pytest.raises(ValueError, match=r"expected a mapping of rule settings, got \[1\]"):
        SurveillanceConfig.load(path)
    with pytest.raises(ValueError, match=r"missing.yaml: cannot read it"):
        SurveillanceConfig.load(tmp_path / "missing.yaml")


def test_closes_and_their_periods() -> None:
    config = MarkingCloseConfig(close_times=("08:00", "16:00"))
    day = 1_641_168_000 * NS  # 2022-01-03 00:00 UTC
    hour = 3600 * NS
    assert config.closes_after(day) == day + 8 * hour
    assert config.closes_after(day + 8 * hour) == day + 16 * hour
    assert config.closes_after(day + 17 * hour) == day + 32 * hour
    assert config.close_before(day + 16 * hour) == day + 8 * hour
    assert config.close_before(day + 8 * hour) == day - 8 * hour
    assert SurveillanceConfig().horizon_ns == 86_401 * NS
