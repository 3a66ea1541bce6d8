"""The soak's ledger: every message it fed, and what each layer must therefore hold.

It derives each layer from the medallion's documented rules (docs/medallion.md),
never from the product's bookkeeping, so it cannot agree with the product by construction:

- raw: every message, by its exchange_ts hour, unless the warm TTL dropped it at the insert
  (stamped before the retention);
- rejects: every message that cannot become a trade (an unparseable field, or an exchange_ts
  later than max_lateness before its ingestion or max_lead after it), by ingestion hour;
- bronze: every other message, typed, by exchange_ts hour;
- silver: each (exchange, exchange symbol, trade id) of bronze once (the soak's instruments
  are all known);
- gold: per window, one bar per instrument with trades, counting silver's trades in it.

Each layer is compared as a multiset of keys: a row twice in cold is a row too many.
"""

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

from cold_assets.tables import GOLD_WINDOWS, Layer, MirroredTable

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Canonical symbol of each exchange symbol the soak feeds (warm's `instruments` seed).
INSTRUMENTS = {
    ("binance", "BTCUSDT"): "BTC-USDT",
    ("binance", "ETHUSDT"): "ETH-USDT",
    ("kraken", "XBT/USDT"): "BTC-USDT",
    ("kraken", "ETH/USDT"): "ETH-USDT",
}
SIDES = {"binance": ("true", "false"), "kraken": ("b", "s")}
QUOTE_LIMIT = Decimal(10) ** 10  # bronze's Decimal(18, 8): price x quantity below 1e10
_WINDOW = {"1m": timedelta(minutes=1), "5m": timedelta(minutes=5), "15m": timedelta(minutes=15),
           "30m": timedelta(minutes=30), "1h": timedelta(hours=1), "1d": timedelta(days=1)}
assert set(_WINDOW) == set(GOLD_WINDOWS)


@dataclass(frozen=True)
class Message:
    """One message as a feed handler writes it into trades_raw (fields as strings)."""

    exchange: str
    symbol: str  # exchange symbol
    trade_id: str
    price: str
    quantity: str
    side: str
    exchange_ts: datetime
    received_at: datetime
    message: str
    ingested_at: datetime

    def row(self) -> list:
        return [self.exchange, self.symbol, self.trade_id, self.price, self.quantity, self.side,
                self.exchange_ts, self.received_at, self.message, self.ingested_at]


RAW_COLUMNS = ["exchange", "symbol", "trade_id", "price", "quantity", "side", "exchange_ts", "received_at", "message", "ingested_at"]


def micros(at: datetime) -> int:
    return (at - EPOCH) // timedelta(microseconds=1)


def hour_floor(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def _positive(text: str) -> Decimal | None:
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    return value if value.is_finite() and value > 0 and value == value.quantize(Decimal("1e-8")) else None


@dataclass
class Limits:
    max_lateness: timedelta
    max_lead: timedelta
    retention: timedelta


class Ledger:
    def __init__(self, limits: Limits):
        self.limits = limits
        self.messages: list[Message] = []
        self._derived: dict[str, tuple[int, Counter]] = {}  # table -> (messages seen, expected)

    def add(self, messages: Iterable[Message]) -> None:
        self.messages.extend(messages)

    def reject_reason(self, m: Message) -> str | None:
        """The medallion's parse rules (ddl/clickhouse/020_bronze_trades.sql), written again."""
        if not m.trade_id.isdigit() or int(m.trade_id) >= 2**64:
            return "trade_id"
        price, quantity = _positive(m.price), _positive(m.quantity)
        if price is None:
            return "price"
        if quantity is None:
            return "quantity"
        if (price * quantity).quantize(Decimal("1e-8")) >= QUOTE_LIMIT:
            return "quote"
        if m.side not in SIDES.get(m.exchange, ()):
            return "side"
        if m.exchange_ts < m.ingested_at - self.limits.max_lateness:
            return "late"
        if m.exchange_ts > m.ingested_at + self.limits.max_lead:
            return "lead"
        return None

    def in_raw(self, m: Message) -> bool:
        """Raw's TTL (exchange_ts + retention) drops an older message at the insert itself."""
        return m.exchange_ts >= m.ingested_at - self.limits.retention

    def expected(self, spec: MirroredTable, window: tuple[datetime, datetime] | None = None) -> Counter:
        """The multiset of (bucket, key) the cold table must hold for every message fed; with
        `window` (first, last hour), only the buckets whose hour the offload covers (a message
        stamped before the first or after the last lies in an hour not mirrored yet)."""
        cached = self._derived.get(spec.cold)
        if cached is None or cached[0] != len(self.messages):  # messages are only ever added
            cached = self._derived[spec.cold] = (len(self.messages), self._expected(spec))
        found = cached[1]
        if window is None:
            return found
        first, last = window
        return Counter({k: n for k, n in found.items() if _overlaps(spec, k[0], first, last)})

    def bucket_settled(self, spec: MirroredTable, hour: datetime, line: datetime) -> bool:
        """Whether every message behind `spec`'s bucket of `hour` was ingested by `line`."""
        lo, hi = spec.offload_range(hour)
        by_ingestion = spec.layer is Layer.REJECTS
        return all(
            m.ingested_at <= line for m in self.messages if lo <= (m.ingested_at if by_ingestion else m.exchange_ts) < hi
        )

    def _expected(self, spec: MirroredTable) -> Counter:
        found: Counter = Counter()
        if spec.layer is Layer.RAW:
            for m in self.messages:
                if self.in_raw(m):
                    found[(hour_floor(m.exchange_ts), raw_key(m.exchange, m.symbol, m.trade_id, m.exchange_ts, m.message))] += 1
        elif spec.layer is Layer.REJECTS:
            for m in self.messages:
                if self.reject_reason(m) is not None:
                    found[(hour_floor(m.ingested_at), raw_key(m.exchange, m.symbol, m.trade_id, m.exchange_ts, m.message))] += 1
        elif spec.layer is Layer.BRONZE:
            for m in self._trades():
                found[(hour_floor(m.exchange_ts), trade_key(m.exchange, m.symbol, int(m.trade_id), m.exchange_ts))] += 1
        elif spec.layer is Layer.SILVER:
            for m in self._silver():
                found[(hour_floor(m.exchange_ts), trade_key(m.exchange, m.symbol, int(m.trade_id), m.exchange_ts))] += 1
        else:
            width = _WINDOW[spec.gold_window or ""]
            bars: Counter = Counter()
            for m in self._silver():
                start = EPOCH + (m.exchange_ts - EPOCH) // width * width
                bars[(m.exchange, INSTRUMENTS[(m.exchange, m.symbol)], start)] += 1
            for (exchange, symbol, start), trades in bars.items():
                found[(start, bar_key(exchange, symbol, start, trades))] += 1
        return found

    def _trades(self) -> list[Message]:
        return [m for m in self.messages if self.reject_reason(m) is None]

    def _silver(self) -> list[Message]:
        """Bronze's trades once each: the first delivery of a trade id stays."""
        seen, first = set(), []
        for m in self._trades():
            key = (m.exchange, m.symbol, m.trade_id)
            if key not in seen:
                seen.add(key)
                first.append(m)
        return first


def _overlaps(spec: MirroredTable, bucket: datetime, first: datetime, last: datetime) -> bool:
    """Whether the offload range starting at `bucket` (an hour; the daily bars' day) meets the
    hours [first, last]."""
    lo, hi = spec.offload_range(hour_floor(bucket))
    return lo <= last and hi > first


def raw_key(exchange: str, symbol: str, trade_id: str, exchange_ts: datetime, message: str) -> tuple:
    return ("raw", exchange, symbol, trade_id, micros(exchange_ts), message)


def trade_key(exchange: str, symbol: str, trade_id: int, exchange_ts: datetime) -> tuple:
    return ("trade", exchange, symbol, trade_id, micros(exchange_ts))


def bar_key(exchange: str, symbol: str, window_start: datetime, trades: int) -> tuple:
    return ("bar", exchange, symbol, micros(window_start), trades)
