"""What position_svc needs from outside itself, as plain Python: market prices.

The watcher and the position book depend on `Prices`; `price_source.PriceSource`
implements it over signal_svc's internal gRPC API. Both raise domain errors only
(common.errors), so nothing here or behind it knows about gRPC.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from typing import Protocol

from position_svc.pnl import Tick


class Prices(Protocol):
    @property
    def source_name(self) -> str:
        """Where the prices come from, for logs."""
        ...

    async def current(self, pair: str, field: str) -> Decimal:
        """The latest price of `pair`. InvalidArgument on `field` when there is no market
        price for the pair; Unavailable when the price service cannot be asked."""
        ...

    def ticks(self, pairs: Sequence[str] = ()) -> AsyncIterator[Tick]:
        """Live price updates of `pairs` (all pairs with data when empty), each with the
        range traded since the previous one. Unavailable when the stream breaks."""
        ...
