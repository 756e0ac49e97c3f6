"""Names of the stable interface (docs/INTERFACE.md), defined once for the clients, the warehouse
and the assets. The simulator keeps its own copy on purpose: it is written from the APIs'
contracts, not from this code, so that each can catch the other's mistakes."""

EXCHANGES = ("binance", "bybit", "deribit", "okx")
SIDES = ("long", "short")
# The 8 Newhedge metric names, also the names of their assets and tables.
NEWHEDGE_METRICS = tuple(
    f"bitcoin_liquidations_{exchange}_{side}" for exchange in EXCHANGES for side in SIDES
)
KWERY_TABLE = "kwery_liquidations"
TOTALS_TABLE = "daily_liquidation_totals"
BARS_TABLE = "kwery_liquidation_bars"
CASCADES_TABLE = "kwery_liquidation_cascades"
