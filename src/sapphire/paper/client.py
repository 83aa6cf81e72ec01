"""The node's side of the paper venue: a connection, and `RemoteVenue` (the node's
`Venue` protocol over that connection)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from multiprocessing.connection import Client, Connection
from pathlib import Path
from typing import Any

from sapphire.domain import Instrument, Order, OrderEvent

__all__ = ["CRASH_ENV", "RemoteVenue", "VenueClient", "ensure_venue", "maybe_crash"]

CRASH_ENV = "SAPPHIRE_PAPER_CRASH_POINT"
CRASH_AT_ENV = "SAPPHIRE_PAPER_CRASH_AT"
CRASH_POINTS = ("before_send", "after_send", "before_record")
_hits: dict[str, int] = {}


def maybe_crash(point: str) -> None:
    """Test-only hook: when `$SAPPHIRE_PAPER_CRASH_POINT` names `point`, the node process
    kills itself with SIGKILL at the `$SAPPHIRE_PAPER_CRASH_AT`-th time (default 1) it gets
    there. No cleanup runs: this is the real process dying."""
    if os.environ.get(CRASH_ENV) != point:
        return
    _hits[point] = _hits.get(point, 0) + 1
    if _hits[point] >= int(os.environ.get(CRASH_AT_ENV, "1")):
        os.kill(os.getpid(), signal.SIGKILL)


class VenueClient:
    """One authenticated connection to the venue server of a run directory."""

    def __init__(self, run_dir: str | Path, timeout: float = 30.0) -> None:
        info_path = Path(run_dir) / "venue.json"
        deadline = time.monotonic() + timeout
        while True:
            try:
                info = json.loads(info_path.read_text())
                self.conn: Connection = Client(
                    (info["host"], int(info["port"])), authkey=bytes.fromhex(info["authkey"])
                )
                break
            except (FileNotFoundError, json.JSONDecodeError, ConnectionRefusedError, KeyError):
                if time.monotonic() > deadline:
                    raise ValueError(f"no paper venue answers for {run_dir}") from None
                time.sleep(0.05)
        self.pid = int(info["pid"])

    def call(self, method: str, **kwargs: Any) -> Any:
        self.conn.send((method, kwargs))
        status, value = self.conn.recv()
        if status != "ok":
            raise ValueError(f"venue refused {method}: {value}")
        return value

    def close(self) -> None:
        self.conn.close()


def _alive(run_dir: Path) -> bool:
    try:
        VenueClient(run_dir, timeout=0.0).close()
        return True
    except (ValueError, OSError, EOFError):
        return False


def ensure_venue(
    run_dir: str | Path, config: dict[str, Any], name: str, timeout: float = 60.0
) -> None:
    """Attach to the run's venue server, or start it (it restores its state from
    `venue.db`); `name` prefixes the venue's ids (unique per run). The server runs in its
    own session, so the node's death, or a signal to the node's process group, leaves it
    running."""
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    if (run / "venue.json").exists() and _alive(run):
        return
    (run / "venue.json").unlink(missing_ok=True)
    (run / "venue_config.json").write_text(json.dumps({"config": config, "name": name}))
    with open(run / "venue.log", "ab") as log:
        subprocess.Popen(
            [sys.executable, "-m", "sapphire.paper", str(run)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
    VenueClient(run, timeout=timeout).close()


class RemoteVenue:
    """What the `TradingNode` sees: submit/cancel/amend go to the server; the events
    that come back (in the answer or, later, in the stream) are handed to `deliver`,
    which drops the ones already applied (by event id) and calls `on_event`."""

    supports_contingent = False

    def __init__(
        self,
        client: VenueClient,
        instrument: Instrument | Sequence[Instrument],
        cash: Decimal,
        seen: set[str],
        after_event: Callable[[OrderEvent], None] | None = None,
    ) -> None:
        self.client = client
        listed = [instrument] if isinstance(instrument, Instrument) else list(instrument)
        self.instruments = {i.id: i for i in listed}
        self.currency = listed[0].settlement
        self.supports_trailing = True
        self.on_event: Callable[[OrderEvent], None] = lambda event: None
        self.reasons: dict[str, str] = {}
        self.seen = seen
        self.after_event = after_event
        self._cash = cash

    def balance(self, currency: str | None = None) -> Decimal:
        return self._cash

    def deliver(self, events: list[OrderEvent]) -> None:
        for event in events:
            if event.event_id in self.seen:
                continue
            maybe_crash("before_record")
            self.seen.add(event.event_id)
            reason = getattr(event, "reason", None)
            if reason:
                self.reasons[str(event.client_order_id)] = reason
            self.on_event(event)
            if self.after_event is not None:
                self.after_event(event)

    def submit_order(self, order: Order, sizer: Callable[..., Any] | None = None) -> None:
        maybe_crash("before_send")
        reply = self.client.call("submit", order=order, sizer=sizer_spec(sizer))
        maybe_crash("after_send")
        self.deliver(reply["events"])

    def cancel_order(self, client_order_id: str, ts_ns: int | None = None) -> bool:
        reply = self.client.call("cancel", client_order_id=str(client_order_id))
        self.deliver(reply["events"])
        return bool(reply["ok"])

    def amend_order(
        self,
        client_order_id: str,
        *,
        quantity: Decimal | None = None,
        price: Decimal | None = None,
        trigger_price: Decimal | None = None,
    ) -> bool:
        reply = self.client.call(
            "amend", client_order_id=str(client_order_id), quantity=quantity, price=price,
            trigger_price=trigger_price,
        )  # fmt: skip
        self.deliver(reply["events"])
        return bool(reply["ok"])

    # the venue server matches bars itself: the node's calls are no-ops here
    def process_bar(self, *args: Any) -> None:
        return None

    def has_work(self, instrument_id: Any) -> bool:
        return False

    def apply_funding(self, *args: Any) -> None:
        return None


def sizer_spec(sizer: Callable[..., Any] | None) -> dict[str, Any] | None:
    """A sizer as data the venue can rebuild (`sapphire.engine.sizing.sizer_from_spec`):
    a callable cannot cross a process boundary."""
    if sizer is None:
        return None
    spec = getattr(sizer, "spec", None)
    if not callable(spec):
        raise ValueError(
            f"the paper venue needs sizing it can rebuild (sapphire.engine.sizing), got {sizer!r}"
        )
    return dict(spec())
