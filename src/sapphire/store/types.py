"""Column types: exact decimals on every backend.

SQLAlchemy's `Numeric` on SQLite goes through a float (SQLite has no decimal type), so
`Decimal("0.1") + Decimal("0.2")` or a 28-digit quantity would come back changed.
`ExactDecimal` stores `NUMERIC` (unconstrained precision, exact) on PostgreSQL and the
decimal's text (`str(Decimal)`, which round-trips exactly, trailing zeros included) on
every other backend. SQL arithmetic and ordering on these columns are therefore only
meaningful on PostgreSQL; the store filters and sorts on ids, statuses and timestamps only.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from sapphire.domain.instrument import to_decimal

#: Longest text a stored decimal may have on text backends (sign, 80 digits, point, exponent).
TEXT_LENGTH = 100


class ExactDecimal(TypeDecorator[Decimal]):
    """A Decimal column that round-trips exactly: NUMERIC on PostgreSQL, text elsewhere."""

    impl = sa.Numeric
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(sa.Numeric(asdecimal=True))
        return dialect.type_descriptor(sa.String(TEXT_LENGTH))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        number = to_decimal(value)
        if dialect.name == "postgresql":
            return number
        text = str(number)
        if len(text) > TEXT_LENGTH:
            raise ValueError(f"decimal {text} is longer than {TEXT_LENGTH} characters")
        return text

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if isinstance(value, Decimal):
            return value
        return Decimal(str(value))

    @property
    def python_type(self) -> type[Decimal]:
        return Decimal


def id_column_type() -> TypeEngine[int]:
    """An auto-increment surrogate key: BIGINT, INTEGER on SQLite (its rowid alias)."""
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")
