"""Whole `sapphire data` flows: import real files, list and show the catalog, and errors."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from sapphire.cli.data import data_app
from sapphire.data.samples import SAMPLE_PATH

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
ADA = DATA_DIR / "binance-ADA_BTC-5m.feather"
ETH = DATA_DIR / "binance-ETH_BTC-5m.feather"

app = typer.Typer()
app.add_typer(data_app, name="data")
runner = CliRunner()


def _import(path: Path, symbol: str, venue: str, *options: str) -> tuple[int, str]:
    return _run("import", str(path), "--symbol", symbol, "--venue", venue, *options)


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["data", *args], env={"COLUMNS": "220"})
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_import_list_show_on_the_bundled_month(sapphire_home: Path) -> None:
    code, out = _run(
        "import", str(SAMPLE_PATH), "--symbol", "BTC/USD:USD", "--venue", "ftx",
        "--tick-size", "0.5", "--lot-size", "0.0001",
    )  # fmt: skip
    assert code == 0, out
    assert "Imported BTC/USD:USD (ftx 1m)" in out
    assert "45,031" in out and "2021-12-31 23:01" in out and "2022-02-01 05:31" in out
    assert "45,031 bars read, 45,031 added, 0 replaced" in out
    assert (sapphire_home / "catalog" / "ftx" / "BTC_USD_USD" / "1m" / "data.parquet").is_file()

    code, out = _run("list")
    assert code == 0, out
    row = next(line for line in out.splitlines() if "BTC/USD:USD" in line)
    for cell in ("ftx", "1m", "45,031", "2021-12-31 23:01", "2022-02-01 05:31", "0.5", "0.0001"):
        assert cell in row

    code, out = _run("show", "BTC/USD:USD", "--rows", "2")
    assert code == 0, out
    assert "First 2 bars" in out and "Last 2 bars" in out
    first = next(line for line in out.splitlines() if "46319" in line)
    assert all(v in first for v in ("2021-12-31 23:01", "46385", "46377", "2300413.7295"))
    assert any("2022-02-01 05:31" in line and "38544" in line for line in out.splitlines())


def test_gaps_fail_then_ffill(tmp_path: Path) -> None:
    code, out = _run(
        "import", str(ADA), "--symbol", "ADA/BTC", "--venue", "binance", "--gaps", "fail"
    )
    assert code == 2
    assert out.startswith("error: binance-ADA_BTC-5m.feather: row ")
    assert "missing 5m bar(s)" in out and len(out.strip().splitlines()) == 1
    assert _run("list")[1].startswith("The catalog at")  # nothing was stored

    code, out = _run(
        "import", str(ADA), "--symbol", "ADA/BTC", "--venue", "binance", "--gaps", "ffill"
    )
    assert code == 0, out
    assert "5,720 bars read, 5,760 added, 0 replaced, 40 filled with the previous close" in out
    assert "5,760" in out


def test_reimport_reports_replaced_and_changed_bars(tmp_path: Path) -> None:
    eth = pd.read_feather(ETH)
    eth.iloc[:3000].to_feather(tmp_path / "part1.feather")
    part2 = eth.iloc[2000:].copy()
    part2.loc[2000:2004, "close"] = part2.loc[2000:2004, "high"]
    part2.to_feather(tmp_path / "part2.feather")
    assert (
        _run(
            "import", str(tmp_path / "part1.feather"), "--symbol", "ETH/BTC", "--venue", "binance"
        )[0]
        == 0
    )
    code, out = _run(
        "import", str(tmp_path / "part2.feather"), "--symbol", "ETH/BTC", "--venue", "binance"
    )
    assert code == 0, out
    assert "3,760 bars read, 2,760 added, 1,000 replaced (5 with different values)" in out
    assert "5,760" in out


ETH_IMPORT = ["import", str(ETH), "--symbol", "ETH/BTC", "--venue", "binance"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "SOL/USDT"], "'SOL/USDT' is not in the catalog; it has: ETH/BTC (binance 5m)"),
        ([*ETH_IMPORT, "--timeframe", "7x"], "bad timeframe '7x'"),
        ([*ETH_IMPORT, "--timeframe", "1h"], f"{ETH.name}: timeframe 1h was given but the bars"),
        (["import", "missing.csv", "--symbol", "X", "--venue", "y"], "file not found: missing.csv"),
        ([*ETH_IMPORT, "--gaps", "drop"], "bad gaps policy 'drop'"),
        (["show", "ETH/BTC", "--timeframe", "1h"], "'ETH/BTC' has no 1h entry in the catalog"),
    ],
)
def test_data_errors_print_one_red_line_and_exit_2(args: list[str], message: str) -> None:
    assert _import(ETH, "ETH/BTC", "binance")[0] == 0
    code, out = _run(*args)
    assert code == 2
    assert out.startswith(f"error: {message}"), out
    assert len(out.strip().splitlines()) == 1


def test_corrupt_csv_names_the_row_and_value(tmp_path: Path) -> None:
    eth = pd.read_feather(ETH)
    eth.loc[123, "volume"] = -7.5
    eth.to_csv(tmp_path / "eth.csv", index=False)
    code, out = _run(
        "import", str(tmp_path / "eth.csv"), "--symbol", "ETH/BTC", "--venue", "binance"
    )
    assert code == 2
    assert "eth.csv: row 123 (2018-01-10 15:10:00+00:00): volume -7.5 is negative" in out


def test_ambiguous_show_asks_for_venue_or_timeframe() -> None:
    assert _import(ETH, "ETH/BTC", "binance")[0] == 0
    assert _import(ETH, "ETH/BTC", "kraken")[0] == 0
    code, out = _run("show", "ETH/BTC")
    assert code == 2 and "--venue/--timeframe" in out
    code, out = _run("show", "ETH/BTC", "--venue", "kraken", "--rows", "0")
    assert code == 0 and "ETH/BTC (kraken 5m)" in out and "First" not in out


# ---------------------------------------------------------------- reading unusual files
# (every run command takes the same reading options: they are RunConfig fields)


def _main(*args: str) -> tuple[int, str]:
    from sapphire.cli.main import app as main_app

    result = runner.invoke(main_app, list(args), env={"COLUMNS": "220"})
    assert "Traceback" not in result.output
    return result.exit_code, " ".join(result.output.split())


@pytest.fixture(scope="module")
def day_first(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Four days of the bundled month (1 to 4 January: day and month both <= 12) with
    day-first times, and the same bars with ISO times."""
    folder = tmp_path_factory.mktemp("day-first")
    bars = pd.read_csv(SAMPLE_PATH)
    bars = bars[(bars["timestamp"] >= "2022-01-01") & (bars["timestamp"] < "2022-01-05")]
    iso = folder / "iso.csv"
    bars.to_csv(iso, index=False)
    times = pd.to_datetime(bars["timestamp"]).dt.strftime("%d/%m/%Y %H:%M")
    eu = folder / "eu.csv"
    bars.assign(timestamp=times).to_csv(eu, index=False)
    return eu, iso


