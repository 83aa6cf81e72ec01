"""`NodeManager`: trading nodes as their own processes, started, followed and controlled
by the service.

A node is the CLI's own command run detached (`python -m sapphire paper ...`, `python -m
sapphire live --env testnet|demo|local ...`): a new session and process group, its
output in `$SAPPHIRE_HOME/nodes/<run_id>.log`, so it keeps trading when the service
stops or restarts, and a signal to the service never reaches it. The service talks to it
only through the store (its run, orders, fills, positions) and the event stream (its
channel `node.<run_id>` out, its control channel in): it never waits on the node.

Finding the nodes after a restart needs no memory of the service: the store's paper and
live runs, each run directory's `node.pid` (written by the node's loop while it runs)
and the records of the nodes this service started (`nodes/<run_id>.json`, which also
cover a node still starting). A process counts as the node only while it is alive and
its command line is Sapphire's (a recycled pid is not taken for a node).

Everything a request asks for is checked here first (strategy names from the registry
only, never a file to import; data from the bundled sample or the catalog, never a
path; risk profiles by name; symbols, numbers and run ids by pattern): a bad value is a
ValueError naming it, before anything starts. Mainnet needs `confirm_mainnet` (the CLI's
interlock; the route adds the second factor).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sapphire.engine.control import command_event
from sapphire.engine.session import read_pid, session_dir
from sapphire.engine.stream import EventStream, RedisStream, control_channel, node_channel
from sapphire.store import Store
from sapphire.store.records import RunInfo, RunMode, RunStatus

__all__ = [
    "LIVE_OPTIONS",
    "MODES",
    "PAPER_OPTIONS",
    "CommandRefused",
    "CommandTimeout",
    "NodeConflict",
    "NodeInfo",
    "NodeManager",
    "NodeNotFound",
    "NodeSpec",
    "NodeStartError",
]

MODES = ("paper", "live")
LIVE_ENVS = ("testnet", "demo", "local", "mainnet")
#: the run options a paper node takes through the API (the `sapphire paper` options)
PAPER_OPTIONS = frozenset({
    "data", "start", "end", "timeframe", "speed", "cash", "size", "size_mode", "leverage",
    "fee", "maker_fee", "taker_fee", "slippage_bps", "stop_loss", "take_profit",
    "trailing_stop", "risk_profile", "intrabar", "tick_size", "lot_size",
    "weights", "allocation", "rebalance_every", "rebalance_drift", "lookback",
})  # fmt: skip
#: the run options a live node takes through the API (the `sapphire live` options)
LIVE_OPTIONS = frozenset({
    "env", "url", "symbol", "timeframe", "paper", "cash", "size", "size_mode", "leverage",
    "stop_loss", "take_profit", "trailing_stop", "risk_profile", "warmup", "reconcile_every",
    "on_exit", "market_data", "poll_interval", "key",
    "symbols", "weights", "allocation", "rebalance_every", "rebalance_drift", "lookback",
})  # fmt: skip
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
SYMBOL = re.compile(r"[A-Z0-9]{1,20}/[A-Z0-9]{1,10}(:[A-Z0-9]{1,10})?")
PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,49}")
_LOOPBACK = re.compile(r"https?://(127\.0\.0\.1|localhost|\[::1\]):\d{1,5}/?")
#: variables a node never inherits from the service (its signing secret)
_WITHHELD = ("SAPPHIRE_API_SECRET", "SAPPHIRE_API_SECRET_FILE")


class NodeNotFound(LookupError):
    """No node (run) with that id."""


class NodeConflict(RuntimeError):
    """The node is not in a state that allows this (not running, already exists...)."""


class NodeStartError(RuntimeError):
    """The node's process failed to start; the message quotes its last output.
    `user_error`: it refused what it was asked (the CLI's exit code 2)."""

    def __init__(self, message: str, *, user_error: bool = False) -> None:
        super().__init__(message)
        self.user_error = user_error


class CommandRefused(RuntimeError):
    """The node refused a command; the message is its reason."""


class CommandTimeout(TimeoutError):
    """The node did not acknowledge a command in time."""


@dataclass(frozen=True)
class NodeSpec:
    """What to start: `mode` (paper or live), a registered `strategy` and its `params`,
    the run `options` of that mode (`PAPER_OPTIONS` / `LIVE_OPTIONS`)."""

    mode: str
    strategy: str
    params: Mapping[str, str | int | float | bool] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    run_id: str | None = None
    confirm_mainnet: bool = False


@dataclass
class NodeInfo:
    """A node as the service sees it (see `NodeManager.info`)."""

    run_id: str
    mode: str
    status: str
    pid: int | None
    strategy: str | None
    started: datetime | None
    finished: datetime | None = None
    reason: str | None = None
    env: str | None = None
    symbol: str | None = None
    trading_state: str | None = None
    operator_state: str | None = None
    equity: Decimal | None = None
    fills: int | None = None
    heartbeat: datetime | None = None
    stream: dict[str, Any] = field(default_factory=dict)
    log_tail: str | None = None


def _utc(ts_ns: int | None) -> datetime | None:
    return None if ts_ns is None else datetime.fromtimestamp(ts_ns / 1e9, UTC)


class NodeManager:
    """Starts, finds, follows and controls the trading nodes (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        home: Path,
        events: EventStream,
        *,
        python: str = sys.executable,
        start_timeout: float = 60.0,
    ) -> None:
        self.store = store
        self.home = Path(home)
        self.events = events
        self.python = python
        self.start_timeout = start_timeout
        self.dir = self.home / "nodes"
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    # ---------------------------------------------------------------- checking a spec
    def check(self, spec: NodeSpec) -> tuple[str, list[str]]:
        """The run id and command line of `spec`; a ValueError names a bad value."""
        if spec.mode not in MODES:
            raise ValueError(f"mode={spec.mode!r} is invalid: expected paper or live")
        allowed = PAPER_OPTIONS if spec.mode == "paper" else LIVE_OPTIONS
        unknown = sorted(set(spec.options) - allowed)
        if unknown:
            raise ValueError(
                f"option {unknown[0]!r} is not a {spec.mode} option here; the options are: "
                f"{', '.join(sorted(allowed))}"
            )
        options = {k: v for k, v in spec.options.items() if v is not None}
        params = self._check_strategy(spec.strategy, spec.params)
        if spec.mode == "paper":
            self._check_paper(options, spec.strategy)
        else:
            self._check_live(options, spec.confirm_mainnet, spec.strategy)
        run_id = spec.run_id or self._new_run_id(spec.mode)
        if not RUN_ID.fullmatch(run_id):
            raise ValueError(
                f"run_id={run_id!r} is invalid: expected 1-100 letters, digits, '.', '_' "
                "or '-', starting with a letter or digit"
            )
        if self._exists(run_id, spec.mode):
            raise NodeConflict(f"run {run_id!r} already exists: pick another run id")
        argv = [self.python, "-m", "sapphire", spec.mode, "--strategy", spec.strategy]
        for key, value in params.items():
            argv += ["--param", f"{key}={value}"]
        argv += ["--run-id", run_id, "--json"]
        if spec.mode == "paper":
            argv.append("--no-live")
        elif options.get("env") == "mainnet" and not options.get("paper"):
            argv.append("--confirm-mainnet")
        for key, value in sorted(options.items()):
            flag = "--" + key.replace("_", "-")
            if isinstance(value, bool):
                argv.append(flag if value else f"--no-{key.replace('_', '-')}")
            else:
                argv += [flag, str(value)]
        return run_id, argv

    @staticmethod
    def _check_strategy(name: str, params: Mapping[str, Any]) -> dict[str, str]:
        from sapphire.paper.config import REBALANCE
        from sapphire.strategy.registry import builtin_strategies, model_strategies

        if name == REBALANCE:  # the portfolio rebalancer: its settings are options
            if params:
                raise ValueError(
                    "strategy 'rebalance' takes no params: its weights, schedule and drift "
                    "are options (weights or allocation, rebalance_every, rebalance_drift)"
                )
            return {}
        known = {**builtin_strategies(), **model_strategies()}
        if name not in known:
            raise ValueError(
                f"strategy {name!r} is unknown: expected one of {', '.join(sorted(known))} "
                "(the service starts registered strategies only)"
            )
        text: dict[str, str] = {}
        for key, value in params.items():
            if not PARAM_NAME.fullmatch(str(key)):
                raise ValueError(f"parameter name {key!r} is invalid")
            if isinstance(value, float) and value != value:
                raise ValueError(f"parameter {key}={value!r} is invalid: expected a number")
            shown = ("true" if value else "false") if isinstance(value, bool) else str(value)
            if len(shown) > 200 or any(c in shown for c in "\r\n\x00"):
                raise ValueError(f"parameter {key}={shown[:40]!r} is invalid")
            text[str(key)] = shown
        known[name](**text)  # a bad value raises ValueError naming it
        return text

    @staticmethod
    def _check_paper(options: dict[str, Any], strategy: str) -> None:
        from sapphire.paper import PaperConfig
        from sapphire.paper.config import REBALANCE

        data = str(options.get("data", "sample"))
        # a rebalanced portfolio lists its instruments: NAME=symbol,NAME=symbol
        for item in data.split(",") if "," in data or "=" in data else [data]:
            source = item.partition("=")[2] if "=" in item else item
            if source.strip() != "sample":
                _check_catalog_symbol(source.strip())
        _check_profile(options.get("risk_profile"))
        for key in ("start", "end"):
            if key in options:
                _check_time(key, options[key])
        # every value checked, named when bad (the rebalancer's settings with it)
        PaperConfig.from_options(
            **options, **({"strategy": strategy} if strategy == REBALANCE else {})
        )

    @staticmethod
    def _check_live(options: dict[str, Any], confirm_mainnet: bool, strategy: str) -> None:
        from sapphire.live.config import LiveConfig
        from sapphire.paper.config import REBALANCE

        env = options.get("env", "testnet")
        if env not in LIVE_ENVS:
            raise ValueError(f"env={env!r} is invalid: expected {', '.join(LIVE_ENVS)}")
        markets = [options.get("symbol", "BTC/USDT:USDT")]
        if options.get("symbols") is not None:
            markets = str(options["symbols"]).split(",")
        for symbol in markets:
            if not isinstance(symbol, str) or not SYMBOL.fullmatch(symbol.strip()):
                raise ValueError(
                    f"symbol={symbol!r} is invalid: expected a market such as BTC/USDT:USDT"
                )
        url = options.get("url")
        if url is not None and not (isinstance(url, str) and _LOOPBACK.fullmatch(url)):
            raise ValueError(
                f"url={url!r} is invalid: the local exchange must be on this machine "
                "(http://127.0.0.1:PORT)"
            )
        _check_profile(options.get("risk_profile"))
        # every value checked, named when bad (the rebalancer's settings with it)
        rebalance = {"strategy": strategy} if strategy == REBALANCE else {}
        LiveConfig.from_options(**options, **rebalance)
        if env == "mainnet" and not options.get("paper") and not confirm_mainnet:
            raise ValueError(
                "env='mainnet' trades real money: confirm_mainnet must be true (and the "
                "request needs your second factor)"
            )

    def _new_run_id(self, mode: str) -> str:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        return f"{mode}-{stamp}-{secrets.token_hex(3)}"

    def _exists(self, run_id: str, mode: str) -> bool:
        try:
            self.store.run(run_id)
            return True
        except ValueError:
            pass
        return (self.dir / f"{run_id}.json").exists() or session_dir(
            mode, run_id, self.home
        ).exists()

    # ---------------------------------------------------------------- starting
    def start(
        self, spec: NodeSpec, *, environ: Mapping[str, str] | None = None, wait: bool = True
    ) -> NodeInfo:
        """Start a node for `spec` as its own process; with `wait`, until it runs (its
        loop recorded its pid) or fails (`NodeStartError` quoting its output).
        `environ` adds variables to the node's environment (e.g. exchange keys)."""
        run_id, argv = self.check(spec)
        env = {k: v for k, v in os.environ.items() if k not in _WITHHELD}
        env.update(environ or {})
        env["COLUMNS"] = "1000"  # its messages on one line each (read back on failure)
        env["SAPPHIRE_HOME"] = str(self.home)
        env["SAPPHIRE_DATABASE_URL"] = self.store.url
        env.pop("SAPPHIRE_REDIS_URL", None)
        if isinstance(self.events, RedisStream):
            env["SAPPHIRE_REDIS_URL"] = self.events.url
        log_path = self.dir / f"{run_id}.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=env, cwd=self.home, start_new_session=True, close_fds=True,
            )  # fmt: skip
        self._children[run_id] = proc
        record = {
            "run_id": run_id, "mode": spec.mode, "pid": proc.pid, "strategy": spec.strategy,
            "params": dict(spec.params), "options": dict(spec.options),
            "started_ns": time.time_ns(), "log": str(log_path),
        }  # fmt: skip
        _write_json(self.dir / f"{run_id}.json", record)
        if not wait:
            return self.info(run_id)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise NodeStartError(
                    f"node {run_id} exited with code {proc.returncode} while starting: "
                    f"{_last_error(log_path)}",
                    user_error=proc.returncode == 2,
                )
            if self._pid_of(run_id, spec.mode) == proc.pid:
                break
            time.sleep(0.05)
        return self.info(run_id)

    # ---------------------------------------------------------------- finding
    def _record(self, run_id: str) -> dict[str, Any]:
        try:
            value = json.loads((self.dir / f"{run_id}.json").read_text())
        except (OSError, json.JSONDecodeError):
            return {}
        return value if isinstance(value, dict) else {}

    def _run(self, run_id: str) -> RunInfo | None:
        try:
            return self.store.run(run_id)
        except ValueError:
            return None

    def _run_dir(self, run_id: str, mode: str, run: RunInfo | None = None) -> Path:
        if run is not None and run.config.get("run_dir"):
            return Path(str(run.config["run_dir"]))
        return session_dir(mode, run_id, self.home)

    def _pid_of(self, run_id: str, mode: str, run: RunInfo | None = None) -> int | None:
        """The pid of the process running the node's loop, if it is alive."""
        pid = read_pid(self._run_dir(run_id, mode, run))
        if pid is not None and self._alive(run_id, pid):
            return pid
        return None

    def _alive(self, run_id: str, pid: int) -> bool:
        child = self._children.get(run_id)
        if child is not None and child.pid == pid:
            return child.poll() is None  # also reaps it once it has exited
        return _is_sapphire_process(pid)

    def _process(self, run_id: str, mode: str, run: RunInfo | None) -> int | None:
        """The node's process: its loop's, else the one this service started (starting)."""
        pid = self._pid_of(run_id, mode, run)
        if pid is not None:
            return pid
        started = self._record(run_id).get("pid")
        if isinstance(started, int) and self._alive(run_id, started):
            return started
        return None

    def info(self, run_id: str) -> NodeInfo:
        """A node's status from the store, its process and its last events."""
        run = self._run(run_id)
        record = self._record(run_id)
        if run is None and not record:
            raise NodeNotFound(f"no node {run_id!r}")
        if run is not None and run.mode not in (RunMode.PAPER, RunMode.LIVE):
            raise NodeNotFound(f"run {run_id!r} is a {run.mode.value.lower()} run, not a node")
        mode = run.mode.value.lower() if run is not None else str(record.get("mode"))
        pid = self._process(run_id, mode, run)
        loop_pid = self._pid_of(run_id, mode, run)
        config = run.config if run is not None else dict(record.get("options") or {})
        info = NodeInfo(
            run_id=run_id, mode=mode, status="", pid=pid,
            strategy=str(config.get("strategy") or record.get("strategy") or "") or None,
            started=_utc(run.ts_started if run is not None else record.get("started_ns")),
            finished=_utc(run.ts_finished) if run is not None else None,
            reason=run.reason if run is not None else None,
            env=config.get("env") if mode == "live" else None,
            symbol=str(config.get("symbol") or config.get("data") or "") or None,
        )  # fmt: skip
        if run is not None and run.status is not RunStatus.RUNNING:
            info.status = run.status.value.lower()
        elif loop_pid is not None:
            info.status = "running"
        elif pid is not None:
            info.status = "starting"
        elif run is not None:
            info.status = "stopped"  # RUNNING in the store, no process: resumable
        else:
            info.status = "exited"  # its process ended before the run was recorded
            info.log_tail = _last_error(self.dir / f"{run_id}.log")
        if run is not None:
            info.trading_state = self.store.trading_state(run_id).value
            info.fills = len(self.store.fills(run_id))
        self._add_events(info)
        return info

    def _add_events(self, info: NodeInfo) -> None:
        """The last status and equity the node published."""
        try:
            tail = self.events.tail(node_channel(info.run_id), 200)
        except Exception:  # the stream is down: the store's figures are enough
            return
        for entry in reversed(tail):
            event = entry.event
            kind = event.get("type")
            if kind == "status" and info.heartbeat is None:
                info.heartbeat = _utc(event.get("ts_ns"))
                info.operator_state = event.get("operator_state")
                info.stream = dict(event.get("stream") or {})
                if info.status == "running" and event.get("trading_state"):
                    info.trading_state = event["trading_state"]
            elif kind == "equity" and info.equity is None and event.get("equity") is not None:
                with contextlib.suppress(ArithmeticError, ValueError, TypeError):
                    info.equity = Decimal(str(event["equity"]))

    def list_nodes(self, *, everything: bool = False) -> list[NodeInfo]:
        """The nodes running or starting (`everything`: every paper and live run, and the
        nodes that failed to start), oldest first."""
        ids: dict[str, None] = {}
        runs = self.store.runs() if everything else self.store.runs(RunStatus.RUNNING)
        for run in runs:
            if run.mode in (RunMode.PAPER, RunMode.LIVE):
                ids[run.run_id] = None
        for path in sorted(self.dir.glob("*.json")):
            ids[path.stem] = None
        out = []
        for run_id in ids:
            try:
                info = self.info(run_id)
            except NodeNotFound:
                continue
            if everything or info.status in ("running", "starting"):
                out.append(info)
        out.sort(key=lambda n: (n.started or datetime.min.replace(tzinfo=UTC), n.run_id))
        return out

    def open_orders(self, run_id: str) -> list[Any]:
        """The node's open orders, as the store has them."""
        from sapphire.store import StoreIntegrityError

        self.info(run_id)  # NodeNotFound for an unknown node
        for attempt in range(5):
            try:
                return self.store.open_orders(run_id)
            except StoreIntegrityError:
                # the store reads an order's row and its events in two statements: the
                # node may commit between them (SQLite); read again
                if attempt == 4:
                    raise
                time.sleep(0.02)
        return []

    # ---------------------------------------------------------------- controlling
    def _require_running(self, run_id: str) -> NodeInfo:
        info = self.info(run_id)
        if info.status != "running":
            raise NodeConflict(f"node {run_id!r} is not running (it is {info.status})")
        return info

    def command(
        self, run_id: str, name: str, *, timeout: float = 5.0, **args: Any
    ) -> dict[str, Any]:
        """Send `name` to a running node and wait up to `timeout` seconds for its
        acknowledgement (`CommandRefused` with the node's reason, `CommandTimeout`)."""
        self._require_running(run_id)
        event = command_event(name, **args)  # a bad argument: ValueError naming it
        reader = self.events.reader([node_channel(run_id)])  # from now: before sending
        self.events.publish(control_channel(run_id), event)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CommandTimeout(
                    f"node {run_id!r} did not acknowledge {name} (command {event['id']}) within "
                    f"{timeout:g} s; it stays on the control channel until it expires"
                )
            for entry in reader.poll(timeout=min(left, 0.5)):
                ack = entry.event
                if ack.get("type") == "ack" and ack.get("command_id") == event["id"]:
                    if not ack.get("ok"):
                        raise CommandRefused(str(ack.get("reason") or "refused by the node"))
                    return ack

    def stop(self, run_id: str, *, timeout: float = 10.0) -> NodeInfo:
        """Ask the node to stop; after `timeout` seconds, SIGTERM its process group (and
        SIGKILL 5 s later). The run stays resumable."""
        info = self._require_running(run_id)
        pid = info.pid
        assert pid is not None
        with contextlib.suppress(CommandTimeout, CommandRefused):
            self.command(run_id, "stop", timeout=min(timeout, 5.0))
        if not self._wait_gone(run_id, pid, timeout):
            _signal(pid, signal.SIGTERM)
            if not self._wait_gone(run_id, pid, 5.0):
                _signal(pid, signal.SIGKILL)
                self._wait_gone(run_id, pid, 5.0)
        return self.info(run_id)

    def _wait_gone(self, run_id: str, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._alive(run_id, pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def pause(self, run_id: str) -> dict[str, Any]:
        """No new entries (the node's trading state REDUCING)."""
        return self.command(run_id, "pause")

    def resume(self, run_id: str) -> dict[str, Any]:
        """Entries allowed again (ACTIVE)."""
        return self.command(run_id, "resume_entries")

    def kill(self, run_id: str, *, flatten: bool = False) -> dict[str, Any]:
        """The kill switch: HALTED, open orders cancelled, positions closed if `flatten`."""
        return self.command(run_id, "kill", flatten=flatten)

    def submit_order(
        self,
        run_id: str,
        side: str,
        quantity: Decimal,
        *,
        type: str = "MARKET",
        price: Decimal | None = None,
        reduce_only: bool = False,
        instrument_id: str | None = None,
    ) -> dict[str, Any]:
        """An operator's order, through the node's risk engine (see `engine.control`)."""
        args: dict[str, Any] = {"side": side, "type": type, "quantity": str(quantity)}
        if price is not None:
            args["price"] = str(price)
        if reduce_only:
            args["reduce_only"] = True
        if instrument_id is not None:
            args["instrument_id"] = instrument_id
        return self.command(run_id, "submit_order", **args)

    def cancel_order(self, run_id: str, client_order_id: str) -> dict[str, Any]:
        return self.command(run_id, "cancel_order", client_order_id=client_order_id)

    def amend_order(
        self,
        run_id: str,
        client_order_id: str,
        *,
        price: Decimal | None = None,
        quantity: Decimal | None = None,
    ) -> dict[str, Any]:
        return self.command(
            run_id, "amend_order", client_order_id=client_order_id,
            price=None if price is None else str(price),
            quantity=None if quantity is None else str(quantity),
        )  # fmt: skip

    def close(self) -> None:
        """Forget the child handles (the nodes keep running)."""
        self._children.clear()


def _check_catalog_symbol(data: str) -> None:
    """`data` must name a symbol of the catalog (files are not read through the API)."""
    from sapphire.data import Catalog

    symbols = sorted({e.symbol for e in Catalog().entries()})
    if data not in symbols:
        raise ValueError(
            f"data={data!r} is invalid: expected 'sample' or a catalog symbol"
            + (f" ({', '.join(symbols[:20])})" if symbols else " (the catalog is empty)")
        )


def _check_time(name: str, value: object) -> None:
    import pandas as pd

    try:
        ok = isinstance(value, str) and not pd.isna(pd.Timestamp(value))
    except (ValueError, TypeError, OverflowError):
        ok = False
    if not ok:
        raise ValueError(f"{name}={value!r} is invalid: expected a UTC time such as 2024-01-01")


def _check_profile(name: object) -> None:
    from sapphire.risk.profiles import PROFILES

    if name is not None and name not in PROFILES:
        raise ValueError(
            f"risk_profile={name!r} is invalid: expected {', '.join(sorted(PROFILES))}"
        )


def _is_sapphire_process(pid: int) -> bool:
    """True when `pid` is alive (not a zombie) and runs Sapphire."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    proc = Path(f"/proc/{pid}")
    if not proc.exists():
        return True  # no /proc (not Linux): alive is all we can tell
    try:
        stat = (proc / "stat").read_text()
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":
            return False
        cmdline = (proc / "cmdline").read_bytes()
    except OSError:
        return False
    return b"sapphire" in cmdline


def _signal(pid: int, sig: int) -> None:
    """Signal the node's process group (its own session), else the process."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def _last_error(log: Path, limit: int = 2000) -> str:
    """The last lines of a node's output (its error message)."""
    try:
        text = log.read_bytes()[-limit:].decode(errors="replace")
    except OSError:
        return "(no output)"
    lines = [line for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.lstrip().startswith("error:")]
    return (errors[-1] if errors else "\n".join(lines[-5:])).strip() or "(no output)"


def _write_json(path: Path, value: Mapping[str, Any]) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
