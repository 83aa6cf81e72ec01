"""Bundled real market data, so the demo and the docs work offline.

`btc-perp-20211231-20220201_1m.csv.gz`: FTX BTC-PERP perpetual, 1-minute bars,
2021-12-31 23:01 to 2022-02-01 05:31 UTC (45,031 rows; naive UTC timestamps, bar open
time; volume in USD). Real historical data recorded from the public venue and published
in the test fixtures of public open-source trading projects.
"""

from __future__ import annotations

from pathlib import Path

#: the data source name of the bundled sample (`sapphire.data.load_ohlcv("sample")`)
SAMPLE = "sample"
SAMPLE_PATH = Path(__file__).parent / "btc-perp-20211231-20220201_1m.csv.gz"
SAMPLE_SYMBOL = "BTC/USD:USD"
SAMPLE_VENUE = "ftx"
SAMPLE_TIMEFRAME = "1m"