def test_backtest_refuses_a_price_file_as_funding() -> None:
    code, out = _main("backtest", "--data", "sample", "--funding", str(SAMPLE_PATH))
    assert code == 2, out
    assert "error: this is a price file, not a funding file: its high column" in out


def test_backtest_refuses_ambiguous_dates_then_reads_them_with_date_format(
    day_first: tuple[Path, Path],
) -> None:
    eu, iso = day_first
    code, out = _main("backtest", "--data", str(eu))
    assert code == 2
    assert "could be day-first or month-first" in out and "--date-format" in out
    code, given = _main("backtest", "--data", str(eu), "--date-format", "%d/%m/%Y %H:%M", "--json")
    assert code == 0, given
    code, reference = _main("backtest", "--data", str(iso), "--json")
    assert code == 0, reference
    metrics = json.loads(given)["metrics"]
    assert metrics["n_trades"] > 0 and metrics == json.loads(reference)["metrics"]


def test_walkforward_and_check_take_the_reading_options(day_first: tuple[Path, Path]) -> None:
    eu, _iso = day_first
    fmt = ("--date-format", "%d/%m/%Y %H:%M")
    code, out = _main("check", "lookahead", "sma_cross", "--data", str(eu), *fmt)
    assert code == 0 and "no look-ahead found" in out, out
    code, out = _main(
        "walkforward", "--strategy", "sma_cross", "--data", str(eu), "--train", "2d", "--test",
        "1d", "--trials", "2", "--jobs", "1", "--sampler", "random", *fmt, "--json",
    )  # fmt: skip
    assert code == 0, out
    assert '"n_folds": 2' in out  # progress lines go to stderr, mixed in here


def test_bad_reading_options_exit_2_naming_them() -> None:
    code, out = _main("backtest", "--data", "sample", "--delimiter", ";;")
    assert code == 2 and "bad delimiter ';;'" in out
    code, out = _main("backtest", "--data", "sample", "--time-column", "opened")
    assert code == 2 and "no time column 'opened' (time_column)" in out


