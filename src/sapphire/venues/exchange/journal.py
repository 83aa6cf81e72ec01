"""The local exchange's journal: what changed its state, one JSON line each, so that a
restarted exchange comes back with the same orders, executions, positions, balances and
replay position.

The first line is a header describing the exchange (the data replayed, the markets, the
starting cash, leverage and history, the API keys); every later line is one change, in
order, with the wall-clock time (ms) it happened at:

- ``{"op": "advance", "now": ...}``: one bar replayed;
- ``{"op": "order.create", "now": ..., "params": {...}, "ids": [...], "code": 0}``: a
  state-changing request (``order.create``, ``order.amend``, ``order.cancel``,
  ``order.cancel-all``, ``position.set-leverage``) with its parameters as the client
  sent them, the order ids it generated and the retCode it was answered (refusals are
  recorded too: their outcome is checked again on replay).

Replaying the lines through the same handlers rebuilds the state exactly: matching is
deterministic, prices and quantities stay the client's text (Decimal on reading), and
the times and ids are the recorded ones (`ExchangeState.restore`). Each line is written
and flushed under the state's lock before the request is answered, so an answered
request is never lost when the process dies (a torn last line is ignored).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any

from sapphire.encoding import to_json

__all__ = ["Journal"]

VERSION = 1
#: header fields that may differ on resuming (the keys may be given anew)
_MAY_CHANGE = frozenset(("credentials",))


class Journal:
    """The journal at `path`: `header` (None when new) and `entries` read from it;
    `begin` checks or writes the header, then `append` adds lines."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.header: dict[str, Any] | None = None
        self.entries: list[dict[str, Any]] = []
        self._file: IO[str] | None = None
        if self.path.exists():
            self._read()

    def _read(self) -> None:
        lines = self.path.read_text(encoding="utf-8").splitlines()
        good = 0
        for number, line in enumerate(lines, 1):
            try:
                row = json.loads(line)
            except ValueError:
                if number == len(lines):  # torn by a crash while writing: never answered
                    break
                raise ValueError(f"{self.path} line {number} is not JSON: {line[:80]!r}") from None
            if number == 1:
                if row.get("op") != "header" or row.get("version") != VERSION:
                    raise ValueError(
                        f"{self.path} is not a version {VERSION} exchange journal: {line[:80]!r}"
                    )
                self.header = row
            else:
                self.entries.append(row)
            good += len(line.encode()) + 1
        if good < self.path.stat().st_size:  # drop the torn line before appending
            with self.path.open("r+b") as f:
                f.truncate(good)

    def begin(self, header: dict[str, Any]) -> None:
        """Write `header` to a new journal, or check that an existing one describes the
        same exchange (ValueError naming the first difference)."""
        header = {"op": "header", "version": VERSION, **header}
        if self.header is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("w", encoding="utf-8")
            self.append(header)
            self.header = header
            return
        for key, value in json.loads(to_json(header)).items():
            if key not in _MAY_CHANGE and self.header.get(key) != value:
                raise ValueError(
                    f"{self.path} was written by an exchange with {key}={self.header.get(key)!r},"
                    f" not {value!r}: start it with the same options, another name, or fresh"
                )
        self._file = self.path.open("a", encoding="utf-8")

    def append(self, entry: dict[str, Any]) -> None:
        """Write one line and flush it."""
        if self._file is None:
            raise RuntimeError(f"{self.path}: begin() the journal before appending")
        self._file.write(to_json(entry) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
