"""ExactDecimal: decimals come back exactly from SQLite (where a plain Numeric does not)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from sapphire.store.types import ExactDecimal

CASES = [
    Decimal("0.1") + Decimal("0.2"),
    Decimal("1234567890.123456789012345678"),  # 28 significant digits
    Decimal("-0.0000000001234567890123456789"),
    Decimal("9999999999999999999999999999"),
    Decimal("0.30"),  # trailing zeros are kept
    Decimal("1E+30"),
    Decimal("0"),
    Decimal("-0.00"),
]


def _table(url: str, kind: sa.types.TypeEngine[Decimal]) -> tuple[sa.Engine, sa.Table]:
    engine = sa.create_engine(url)
    table = sa.Table("t", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("v", kind))  # fmt: skip
    table.metadata.create_all(engine)
    return engine, table


def _round_trip(engine: sa.Engine, table: sa.Table, values: list[object]) -> list[Decimal]:
    with engine.begin() as conn:
        conn.execute(table.delete())
        conn.execute(table.insert(), [{"id": i, "v": v} for i, v in enumerate(values)])
        return [row.v for row in conn.execute(sa.select(table).order_by(table.c.id))]


def test_plain_numeric_on_sqlite_is_lossy(tmp_path: Path) -> None:
    """Why ExactDecimal exists: SQLite NUMERIC goes through a float."""
    engine, table = _table(f"sqlite:///{tmp_path / 'n.db'}", sa.Numeric(asdecimal=True))
    back = _round_trip(engine, table, [CASES[1]])
    assert back[0] != CASES[1]


def test_exact_decimal_round_trips_on_sqlite(tmp_path: Path) -> None:
    engine, table = _table(f"sqlite:///{tmp_path / 'e.db'}", ExactDecimal())
    back = _round_trip(engine, table, CASES)
    assert [b.as_tuple() for b in back] == [c.as_tuple() for c in CASES]
    assert all(isinstance(b, Decimal) for b in back)


def test_inputs_are_converted_like_the_domain_does(tmp_path: Path) -> None:
    engine, table = _table(f"sqlite:///{tmp_path / 'c.db'}", ExactDecimal())
    back = _round_trip(engine, table, [0.1, 3, " 2.50 ", None])
    assert back[:3] == [Decimal("0.1"), Decimal(3), Decimal("2.50")] and back[3] is None
    assert str(back[0]) == "0.1"  # via str(float), never Decimal(float)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (Decimal("NaN"), "must be finite"),
        (float("inf"), "must be finite"),
        (True, "bool"),
        ("abc", "not a number"),
        (Decimal("1." + "1" * 120), "longer than 100 characters"),
    ],
)
def test_bad_values_are_refused(tmp_path: Path, value: object, message: str) -> None:
    engine, table = _table(f"sqlite:///{tmp_path / 'b.db'}", ExactDecimal())
    with pytest.raises(sa.exc.StatementError, match=message):
        _round_trip(engine, table, [value])


def test_the_column_is_numeric_on_postgresql_and_text_on_sqlite() -> None:
    from sqlalchemy.dialects import postgresql, sqlite

    column = sa.Column("v", ExactDecimal())
    assert column.type.compile(dialect=postgresql.dialect()) == "NUMERIC"
    assert column.type.compile(dialect=sqlite.dialect()) == "VARCHAR(100)"


@settings(max_examples=60, deadline=None)
@given(
    st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
        lambda d: len(str(d)) <= 100
    )
)
def test_any_finite_decimal_round_trips(value: Decimal) -> None:
    engine, table = _table("sqlite://", ExactDecimal())
    (back,) = _round_trip(engine, table, [value])
    assert back.as_tuple() == value.as_tuple()
