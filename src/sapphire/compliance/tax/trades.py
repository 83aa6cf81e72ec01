"""The trades a tax report starts from: spot `Trade`s and `DerivativeFill`s, read from a
run's fills in the store (`from_run`) or from exchange files (`sapphire.compliance.tax.files`).

A spot trade exchanges one asset for another: `quantity` of `base` bought or sold for
`quote_amount` of `quote`, with a `fee` paid in `fee_currency` (a negative fee is a
rebate). A fill of a perpetual or dated future is a `DerivativeFill`: it moves a
position, not a CGT asset, and its profit or loss is reported apart.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sapphire.compliance.tax.common import TaxInputError, check_asset, exact
from sapphire.domain.enums import ContractType, OrderSide
from sapphire.domain.identifiers import InstrumentId
from sapphire.domain.instrument import Instrument
from sapphire.store import FillRecord, Store

__all__ = ["DerivativeFill", "Trade", "check_unique", "from_run"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Trade:
    """One spot trade: `quantity` of `base` bought (BUY) or sold (SELL) for
    `quote_amount` of `quote`, at time `ts` (aware, UTC). `source` says where it came
    from (a run, a file and row) for error messages and the report."""

    trade_id: str
    ts: datetime
    base: str
    quote: str
    side: OrderSide
    quantity: Decimal
    quote_amount: Decimal
    fee: Decimal = Decimal(0)
    fee_currency: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        where = self.source or f"trade {self.trade_id}"
        if not isinstance(self.trade_id, str) or not self.trade_id.strip():
            raise TaxInputError(f"{where}: a trade needs an id")
        if not isinstance(self.ts, datetime) or self.ts.tzinfo is None:
            raise TaxInputError(f"{where}: the time must be timezone-aware, got {self.ts!r}")
        object.__setattr__(self, "ts", self.ts.astimezone(UTC))
        object.__setattr__(self, "base", check_asset(self.base, where))
        object.__setattr__(self, "quote", check_asset(self.quote, where))
        if self.base == self.quote:
            raise TaxInputError(f"{where}: base and quote are both {self.base}")
        object.__setattr__(self, "side", _side(self.side, where))
        for name in ("quantity", "quote_amount"):
            value = getattr(self, name)
            if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
                raise TaxInputError(f"{where}: {name} must be a Decimal > 0, got {value!r}")
        if not isinstance(self.fee, Decimal) or not self.fee.is_finite():
            raise TaxInputError(f"{where}: fee must be a finite Decimal, got {self.fee!r}")
        if self.fee != 0 and not self.fee_currency:
            raise TaxInputError(f"{where}: the fee {self.fee} needs its fee currency")
        if self.fee != 0 or self.fee_currency:
            object.__setattr__(self, "fee_currency", check_asset(self.fee_currency, where))

    @property
    def price(self) -> Decimal:
        """The price of one unit of base, in quote."""
        return self.quote_amount / self.quantity

    @property
    def where(self) -> str:
        """Where the trade came from, for messages."""
        return self.source or f"trade {self.trade_id}"


@dataclass(frozen=True, slots=True)
class DerivativeFill:
    """One fill of a linear perpetual or future: `quantity` contracts at `price`, worth
    ``quantity * price * multiplier`` of `settlement`; the fee is in `fee_currency`."""

    trade_id: str
    ts: datetime
    instrument: str
    settlement: str
    side: OrderSide
    quantity: Decimal
    price: Decimal
    multiplier: Decimal = Decimal(1)
    fee: Decimal = Decimal(0)
    fee_currency: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        where = self.source or f"fill {self.trade_id}"
        if not isinstance(self.ts, datetime) or self.ts.tzinfo is None:
            raise TaxInputError(f"{where}: the time must be timezone-aware, got {self.ts!r}")
        object.__setattr__(self, "ts", self.ts.astimezone(UTC))
        object.__setattr__(self, "settlement", check_asset(self.settlement, where))
        object.__setattr__(self, "side", _side(self.side, where))
        for name in ("quantity", "price", "multiplier"):
            value = getattr(self, name)
            if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
                raise TaxInputError(f"{where}: {name} must be a Decimal > 0, got {value!r}")
        if self.fee != 0 or self.fee_currency:
            object.__setattr__(self, "fee_currency", check_asset(self.fee_currency, where))


def _side(value: object, where: str) -> OrderSide:
    try:
        return OrderSide(str(value).upper())
    except ValueError:
        raise TaxInputError(f"{where}: side must be BUY or SELL, got {value!r}") from None


def check_unique(trades: Iterable[Trade | DerivativeFill]) -> None:
    """TaxInputError if two trades share an id (parcels and disposals are named by it)."""
    seen: dict[str, str] = {}
    for trade in trades:
        where = trade.source or trade.trade_id
        if trade.trade_id in seen:
            raise TaxInputError(
                f"trade id {trade.trade_id!r} appears twice ({seen[trade.trade_id]} and "
                f"{where}): each trade needs its own id"
            )
        seen[trade.trade_id] = where


def from_run(store: Store, run_id: str) -> tuple[list[Trade], list[DerivativeFill]]:
    """The spot trades and derivative fills of the run `run_id`, oldest first, with the
    ids ``<run_id>/<trade id>`` (two runs may reuse a venue's trade ids).

    Each fill's instrument is read from the store (`Store.instrument`); one that is not
    stored is taken from its ccxt symbol (``BTC/USDT`` spot, ``BTC/USDT:USDT`` a linear
    perpetual). ValueError for an unknown run; TaxInputError for an instrument whose
    base and quote cannot be told, or an inverse contract.
    """
    store.run(run_id)  # ValueError naming an unknown run
    instruments: dict[InstrumentId, _Spec] = {}
    trades: list[Trade] = []
    derivatives: list[DerivativeFill] = []
    for fill in store.fills(run_id):
        spec = instruments.get(fill.instrument_id)
        if spec is None:
            spec = instruments[fill.instrument_id] = _spec(store, fill.instrument_id)
        ts = _EPOCH + timedelta(microseconds=fill.ts_ns // 1000)
        source = f"run {run_id} fill {fill.trade_id} ({fill.instrument_id})"
        if spec.contract_type is ContractType.SPOT:
            trades.append(_spot_trade(fill, spec, ts, source))
        else:
            derivatives.append(
                DerivativeFill(
                    trade_id=f"{run_id}/{fill.trade_id}", ts=ts,
                    instrument=str(fill.instrument_id),
                    settlement=spec.settlement, side=fill.side, quantity=fill.last_qty,
                    price=fill.last_px, multiplier=spec.multiplier, fee=fill.fee,
                    fee_currency=fill.fee_currency, source=source,
                )
            )  # fmt: skip
    return trades, derivatives


@dataclass(frozen=True, slots=True)
class _Spec:
    base: str
    quote: str
    settlement: str
    contract_type: ContractType
    multiplier: Decimal


def _spec(store: Store, instrument_id: InstrumentId) -> _Spec:
    try:
        instrument: Instrument | None = store.instrument(instrument_id)
    except ValueError:
        instrument = None
    if instrument is not None:
        spec = _Spec(
            instrument.base, instrument.quote, instrument.settlement,
            instrument.contract_type, instrument.multiplier,
        )  # fmt: skip
    else:
        symbol = instrument_id.symbol
        pair, _, settle = symbol.partition(":")
        base, slash, quote = pair.partition("/")
        if not slash or not base or not quote:
            raise TaxInputError(
                f"instrument {instrument_id} is not in the store and its symbol does not "
                "say its base and quote (like BTC/USDT or BTC/USDT:USDT)"
            )
        kind = ContractType.PERPETUAL if settle else ContractType.SPOT
        spec = _Spec(base, quote, settle or quote, kind, Decimal(1))
    if spec.contract_type is not ContractType.SPOT and spec.settlement != spec.quote:
        raise TaxInputError(
            f"instrument {instrument_id} settles in {spec.settlement}, not its quote "
            f"{spec.quote}: inverse contracts are not supported"
        )
    return spec


def _spot_trade(fill: FillRecord, spec: _Spec, ts: datetime, source: str) -> Trade:
    with exact():
        amount = fill.last_qty * fill.last_px * spec.multiplier
    return Trade(
        trade_id=f"{fill.run_id}/{fill.trade_id}", ts=ts, base=spec.base, quote=spec.quote,
        side=fill.side,
        quantity=fill.last_qty, quote_amount=amount,
        fee=fill.fee, fee_currency=fill.fee_currency, source=source,
    )  # fmt: skip
