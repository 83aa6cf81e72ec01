"""The Strategy API: typed parameters, validation, registry lookup."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sapphire.strategy import Bars, Param, Signals, Strategy, builtin_strategies, get_strategy


class Breakout(Strategy):
    """A test strategy with one parameter of each kind."""

    window = Param(20, low=2, high=500)
    width = Param(0.5, low=0.0, high=5.0)
    short = Param(False)
    mode = Param("close", choices=["close", "high"])

    def signals(self, bars: Bars) -> Signals:
        return Signals(enter_long=bars.close > bars.open)


def test_name_defaults_to_snake_case_and_params_keep_order() -> None:
    assert Breakout.name == "breakout"
    assert list(Breakout.params()) == ["window", "width", "short", "mode"]
    assert Breakout().values == {"window": 20, "width": 0.5, "short": False, "mode": "close"}


@pytest.mark.parametrize(
    ("key", "raw", "expected"),
    [
        ("window", "30", 30),
        ("window", 30.0, 30),
        ("width", "1.25", 1.25),
        ("short", "true", True),
        ("short", "off", False),
        ("short", 1, True),
        ("mode", "high", "high"),
    ],
)
def test_values_are_coerced_from_strings_and_numbers(
    key: str, raw: object, expected: object
) -> None:
    value = Breakout(**{key: raw}).values[key]
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window": 1}, "Breakout.window: 1 is below the minimum 2"),
        ({"window": 501}, "above the maximum 500"),
        ({"window": 2.5}, "Breakout.window: 2.5 is not a valid int"),
        ({"window": "abc"}, "'abc' is not a valid int"),
        ({"width": float("nan")}, "is not a valid float"),
        ({"short": "maybe"}, "'maybe' is not a valid bool"),
        ({"mode": "low"}, "'low' is not one of ['close', 'high']"),
        ({"windw": 3}, "has no parameter 'windw'"),
    ],
)
def test_bad_values_name_the_parameter_and_the_value(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError) as err:
        Breakout(**kwargs)
    assert message in str(err.value)


def test_param_declaration_errors() -> None:
    with pytest.raises(ValueError, match="low 5 > high 1"):
        Param(3, low=5, high=1)
    with pytest.raises(ValueError, match="log=True needs low > 0"):
        Param(0.1, low=0.0, high=1.0, log=True)
    with pytest.raises(TypeError, match="must be int, float, bool or str"):
        Param([1, 2])


def test_describe_gives_the_search_space() -> None:
    described = {p.name: p.describe() for p in Breakout.params().values()}
    assert described["window"]["type"] == "int"
    assert (described["window"]["low"], described["window"]["high"]) == (2, 500)
    assert described["mode"]["type"] == "categorical"
    assert described["mode"]["choices"] == ["close", "high"]


def test_builtins_are_registered_and_check_their_parameters() -> None:
    names = set(builtin_strategies())
    assert names == {"sma_cross", "momentum", "mean_reversion", "volatility_breakout"}
    with pytest.raises(ValueError, match=r"fast \(30\) must be < slow \(20\)"):
        get_strategy("sma_cross")(fast=30, slow=20)


def test_get_strategy_by_class_module_and_file(tmp_path: Path) -> None:
    assert get_strategy(Breakout) is Breakout
    assert get_strategy("sapphire.strategy.builtins:SmaCross").name == "sma_cross"
    source = tmp_path / "mine.py"
    source.write_text(
        "from sapphire import Strategy, Param, Signals\n"
        "class Mine(Strategy):\n"
        "    n = Param(3, low=1, high=10)\n"
        "    def signals(self, bars):\n"
        "        return Signals(enter_long=bars.close > bars.open)\n"
    )
    cls = get_strategy(f"{source}:Mine")
    assert cls.name == "mine" and cls(n=4).n == 4


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nope", "unknown strategy 'nope'; built-ins: mean_reversion, ml, momentum"),
        ("sapphire.nothing_here:X", "cannot import strategy module"),
        ("sapphire.strategy:Nope", "has no attribute 'Nope'"),
        ("sapphire.strategy:Param", "is not a sapphire Strategy subclass"),
        ("/no/such/file.py:X", "strategy file not found"),
    ],
)
def test_get_strategy_errors_are_clear(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=None) as err:
        get_strategy(spec)
    assert message in str(err.value)


def test_builtins_produce_boolean_signals_without_lookahead(btc_df) -> None:  # type: ignore[no-untyped-def]
    from sapphire.backtest import bars_from_frame

    bars = bars_from_frame(btc_df)
    cut = 30_000
    head = bars_from_frame(btc_df.iloc[:cut].reset_index(drop=True))
    for name, cls in builtin_strategies().items():
        for short in (False, True):
            full = cls(short=short).signals(bars)
            part = cls(short=short).signals(head)
            for field in ("enter_long", "exit_long", "enter_short", "exit_short"):
                a, b = getattr(full, field), getattr(part, field)
                if a is None:
                    assert b is None
                    continue
                a, b = np.asarray(a), np.asarray(b)
                assert a.dtype == np.bool_, (name, field)
                # Truncating the future never changes a past signal.
                np.testing.assert_array_equal(a[:cut], b, err_msg=f"{name} {field}")
            if not short:
                assert full.enter_short is None
            assert np.asarray(full.enter_long).sum() > 0, name
