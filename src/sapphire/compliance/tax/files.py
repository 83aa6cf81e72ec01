"""The files a user gives a tax report: trade history (Sapphire's CSV or Bybit's spot
trade history export), opening holdings and a specific identification of parcels.

Every reader names the file and row of a bad value and says what was expected
(`TaxInputError`). The formats are documented in docs/tax.md, "Input files".
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal
from pathlib import Path

from sapphire.compliance.tax.common import (
    TaxInputError,
    check_asset,
    exact,
    parse_day,
    parse_decimal,
    parse_time,
)
from sapphire.compliance.tax.events import Acquisition
from sapphire.compliance.tax.trades import Trade, check_unique
from sapphire.domain.enums import OrderSide

__all__ = [
    "BYBIT_QUOTES",
    "HOLDING_COLUMNS",
    "IDENTIFICATION_COLUMNS",
    "TRADE_COLUMNS",
    "read_holdings",
    "read_identification",
    "read_trades",
]

#: Sapphire's trade file: required columns, then optional ones
TRADE_COLUMNS = ("time", "base", "quote", "side", "quantity", "price")
TRADE_OPTIONAL = ("fee", "fee_currency", "id", "value")
HOLDING_COLUMNS = ("id", "asset", "acquired", "quantity", "cost_base")
IDENTIFICATION_COLUMNS = ("disposal_id", "parcel_id", "quantity")

#: quote currencies a Bybit pair such as ``BTCUSDT`` may end with (longest tried first)
BYBIT_QUOTES = (
    "FDUSD", "USDT", "USDC", "USDE", "BUSD", "EUR", "BRL", "TRY", "PLN", "DAI", "BTC",
    "ETH", "MNT", "USD",
)  # fmt: skip
_BYBIT_REQUIRED = ("spot pairs", "direction", "filled price", "filled quantity", "fees")
_BYBIT_TIME = re.compile(r"^timestamp \(utc(?:([+-])(\d{1,2})(?::?(\d{2}))?)?\)$")
_BYBIT_FORMATS = ("%H:%M %Y-%m-%d", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%H:%M:%S %Y-%m-%d")

Row = dict[str, str]


def _rows(path: Path, is_header: Callable[[list[str]], bool]) -> Iterator[tuple[str, Row]]:
    """The data rows under the first line `is_header` accepts (lines above it, such as an
    export's "UID: ..." line, are skipped), as (``"file row N"``, lower-case header ->
    cell); blank lines are skipped."""
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise TaxInputError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        reader = csv.reader(handle)
        header: list[str] | None = None
        for line, cells in enumerate(reader, start=1):
            if header is None:
                names = [c.strip().lower() for c in cells]
                if is_header(names):
                    header = names
                continue
            if not any(c.strip() for c in cells):
                continue
            where = f"{path.name} row {line}"
            if len(cells) != len(header):
                raise TaxInputError(f"{where}: {len(cells)} cells, the header has {len(header)}")
            yield where, dict(zip(header, cells, strict=True))
        if header is None:
            raise TaxInputError(f"{path.name}: no header line found")


def read_trades(path: str | Path) -> list[Trade]:
    """The spot trades in `path`: Sapphire's format (header with the columns
    `TRADE_COLUMNS`) or a Bybit spot trade history export (``Spot Pairs,...``)."""
    file = Path(path)
    kind = _kind(file)
    trades = []
    with exact():
        if kind == "sapphire":
            for where, row in _rows(file, lambda h: all(c in h for c in TRADE_COLUMNS)):
                trades.append(_sapphire_trade(row, where))
        else:
            for where, row in _rows(file, _bybit_header):
                trades.append(_bybit_trade(row, where))
    check_unique(trades)
    return trades


def _kind(file: Path) -> str:
    try:
        head = file.read_text(encoding="utf-8-sig")[:4096].lower()
    except OSError as exc:
        raise TaxInputError(f"cannot read {file}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise TaxInputError(f"{file.name}: not a text (CSV) file") from None
    if "spot pairs" in head and "direction" in head:
        return "bybit"
    first = head.splitlines()[0] if head else ""
    names = [c.strip() for c in first.split(",")]
    missing = [c for c in TRADE_COLUMNS if c not in names]
    if missing:
        raise TaxInputError(
            f"{file.name}: not a trade file: Sapphire's format needs the columns "
            f"{','.join(TRADE_COLUMNS)} (and optionally {','.join(TRADE_OPTIONAL)}), missing "
            f"{', '.join(missing)}; a Bybit spot trade history export has 'Spot Pairs'"
        )
    return "sapphire"


def _sapphire_trade(row: Row, where: str) -> Trade:
    quantity = parse_decimal(row["quantity"], "quantity", where, positive=True)
    price = parse_decimal(row["price"], "price", where, positive=True)
    value = row.get("value", "").strip()
    fee_text = row.get("fee", "").strip()
    fee = parse_decimal(fee_text, "fee", where) if fee_text else Decimal(0)
    fee_ccy = row.get("fee_currency", "").strip()
    if fee != 0 and not fee_ccy:
        raise TaxInputError(f"{where}: the fee {fee_text} needs its fee_currency")
    return Trade(
        trade_id=row.get("id", "").strip() or where.replace(" ", "-"),
        ts=parse_time(row["time"], where),
        base=check_asset(row["base"], where),
        quote=check_asset(row["quote"], where),
        side=_side(row["side"], where),
        quantity=quantity,
        quote_amount=parse_decimal(value, "value", where, positive=True)
        if value
        else quantity * price,
        fee=fee,
        fee_currency=fee_ccy,
        source=where,
    )


def _side(text: str, where: str) -> OrderSide:
    try:
        return OrderSide(text.strip().upper())
    except ValueError:
        raise TaxInputError(f"{where}: side must be BUY or SELL, got {text!r}") from None


def _bybit_header(names: list[str]) -> bool:
    return all(c in names for c in _BYBIT_REQUIRED) and any(_BYBIT_TIME.match(n) for n in names)


def _offset(header: str) -> tzinfo:
    match = _BYBIT_TIME.match(header)
    assert match is not None
    sign, hours, minutes = match.groups()
    if sign is None:
        return UTC
    delta = timedelta(hours=int(hours), minutes=int(minutes or 0))
    return timezone(-delta if sign == "-" else delta)


def _amount(text: str, name: str, where: str) -> tuple[Decimal, str]:
    """A Bybit amount: a number, maybe followed by its currency (``"0.19 USDT"``)."""
    parts = text.split()
    if len(parts) not in (1, 2):
        raise TaxInputError(f"{where}: {name} {text!r} is not a number (with a currency)")
    unit = check_asset(parts[1], where) if len(parts) == 2 else ""
    return parse_decimal(parts[0], name, where), unit


def _pair(text: str, where: str) -> tuple[str, str]:
    pair = text.strip().upper()
    if "/" in pair:
        base, _, quote = pair.partition("/")
        return check_asset(base, where), check_asset(quote, where)
    for quote in sorted(BYBIT_QUOTES, key=len, reverse=True):
        if pair.endswith(quote) and len(pair) > len(quote):
            return check_asset(pair[: -len(quote)], where), quote
    raise TaxInputError(
        f"{where}: cannot tell the base and quote of the pair {text!r} (known quotes: "
        f"{', '.join(BYBIT_QUOTES)}): write it as BASE/QUOTE"
    )


def _bybit_time(text: str, where: str, tz: tzinfo) -> datetime:
    raw = text.strip()
    for form in _BYBIT_FORMATS:
        try:
            return datetime.strptime(raw, form).replace(tzinfo=tz).astimezone(UTC)
        except ValueError:
            continue
    raise TaxInputError(
        f"{where}: timestamp {text!r} is not like 14:35 2024-11-16 or 2024-11-16 14:35:00"
    )


def _bybit_trade(row: Row, where: str) -> Trade:
    base, quote = _pair(row["spot pairs"], where)
    side = _side(row["direction"], where)
    price, _ = _amount(row["filled price"], "Filled Price", where)
    quantity, _ = _amount(row["filled quantity"], "Filled Quantity", where)
    fee, fee_ccy = _amount(row["fees"], "Fees", where)
    if price <= 0 or quantity <= 0:
        raise TaxInputError(f"{where}: Filled Price and Filled Quantity must be > 0")
    # Bybit takes a spot fee from the asset received unless the export names another
    fee_ccy = fee_ccy or (base if side is OrderSide.BUY else quote)
    value_text = row.get("filled value", "").strip()
    value = _amount(value_text, "Filled Value", where)[0] if value_text else quantity * price
    if value <= 0:
        raise TaxInputError(f"{where}: Filled Value must be > 0, got {value_text}")
    stamp = next(k for k in row if _BYBIT_TIME.match(k))
    trade_id = row.get("transaction id", "").strip() or where.replace(" ", "-")
    return Trade(
        trade_id=trade_id, ts=_bybit_time(row[stamp], where, _offset(stamp)), base=base,
        quote=quote,
        side=side, quantity=quantity, quote_amount=value, fee=fee, fee_currency=fee_ccy,
        source=where,
    )  # fmt: skip


def read_holdings(path: str | Path, tz: tzinfo) -> list[Acquisition]:
    """Parcels held before the first trade (columns `HOLDING_COLUMNS`; `acquired` a time
    with its offset, or a date, taken as the start of that day in `tz`). The parcels a
    report writes as held at the end of a year are in this format."""
    file = Path(path)
    holdings = []
    seen: set[str] = set()
    for where, row in _rows(file, lambda h: all(c in h for c in HOLDING_COLUMNS)):
        parcel_id = row["id"].strip()
        if not parcel_id:
            raise TaxInputError(f"{where}: a holding needs an id")
        if parcel_id in seen:
            raise TaxInputError(f"{where}: a second holding with the id {parcel_id!r}")
        seen.add(parcel_id)
        text = row["acquired"].strip()
        if "T" in text or ":" in text:
            ts = parse_time(text, where)
        else:
            ts = datetime.combine(parse_day(text, where), time(), tz).astimezone(UTC)
        cost = parse_decimal(row["cost_base"], "cost_base", where)
        if cost < 0:
            raise TaxInputError(f"{where}: cost_base must be >= 0, got {cost}")
        holdings.append(
            Acquisition(
                parcel_id, check_asset(row["asset"], where), ts, ts.astimezone(tz).date(),
                parse_decimal(row["quantity"], "quantity", where, positive=True), cost, where,
                "opening holding",
            )
        )  # fmt: skip
    return holdings


def read_identification(path: str | Path) -> dict[str, list[tuple[str, Decimal]]]:
    """Which parcels each disposal uses (columns `IDENTIFICATION_COLUMNS`; a disposal
    may take from several parcels, one row each)."""
    file = Path(path)
    chosen: dict[str, list[tuple[str, Decimal]]] = {}
    for where, row in _rows(file, lambda h: all(c in h for c in IDENTIFICATION_COLUMNS)):
        disposal, parcel = row["disposal_id"].strip(), row["parcel_id"].strip()
        if not disposal or not parcel:
            raise TaxInputError(f"{where}: both disposal_id and parcel_id are needed")
        quantity = parse_decimal(row["quantity"], "quantity", where, positive=True)
        chosen.setdefault(disposal, []).append((parcel, quantity))
    return chosen
