"""Real market history, as validated `Candles`. Never synthetic prices.

Three sources:

- `load_bundled_history`: the 5,000 real EUR/USD hourly bars bundled with the
  `backtesting` package (offline; 1h, and 4h/1d aggregated from them), read from the
  installed package's CSV file without importing it (nor pandas).
- `load_yahoo_history`: Yahoo Finance through yfinance (`EUR/USD` → `EURUSD=X`), with
  retries and exponential backoff; unreachable or empty → `MarketDataUnavailable`;
  `yahoo_session(base_url)` sends its traffic to a server answering in Yahoo's place.
- `load_csv_history`: a user's CSV file in the format documented in
  `common.market_data.csv_file`; a bad file is refused whole, naming line and column.

Every loader returns validated `Candles` or raises `MarketDataError` (or its subclasses
`MarketDataUnavailable`, `CsvFormatError`) with a message a user can act on.

Importing this package, and loading the bundled or CSV history, does not import pandas,
backtesting or yfinance: only the Yahoo path (yfinance needs pandas) loads them, when first
used. A service replaying offline history stays about 55 MB smaller for it.
"""

from common.market_data._core import (
    MarketDataError,
    MarketDataUnavailable,
    aggregate_candles,
    aggregate_hourly,
    frame_to_candles,
)
from common.market_data.bundled import bundled_csv_path, bundled_pairs, load_bundled_history
from common.market_data.csv_file import CSV_COLUMNS, CsvFormatError, load_csv_history
from common.market_data.yahoo import load_yahoo_history, yahoo_session, yahoo_symbol

__all__ = [
    "CSV_COLUMNS",
    "CsvFormatError",
    "MarketDataError",
    "MarketDataUnavailable",
    "aggregate_candles",
    "aggregate_hourly",
    "bundled_csv_path",
    "bundled_pairs",
    "frame_to_candles",
    "load_bundled_history",
    "load_csv_history",
    "load_yahoo_history",
    "yahoo_session",
    "yahoo_symbol",
]