def test_import_a_headerless_semicolon_kline_export(tmp_path: Path) -> None:
    bars = pd.read_csv(SAMPLE_PATH, nrows=100)
    ms = pd.to_datetime(bars["timestamp"]).astype("int64") // 10**6
    export = bars.drop(columns="timestamp").assign(close_time=ms + 59_999)
    export.insert(0, "open_time", ms)
    path = tmp_path / "BTCUSDT-1m.csv"
    export.to_csv(path, index=False, header=False, sep=";")
    code, out = _import(path, "BTC/USDT", "binance")
    assert code == 2 and "the first row looks like data, not a header" in " ".join(out.split())
    code, out = _import(
        path, "BTC/USDT", "binance", "--columns", "open_time,open,high,low,close,volume"
    )
    assert code == 0, out
    assert "100 bars read, 100 added" in out and "ignored column(s): column_7" in out


# ------------------------------------------------------------------ data download
@pytest.fixture
def local_exchange(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The local Bybit exchange serving the first 1,500 bars of the bundled month; any
    name lookup but the loopback's fails, so nothing can reach bybit.com."""
    from sapphire.data import load_ohlcv
    from sapphire.venues.exchange import BackgroundServer, ExchangeState, create_app

    real = socket.getaddrinfo

    def local_only(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in ("127.0.0.1", "localhost"):
            raise AssertionError(f"the test tried to reach {host!r}")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", local_only)
    bars, _report = load_ohlcv("sample")
    server = BackgroundServer(create_app(ExchangeState(bars.iloc[:1501], history=1500)))
    yield server.start().url
    server.stop()


def test_download_from_a_local_exchange_then_backtest_it(local_exchange: str) -> None:
    args = ["download", "--exchange", "bybit", "--symbol", "BTC/USDT:USDT", "--timeframe",
            "1m", "--start", "2021-12-31 23:01", "--end", "2022-01-02",
            "--url", local_exchange]  # fmt: skip
    code, out = _run(*args, "--funding")
    assert code == 0, out
    text = _cells(out)
    assert "Downloaded BTC/USDT:USDT (bybit 1m)" in text
    assert "range asked 2021-12-31 23:01 to 2022-01-02 00:00 UTC" in text
    assert "fetched 2 pages, 1,499 new bars" in text
    assert "bars in range 1,499, 2021-12-31 23:01 to 2022-01-01 23:59 UTC" in text
    assert "gaps none" in text
    assert "funding rates 3 in range, 2022-01-01 00:00 to 2022-01-01 16:00 UTC, 3 new" in text
    funding = text.split("funding file ")[1].split(" (use it with --funding)")[0]
    assert funding.endswith("funding.parquet")

    code, out = _run(*args)
    assert code == 0, out
    assert "nothing: the catalog already covered the range" in _cells(out)
    code, out = _run("list")
    assert code == 0 and "1,499" in out and "bybit" in out

    code, out = _main(
        "backtest", "--data", "BTC/USDT:USDT", "--funding", funding, "--size", "0.5",
        "--size-mode", "equity", "--json",
    )  # fmt: skip
    assert code == 0, out
    assert json.loads(out)["metrics"]["funding"] != 0


def _cells(out: str) -> str:
    """A table's text without its borders, runs of spaces made one."""
    return " ".join(out.translate({ord(c): " " for c in "│┃┌┐└┘├┤┬┴┼─━┏┓┗┛┡┩╇"}).split())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--exchange", "bybitt"], "error: unknown exchange 'bybitt'; did you mean bybit"),
        (["--symbol", "BTC/USDT:USD"], "error: unknown symbol 'BTC/USDT:USD' on bybit; did you"),
        (["--timeframe", "7m"], "error: timeframe '7m' is not offered by bybit"),
        (["--start", "someday"], "error: bad start 'someday': expected a date"),
        (["--url", "127.0.0.1"], "error: bad url '127.0.0.1': expected http://"),
    ],
)
def test_download_errors_name_the_value(local_exchange: str, args: list[str], message: str) -> None:
    given = {"--exchange": "bybit", "--symbol": "BTC/USDT:USDT", "--timeframe": "1m",
             "--start": "2022-01-01", "--end": "2022-01-02", "--url": local_exchange}  # fmt: skip
    given.update(zip(args[::2], args[1::2], strict=True))
    code, out = _run("download", *[part for pair in given.items() for part in pair])
    assert code == 2, out
    assert message in " ".join(out.split())
