"""The `sapphire` command line: thin commands that parse, call one function and print.

The frequent, light commands are registered here; every other command's module is
imported only when that command runs (or `sapphire --help` lists it), so a command never
pays for the libraries the others load (the store, the live node, the service's config):
every `sapphire ...` process starts faster.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from typing import Any

import typer
from typer.core import TyperGroup

from sapphire.cli.backtest import backtest_command, strategies_command
from sapphire.cli.demo import demo_command
from sapphire.cli.serve import serve_command
from sapphire.cli.walkforward import walkforward_command

#: the commands loaded on use, in `--help` order: name -> (module, attribute, the help
#: `add_typer` gives it, or None for the group's own); `init` is a command, the rest groups
LAZY: dict[str, tuple[str, str, str | None]] = {
    "init": ("sapphire.cli.init", "init_command", None),
    "data": ("sapphire.cli.data", "data_app", "Import, download, list and inspect market data."),
    "check": ("sapphire.cli.check", "check_app", "Check strategies for look-ahead."),
    "optimize": ("sapphire.cli.optimize", "optimize_app", None),
    "ml": ("sapphire.cli.ml", "ml_app", None),
    "paper": ("sapphire.cli.paper", "paper_app", None),
    "runs": ("sapphire.cli.paper", "runs_app", None),
    "exchange": ("sapphire.cli.exchange", "exchange_app", None),
    "live": ("sapphire.cli.live", "live_app", None),
    "users": ("sapphire.cli.users", "users_app", None),
    "keys": ("sapphire.cli.keys", "keys_app", None),
    "audit": ("sapphire.cli.audit", "audit_app", None),
    "db": ("sapphire.cli.db", "db_app", None),
    "notify": ("sapphire.cli.notify", "notify_app", None),
    "config": ("sapphire.cli.config", "config_app", None),
    "tax": ("sapphire.cli.tax", "tax_app", None),
    "surveil": ("sapphire.cli.surveil", "surveil_app", None),
    "portfolio": ("sapphire.cli.portfolio", "portfolio_app", None),
    "graduate": ("sapphire.cli.graduate", "graduate_app", None),
}


def load_command(name: str) -> Any:
    """The click command `sapphire NAME` runs, built exactly as registering it on the
    app would build it (`app.command` for a command, `app.add_typer` for a group)."""
    module_name, attribute, help_text = LAZY[name]
    module = importlib.import_module(module_name)
    target = getattr(module, attribute)
    holder = typer.Typer()
    if isinstance(target, typer.Typer):
        if name == "optimize":
            from sapphire.cli.optimize_report import report_command

            if not any(c.name == "report" for c in target.registered_commands):
                target.command("report")(report_command)
        if help_text is None:  # the group's own help (its Typer's or its callback's)
            holder.add_typer(target, name=name)
        else:
            holder.add_typer(target, name=name, help=help_text)
    else:
        holder.command(name)(target)
    return typer.main.get_group(holder).commands[name]


class _Commands(MutableMapping[str, Any]):
    """The app's commands by name: the registered ones, then the lazy ones, each loaded
    the first time it is looked up (listing the names loads nothing)."""

    def __init__(self, registered: MutableMapping[str, Any]) -> None:
        self._loaded: dict[str, Any] = dict(registered)
        self._names = [*registered, *(n for n in LAZY if n not in registered)]

    def __getitem__(self, name: str) -> Any:
        if name not in self._loaded:
            if name not in LAZY:
                raise KeyError(name)
            self._loaded[name] = load_command(name)
        return self._loaded[name]

    def __setitem__(self, name: str, command: Any) -> None:
        if name not in self._names:
            self._names.append(name)
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        self._names.remove(name)
        self._loaded.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._names))

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._names


class LazyGroup(TyperGroup):
    """The top-level group: its commands load on use (see `_Commands`)."""

    def __init__(self, *, commands: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.commands = _Commands(dict(commands or {}))

    def list_commands(self, ctx: Any) -> list[str]:
        """The command names in `--help` order, without loading them."""
        return list(self.commands)


app = typer.Typer(
    name="sapphire",
    help="Sapphire: research, backtest and trade crypto strategies.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=LazyGroup,
)
app.command("backtest")(backtest_command)
app.command("demo")(demo_command)
app.command("strategies")(strategies_command)
app.command("walkforward")(walkforward_command)
app.command("serve")(serve_command)


def main() -> None:
    """Entry point for `python -m sapphire`."""
    app()


if __name__ == "__main__":
    main()
