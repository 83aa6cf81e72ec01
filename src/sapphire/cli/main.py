"""The `sapphire` command line: thin commands that parse, call one function and print."""

from __future__ import annotations

import typer

from sapphire.cli.audit import audit_app
from sapphire.cli.backtest import backtest_command, strategies_command
from sapphire.cli.check import check_app
from sapphire.cli.config import config_app
from sapphire.cli.data import data_app
from sapphire.cli.db import db_app
from sapphire.cli.demo import demo_command
from sapphire.cli.exchange import exchange_app
from sapphire.cli.graduate import graduate_app
from sapphire.cli.init import init_command
from sapphire.cli.keys import keys_app
from sapphire.cli.live import live_app
from sapphire.cli.ml import ml_app
from sapphire.cli.notify import notify_app
from sapphire.cli.optimize import optimize_app
from sapphire.cli.optimize_report import report_command
from sapphire.cli.paper import paper_app, runs_app
from sapphire.cli.portfolio import portfolio_app
from sapphire.cli.serve import serve_command
from sapphire.cli.surveil import surveil_app
from sapphire.cli.tax import tax_app
from sapphire.cli.users import users_app
from sapphire.cli.walkforward import walkforward_command

app = typer.Typer(
    name="sapphire",
    help="Sapphire: research, backtest and trade crypto strategies.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("backtest")(backtest_command)
app.command("demo")(demo_command)
app.command("strategies")(strategies_command)
app.command("walkforward")(walkforward_command)
app.command("serve")(serve_command)
app.command("init")(init_command)
app.add_typer(data_app, name="data", help="Import, download, list and inspect market data.")
app.add_typer(check_app, name="check", help="Check strategies for look-ahead.")
optimize_app.command("report")(report_command)
app.add_typer(optimize_app, name="optimize")
app.add_typer(ml_app, name="ml")
app.add_typer(paper_app, name="paper")
app.add_typer(runs_app, name="runs")
app.add_typer(exchange_app, name="exchange")
app.add_typer(live_app, name="live")
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
app.add_typer(db_app, name="db")
app.add_typer(notify_app, name="notify")
app.add_typer(config_app, name="config")
app.add_typer(tax_app, name="tax")
app.add_typer(surveil_app, name="surveil")
app.add_typer(portfolio_app, name="portfolio")
app.add_typer(graduate_app, name="graduate")


def main() -> None:
    """Entry point for `python -m sapphire`."""
    app()


if __name__ == "__main__":
    main()
