"""`sapphire exchange serve`: the local Bybit-compatible exchange as a server for ccxt,
ccxt.pro or any Bybit v5 client (`sapphire.venues.exchange`)."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from sapphire.cli.common import err_console, fail

__all__ = ["ccxt_snippet", "exchange_app"]

exchange_app = typer.Typer(
    help="The local Bybit-compatible exchange (for rehearsing live trading).",
    no_args_is_help=True,
)


def ccxt_snippet(url: str, key: str, secret: str) -> str:
    """Python that points an unmodified ccxt (or ccxt.pro) Bybit client at `url`."""
    ws = url.replace("http://", "ws://", 1)
    return f'''import ccxt  # or: import ccxt.pro as ccxt (the WebSocket streams too)

url, ws = "{url}", "{ws}"
api = {{
    **dict.fromkeys(("public", "private", "spot", "futures", "v2"), url),
    "ws": {{
        "public": {{k: f"{{ws}}/v5/public/{{k}}" for k in ("spot", "linear", "inverse", "option")}},
        "private": {{
            "contract": f"{{ws}}/v5/private",
            "spot": {{"unified": f"{{ws}}/v5/private", "nonUnified": f"{{ws}}/v5/private"}},
            "usdc": f"{{ws}}/v5/private",
            "trade": f"{{ws}}/v5/trade",
        }},
    }},
}}
exchange = ccxt.bybit({{
    "apiKey": "{key}",
    "secret": "{secret}",
    "urls": {{"api": api, "test": api, "demotrading": api}},
    "options": {{
        "fetchMarkets": {{"types": ["spot", "linear"]}},
        "enableUnifiedAccount": True,
        "enableUnifiedMargin": False,
        "fetchOrder": {{"acknowledged": True}},
    }},
    "has": {{"fetchCurrencies": False}},
}})'''


def _symbol_of(data: str, symbol: str | None) -> str:
    """The listed symbol: `symbol`, else derived from a catalog symbol (``ETH/USDT:USDT``
    -> ``ETHUSDT``) or BTCUSDT for the sample; a file needs `symbol`."""
    from sapphire.data.load import SAMPLE, is_file_source

    if symbol:
        return symbol.upper()
    if data == SAMPLE:
        return "BTCUSDT"
    if is_file_source(data):
        raise ValueError(f"--data {data!r} is a file: name its market with --symbol, e.g. ETHUSDT")
    base, _, rest = data.partition("/")
    quote = rest.split(":")[0]
    if not base or quote != "USDT":
        raise ValueError(
            f"--data {data!r}: only USDT markets are listed; name one with --symbol BASEUSDT"
        )
    return f"{base}{quote}".upper()


def _replay_speed(speed: str) -> float:
    from sapphire.paper.config import parse_speed

    factor = parse_speed(speed)
    if factor is None:
        raise ValueError(f"--speed {speed!r}: the exchange replays in real time, e.g. 1x or 60x")
    return factor


@exchange_app.command("serve")
def serve_command(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: any free port).")] = 8787,
    api_key: Annotated[
        str | None, typer.Option(help="API key (default: generated, or the saved one).")
    ] = None,
    api_secret: Annotated[str | None, typer.Option(help="API secret (with --api-key).")] = None,
    data: Annotated[
        str, typer.Option(help="Bars replayed: 'sample', a CSV/Parquet file or a catalog symbol.")
    ] = "sample",
    symbol: Annotated[
        str | None, typer.Option(help="Listed symbol, e.g. ETHUSDT (default: from --data).")
    ] = None,
    speed: Annotated[
        str, typer.Option(help="Replay speed: 1x real time, 60x (one 1m bar a second)...")
    ] = "60x",
    balance: Annotated[str, typer.Option(help="USDT in the account at the start.")] = "100000",
    leverage: Annotated[int, typer.Option(help="Leverage of linear positions, 1..100.")] = 10,
    history: Annotated[int, typer.Option(help="Bars already replayed at the start.")] = 1440,
    faults: Annotated[
        str,
        typer.Option(help="Faults to inject, e.g. 'latency=50ms±20,http5xx=0.02' (docs/live.md)."),
    ] = "",
    fault_seed: Annotated[int, typer.Option(help="Seed of the fault sequence.")] = 0,
    name: Annotated[
        str, typer.Option(help="State kept in $SAPPHIRE_HOME/exchange/NAME across restarts.")
    ] = "default",
    fresh: Annotated[bool, typer.Option(help="Discard NAME's saved state first.")] = False,
    bars: Annotated[
        int | None, typer.Option(help="Stop after replaying this many bars (resume later).")
    ] = None,
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (resume later).")
    ] = None,
) -> None:
    """Serve the local Bybit exchange (REST and WebSocket) until Ctrl-C."""
    from decimal import Decimal, InvalidOperation

    from sapphire.config import home_subdir
    from sapphire.data import load_ohlcv
    from sapphire.venues.exchange import (
        MUTATIONS,
        BackgroundServer,
        Credentials,
        ExchangeState,
        FaultPlan,
        Journal,
        create_app,
        markets_for,
    )

    journal: Journal | None = None
    try:
        if (api_key is None) != (api_secret is None):
            raise ValueError("--api-key and --api-secret go together: give both or neither")
        if not 0 <= port <= 65535:
            raise ValueError(f"--port {port} is invalid: expected 0..65535")
        for option, value in (("--bars", bars), ("--duration", duration)):
            if value is not None and not value > 0:
                raise ValueError(f"{option} {value} is invalid: expected > 0")
        if not name or not name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"--name {name!r} is invalid: letters, digits, - and _ only")
        try:
            cash = Decimal(balance)
        except InvalidOperation:
            cash = Decimal(-1)
        if not cash.is_finite() or cash <= 0:
            raise ValueError(f"--balance {balance!r} is invalid: expected a positive amount")
        plan = FaultPlan.parse(faults, seed=fault_seed)
        factor = _replay_speed(speed)
        listed = _symbol_of(data, symbol)
        frame, _report = load_ohlcv(data)
        if not 1 <= history < len(frame):
            raise ValueError(
                f"--history {history} is invalid: --data {data!r} has {len(frame)} bars, "
                f"expected 1 <= history < {len(frame)}"
            )
        markets = markets_for(listed, float(frame["close"].iloc[-1]))
        path = home_subdir("exchange") / name / "journal.jsonl"
        if fresh:
            path.unlink(missing_ok=True)
        journal = Journal(path)
        saved = (journal.header or {}).get("credentials")
        if api_key is not None and api_secret is not None:
            creds = Credentials(api_key, api_secret)
        elif saved:
            creds = Credentials(*saved)
        else:
            creds = Credentials.generate()
        state = ExchangeState(
            frame, credentials=[creds], cash=cash, leverage=leverage, history=history,
            markets=markets,
        )  # fmt: skip
        times = state.replay.time_ms
        journal.begin({
            "data": {"bars": len(state.replay), "first_ms": int(times[0]),
                     "last_ms": int(times[-1])},
            "markets": [[m.category, m.symbol] for m in markets], "balance": str(cash),
            "leverage": leverage, "history": history, "credentials": [creds.key, creds.secret],
        })  # fmt: skip
        restored = state.restore(journal, MUTATIONS)
    except (ValueError, OSError) as exc:
        if journal is not None:
            journal.close()
        raise fail(str(exc)) from None

    app = create_app(state, faults=plan if plan.active else None)
    try:
        server = BackgroundServer(app, port).start()
    except OSError as exc:
        journal.close()
        raise fail(f"--port {port}: cannot listen on 127.0.0.1:{port} ({exc.strerror})") from None
    _announce(server.url, creds, state, plan, path, restored, listed)
    clock = state.start_clock(factor, bars)
    stop = _until_stopped(state, bars, duration)
    clock.stop()
    server.stop()
    with state.lock:
        journal.close()
    _goodbye(state, app, path, stop)


def _announce(
    url: str, creds: Any, state: Any, plan: Any, path: Path, restored: int, symbol: str
) -> None:
    """What to connect to, printed plainly (no wrapping: the snippet is copied)."""
    r = state.replay
    resumed = f"resumed: {restored} changes restored" if restored else "new"
    lines = [
        f"Local Bybit exchange on {url}",
        f"  api key:    {creds.key}",
        f"  api secret: {creds.secret}",
        f"  markets:    {symbol} (USDT linear perpetual) and {symbol} (spot)",
        f"  account:    {state.venue.account.balance('USDT')} USDT",
        f"  replay:     bar {r.position} of {len(r)} ({resumed})",
        f"  state:      {path}",
        f"  faults:     {plan.describe()} (seed {plan.seed})",
        "",
        "ccxt:",
        ccxt_snippet(url, creds.key, creds.secret),
        "",
        "Ctrl-C stops it (the state is kept).",
    ]
    print("\n".join(lines), flush=True)


def _until_stopped(state: Any, bars: int | None, duration: float | None) -> str:
    """Block until Ctrl-C (or SIGTERM), `bars` replayed or `duration` seconds; why."""
    stopped = threading.Event()
    why = ["interrupted"]

    def on_signal(signum: int, frame: object) -> None:
        why[0] = "interrupted" if signum == signal.SIGINT else "terminated"
        stopped.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    start, began = state.replay.position, time.monotonic()
    try:
        while not stopped.wait(0.05):
            if bars is not None and state.replay.position - start >= bars:
                return f"{bars} bars replayed"
            if duration is not None and time.monotonic() - began >= duration:
                return f"{duration:g} s elapsed"
        return why[0]
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _goodbye(state: Any, app: Any, path: Path, why: str) -> None:
    r = state.replay
    err_console.print(
        f"stopped ({why}) at bar {r.position} of {len(r)}; state kept in {path}",
        highlight=False,
        soft_wrap=True,
    )
    injector = app.state.faults
    if injector is not None:
        counts = ", ".join(f"{k}={v}" for k, v in sorted(injector.counts.items())) or "none"
        err_console.print(f"faults injected: {counts}", highlight=False, soft_wrap=True)
