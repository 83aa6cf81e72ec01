"""The thresholds of the surveillance rules: one frozen, typed section per rule, with
defaults, validation that names the bad value, and loading from a mapping or YAML.

```yaml
spoofing:
  size_ratio: 5        # only orders 5x the executions they helped
marking_close:
  close_times: ["00:00", "16:00"]
order_to_trade:
  enabled: false
```
Only what differs from the defaults needs writing; an unknown key is an error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

__all__ = [
    "LayeringConfig",
    "MarkingCloseConfig",
    "OrderToTradeConfig",
    "SpoofingConfig",
    "SurveillanceConfig",
    "WashConfig",
]

_NS = 1_000_000_000
_DAY_NS = 86_400 * _NS


def _invalid(where: str, value: object, expected: str) -> ValueError:
    return ValueError(f"{where}={value!r} is invalid: expected {expected}")


def _number(section: Any, name: str, *, low: float, high: float = math.inf,
            low_open: bool = False, high_open: bool = False) -> None:  # fmt: skip
    """The field `name` of `section` as a float within [low, high] (open ends as said)."""
    value = getattr(section, name)
    lo = f"> {low:g}" if low_open else f">= {low:g}"
    hi = "" if high == math.inf else (f" and < {high:g}" if high_open else f" and <= {high:g}")
    expected = f"a number {lo}{hi}"
    where = f"{section.SECTION}.{name}" if section.SECTION else name
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(where, value, expected)
    number = float(value)
    too_low = number <= low if low_open else number < low
    too_high = number >= high if high_open else number > high
    if not math.isfinite(number) or too_low or too_high:
        raise _invalid(where, value, expected)
    object.__setattr__(section, name, number)


def _integer(section: Any, name: str, low: int) -> None:
    value = getattr(section, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise _invalid(f"{section.SECTION}.{name}", value, f"a whole number >= {low}")


def _flag(section: Any, name: str) -> None:
    value = getattr(section, name)
    if not isinstance(value, bool):
        raise _invalid(f"{section.SECTION}.{name}", value, "true or false")


@dataclass(frozen=True, slots=True, kw_only=True)
class WashConfig:
    """Own buy and sell fills that could have matched each other: one resting (maker),
    one taking, opposite sides, within `window_s` seconds, at the same price (within
    `price_tolerance_bps`, for venues that report rounded or averaged prices), sizes at
    least `min_qty_match` of each other, by different strategies or runs (also within
    one strategy if `same_strategy`; fills that share the venue's trade id always
    count)."""

    SECTION: ClassVar[str] = "wash"
    enabled: bool = True
    window_s: float = 10.0
    price_tolerance_bps: float = 0.0
    min_qty_match: float = 0.9
    same_strategy: bool = False

    def __post_init__(self) -> None:
        _flag(self, "enabled")
        _number(self, "window_s", low=0)
        _number(self, "price_tolerance_bps", low=0)
        _number(self, "min_qty_match", low=0, high=1, low_open=True)
        _flag(self, "same_strategy")


@dataclass(frozen=True, slots=True, kw_only=True)
class SpoofingConfig:
    """A limit order at least `size_ratio` times the opposite-side executions made while
    it rested, within `near_touch_bps` of their price, canceled within `max_rest_s` of
    its acceptance with at most `max_fill_fraction` of it filled."""

    SECTION: ClassVar[str] = "spoofing"
    enabled: bool = True
    size_ratio: float = 3.0
    near_touch_bps: float = 10.0
    max_rest_s: float = 300.0
    max_fill_fraction: float = 0.1

    def __post_init__(self) -> None:
        _flag(self, "enabled")
        _number(self, "size_ratio", low=1)
        _number(self, "near_touch_bps", low=0)
        _number(self, "max_rest_s", low=0, low_open=True)
        _number(self, "max_fill_fraction", low=0, high=1, high_open=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class LayeringConfig:
    """At least `min_orders` limit orders on one side at as many price levels, resting
    when an opposite-side execution happened (the nearest within `near_touch_bps` of its
    price), then canceled within `cancel_within_s` of it with at most
    `max_fill_fraction` of each filled."""

    SECTION: ClassVar[str] = "layering"
    enabled: bool = True
    min_orders: int = 3
    cancel_within_s: float = 60.0
    near_touch_bps: float = 50.0
    max_fill_fraction: float = 0.1

    def __post_init__(self) -> None:
        _flag(self, "enabled")
        _integer(self, "min_orders", 2)
        _number(self, "cancel_within_s", low=0, low_open=True)
        _number(self, "near_touch_bps", low=0)
        _number(self, "max_fill_fraction", low=0, high=1, high_open=True)


def _close_minute(text: object, where: str) -> int:
    """ "HH:MM" (UTC) -> minutes after midnight."""
    parts = text.split(":") if isinstance(text, str) else []
    if len(parts) == 2 and all(p.isdigit() and len(p) == 2 for p in parts):
        hour, minute = int(parts[0]), int(parts[1])
        if hour < 24 and minute < 60:
            return hour * 60 + minute
    raise _invalid(where, text, 'a UTC time "HH:MM" (quoted in YAML)')


@dataclass(frozen=True, slots=True, kw_only=True)
class MarkingCloseConfig:
    """One strategy's orders in the `window_min` minutes before a close (`close_times`,
    "HH:MM" UTC, every day; a period runs from one close to the next): at least
    `min_orders` of them and at least `min_share` of its orders on the instrument in
    the period, with net executions the price moved at least `min_move_bps` with."""

    SECTION: ClassVar[str] = "marking_close"
    enabled: bool = True
    close_times: tuple[str, ...] = ("00:00",)
    window_min: float = 5.0
    min_orders: int = 3
    min_share: float = 0.5
    min_move_bps: float = 20.0

    def __post_init__(self) -> None:
        _flag(self, "enabled")
        raw = self.close_times
        if isinstance(raw, str) or not isinstance(raw, list | tuple) or not raw:
            raise _invalid(
                "marking_close.close_times", raw, 'a list of UTC times "HH:MM" (quoted in YAML)'
            )
        minutes = sorted({_close_minute(t, "marking_close.close_times") for t in raw})
        texts = tuple(f"{m // 60:02d}:{m % 60:02d}" for m in minutes)
        object.__setattr__(self, "close_times", texts)
        _number(self, "window_min", low=0, low_open=True)
        gaps = [b - a for a, b in zip(minutes, [*minutes[1:], minutes[0] + 1440], strict=True)]
        if self.window_min >= min(gaps):
            raise _invalid(
                "marking_close.window_min", self.window_min,
                f"fewer minutes than the shortest period between closes ({min(gaps)})",
            )  # fmt: skip
        _integer(self, "min_orders", 1)
        _number(self, "min_share", low=0, high=1, low_open=True)
        _number(self, "min_move_bps", low=0)

    def closes_after(self, ts_ns: int) -> int:
        """The first close strictly after `ts_ns` (int ns)."""
        day = ts_ns - ts_ns % _DAY_NS
        for offset in (0, _DAY_NS):
            for text in self.close_times:
                close = day + offset + (int(text[:2]) * 60 + int(text[3:])) * 60 * _NS
                if close > ts_ns:
                    return close
        raise AssertionError("unreachable: a close falls within every day")

    def close_before(self, close_ns: int) -> int:
        """The close before the close `close_ns` (the start of its period)."""
        previous = close_ns - _DAY_NS
        while (nxt := self.closes_after(previous)) < close_ns:
            previous = nxt
        return previous


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderToTradeConfig:
    """Per strategy and run, in windows of `window_min` minutes (aligned to the hour):
    order messages (new orders, amendments, cancel requests) per execution above
    `max_ratio`, once there are at least `min_messages` messages."""

    SECTION: ClassVar[str] = "order_to_trade"
    enabled: bool = True
    window_min: float = 60.0
    max_ratio: float = 20.0
    min_messages: int = 50

    def __post_init__(self) -> None:
        _flag(self, "enabled")
        _number(self, "window_min", low=0, low_open=True)
        _number(self, "max_ratio", low=0, low_open=True)
        _integer(self, "min_messages", 1)


_SECTIONS: dict[str, type[Any]] = {
    "wash": WashConfig,
    "spoofing": SpoofingConfig,
    "layering": LayeringConfig,
    "marking_close": MarkingCloseConfig,
    "order_to_trade": OrderToTradeConfig,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class SurveillanceConfig:
    """Every rule's thresholds, and `reorder_s`: how long (event time) the incremental
    detector waits for events that arrive out of time order before it evaluates a
    moment (alerts come at most this late)."""

    SECTION: ClassVar[str] = ""  # its own settings are named without a prefix
    wash: WashConfig = field(default_factory=WashConfig)
    spoofing: SpoofingConfig = field(default_factory=SpoofingConfig)
    layering: LayeringConfig = field(default_factory=LayeringConfig)
    marking_close: MarkingCloseConfig = field(default_factory=MarkingCloseConfig)
    order_to_trade: OrderToTradeConfig = field(default_factory=OrderToTradeConfig)
    reorder_s: float = 5.0

    def __post_init__(self) -> None:
        for name, cls in _SECTIONS.items():
            if not isinstance(getattr(self, name), cls):
                raise _invalid(name, getattr(self, name), f"a {cls.__name__}")
        _number(self, "reorder_s", low=0)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> SurveillanceConfig:
        """A config from plain values (`to_mapping`'s shape; missing keys keep their
        defaults); ValueError naming an unknown key or a bad value."""
        if not isinstance(mapping, Mapping):
            raise ValueError(f"a surveillance config must be a mapping, got {mapping!r}")
        _known(mapping, {*_SECTIONS, "reorder_s"}, "")
        values: dict[str, Any] = {}
        for name, section in mapping.items():
            if name == "reorder_s":
                values[name] = section
                continue
            if not isinstance(section, Mapping):
                raise _invalid(name, section, "a mapping of its settings")
            cls_ = _SECTIONS[name]
            _known(section, {f.name for f in fields(cls_)}, f"{name}.")
            values[name] = cls_(**section)
        return cls(**values)

    @classmethod
    def from_yaml(cls, text: str, source: str = "surveillance config") -> SurveillanceConfig:
        """A config from YAML text holding one mapping (empty text: the defaults)."""
        import yaml

        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"{source}: not valid YAML ({exc})") from None
        if loaded is None:
            return cls()
        if not isinstance(loaded, Mapping):
            raise ValueError(f"{source}: expected a mapping of rule settings, got {loaded!r}")
        try:
            return cls.from_mapping(loaded)
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from None

    @classmethod
    def load(cls, path: str | Path) -> SurveillanceConfig:
        """A config from the YAML file `path` (ValueError naming the file if unreadable)."""
        file = Path(path).expanduser()
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"{file}: cannot read it ({exc.strerror or exc})") from None
        return cls.from_yaml(text, str(file))

    def to_mapping(self) -> dict[str, Any]:
        """Plain values that `from_mapping` reads back."""
        out: dict[str, Any] = {}
        for name in _SECTIONS:
            section = getattr(self, name)
            out[name] = {
                f.name: list(v) if isinstance(v := getattr(section, f.name), tuple) else v
                for f in fields(section)
            }
        out["reorder_s"] = self.reorder_s
        return out

    @property
    def horizon_ns(self) -> int:
        """How far back any rule looks from the present (int ns)."""
        spans = [
            self.wash.window_s,
            self.spoofing.max_rest_s,
            self.layering.cancel_within_s,
            self.order_to_trade.window_min * 60,
        ]
        if self.marking_close.enabled:
            spans.append(86_400.0)
        return int(max(spans) * _NS) + _NS


def _known(mapping: Mapping[Any, Any], allowed: set[str], prefix: str) -> None:
    unknown = sorted(f"{prefix}{k}" for k in mapping if k not in allowed)
    if unknown:
        raise ValueError(
            f"unknown surveillance setting(s) {', '.join(unknown)}; "
            f"allowed{' in ' + prefix.rstrip('.') if prefix else ''}: {', '.join(sorted(allowed))}"
        )
