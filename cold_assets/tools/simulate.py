"""A realistic trade feed: what Binance and Kraken feed handlers would write into trades_raw.

Deterministic from a seed and vectorized (numpy + Arrow compute, no per-row Python), so that
millions of trades load in seconds. Trades look like real ones because compression and speed
figures are measured on them: a random walk on each instrument's tick size, heavy-tailed
quantities on its lot size, sequential trade ids per instrument, bursty timestamps. Shares of
duplicate deliveries, out-of-order arrivals, late arrivals and malformed messages are
configurable.

Prices and quantities are carried as integers in units of 1e-8 ("e8") so that every decimal
string is exact.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from clickhouse_connect.driver.client import Client

E8 = 100_000_000
US_PER_HOUR = 3_600_000_000

# Where each canonical instrument trades at the start and how much it moves in an hour.
# Tick and lot sizes are not here: they come from the warm tier's `instruments` table.
MARKET: dict[str, tuple[float, float]] = {  # symbol -> (start price, hourly volatility)
    "BTC-USDT": (91_250.0, 0.006),
    "ETH-USDT": (3_040.0, 0.008),
    "SOL-USDT": (141.5, 0.011),
    "XRP-USDT": (2.21, 0.010),
}
TYPICAL_NOTIONAL_USDT = 400.0


def _is_utc(moment: datetime) -> bool:
    return moment.tzinfo is not None and moment.utcoffset() == timedelta(0)


def _micros(moment: datetime) -> int:
    """Microseconds since the epoch, exactly (a float timestamp can be a microsecond off)."""
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


@dataclass(frozen=True)
class FeedConfig:
    start: datetime
    hours: int = 6
    exchanges: tuple[str, ...] = ("binance", "kraken")
    symbols: tuple[str, ...] = ("BTC-USDT", "ETH-USDT", "SOL-USDT")
    trades_per_hour: int = 20_000  # over all (exchange, symbol) streams
    seed: int = 7
    duplicate_share: float = 0.002
    out_of_order_share: float = 0.01
    late_share: float = 0.001
    malformed_share: float = 0.0005
    # Hours of this same feed delivered before `start` (a resumed build): each stream's trade
    # ids carry on after theirs instead of starting again.
    hours_before: int = 0
    # None: ingested_at is the insert's time (the table's default), as a live feed's is. A
    # time: each message's ingested_at is its received_at, as if the history had been fed
    # live, but no earlier than this time (what came before arrived as one backlog then) and
    # no later than the insert. A month built in minutes then ages like a real one: in the
    # TTL, and in silver's dedup window, which a history ingested "now" fills with all of it.
    ingested_from: datetime | None = None

    def __post_init__(self) -> None:
        if not _is_utc(self.start):
            raise ValueError(f"start must be a UTC datetime, got {self.start!r}")
        if self.start.minute or self.start.second or self.start.microsecond:
            raise ValueError(f"start must be on the hour, got {self.start.isoformat()}")
        if self.hours < 1 or self.trades_per_hour < 1:
            raise ValueError("hours and trades_per_hour must be at least 1")
        if self.hours_before < 0:
            raise ValueError(f"hours_before must be at least 0, got {self.hours_before}")
        if self.ingested_from is not None and not _is_utc(self.ingested_from):
            raise ValueError(f"ingested_from must be a UTC datetime, got {self.ingested_from!r}")
        for name in ("duplicate_share", "out_of_order_share", "late_share", "malformed_share"):
            share = getattr(self, name)
            if not 0.0 <= share < 0.5:
                raise ValueError(f"{name} must be in [0, 0.5), got {share}")
        unknown = set(self.symbols) - set(MARKET)
        if unknown:
            raise ValueError(f"no market profile for symbols {sorted(unknown)}; known: {sorted(MARKET)}")


@dataclass(frozen=True)
class Instrument:
    exchange: str
    exchange_symbol: str
    symbol: str
    tick_e8: int
    lot_e8: int


def load_instruments(client: Client) -> dict[tuple[str, str], Instrument]:
    """(exchange, canonical symbol) -> instrument, from the warm tier's reference table."""
    rows = client.query(
        "SELECT exchange, exchange_symbol, symbol, tick_size, lot_size FROM instruments FINAL"
    ).result_rows
    return {
        (ex, sym): Instrument(ex, native, sym, int(Decimal(tick) * E8), int(Decimal(lot) * E8))
        for ex, native, sym, tick, lot in rows
    }


@dataclass
class _Stream:
    instrument: Instrument
    price_ticks: float  # mid price, in ticks
    next_trade_id: int
    vol: float


@dataclass
class Trades:
    """Canonical trades of one instrument, column arrays of equal length."""

    instrument: Instrument
    trade_id: np.ndarray  # int64
    price_e8: np.ndarray  # int64
    qty_e8: np.ndarray  # int64
    buyer_is_maker: np.ndarray  # bool: the taker sold
    exchange_us: np.ndarray  # int64 microseconds since epoch
    received_us: np.ndarray  # int64 microseconds since epoch
    corrupt: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int8))  # 0 ok, 1..3 kind


def _decimal_strings(values_e8: np.ndarray, decimals: int) -> pa.Array:
    values = pa.array(values_e8, pa.int64())
    whole = pc.cast(pc.divide(values, E8), pa.string())
    frac = pc.divide(pc.subtract(values, pc.multiply(pc.divide(values, E8), E8)), 10 ** (8 - decimals))
    frac = pc.utf8_lpad(pc.cast(frac, pa.string()), decimals, "0")
    return pc.binary_join_element_wise(whole, frac, ".")


def _quote_e8(trades: Trades) -> np.ndarray:
    # price x qty rounded down to 1e-8, without overflowing int64.
    p, q = trades.price_e8, trades.qty_e8
    return (p // E8) * q + (p % E8) * q // E8


def _timestamps(us: np.ndarray) -> pa.Array:
    return pa.array(us, pa.int64()).cast(pa.timestamp("us", tz="UTC"))


def _corrupt_fields(trades: Trades, price: pa.Array, qty: pa.Array, side: pa.Array) -> tuple[pa.Array, pa.Array, pa.Array]:
    """Malformed messages: a price that is not a number, a negative quantity, an unknown side."""
    kind = trades.corrupt
    if not kind.any():
        return price, qty, side
    price = pc.if_else(pa.array(kind == 1), pa.scalar("NaN"), price)
    qty = pc.if_else(pa.array(kind == 2), pc.binary_join_element_wise("-", qty, ""), qty)
    side = pc.if_else(pa.array(kind == 3), pa.scalar("?"), side)
    return price, qty, side


def _raw_table(
    trades: Trades, trade_id: pa.Array, price: pa.Array, qty: pa.Array, side: pa.Array, message: pa.Array
) -> pa.Table:
    n = len(trades.trade_id)
    inst = trades.instrument
    return pa.table(
        {
            "exchange": pa.repeat(inst.exchange, n),
            "symbol": pa.repeat(inst.exchange_symbol, n),
            "trade_id": trade_id,
            "price": price,
            "quantity": qty,
            "side": side,
            "exchange_ts": _timestamps(trades.exchange_us),
            "received_at": _timestamps(trades.received_us),
            "message": message,
        }
    )


def render_binance(trades: Trades) -> pa.Table:
    """Binance spot trade messages: id, price, qty, quoteQty, time (us), isBuyerMaker, isBestMatch."""
    trade_id = pc.cast(pa.array(trades.trade_id), pa.string())
    price = _decimal_strings(trades.price_e8, 8)
    qty = _decimal_strings(trades.qty_e8, 8)
    side = pc.if_else(pa.array(trades.buyer_is_maker), pa.scalar("true"), pa.scalar("false"))
    price, qty, side = _corrupt_fields(trades, price, qty, side)
    message = pc.binary_join_element_wise(
        '{"id":', trade_id, ',"price":"', price, '","qty":"', qty,
        '","quoteQty":"', _decimal_strings(_quote_e8(trades), 8),
        '","time":', pc.cast(pa.array(trades.exchange_us), pa.string()),
        ',"isBuyerMaker":', side, ',"isBestMatch":true}', "",
    )
    return _raw_table(trades, trade_id, price, qty, side, message)


def render_kraken(trades: Trades) -> pa.Table:
    """Kraken trade arrays: [price, volume, time (float seconds), side b/s, order type, misc, trade id]."""
    trade_id = pc.cast(pa.array(trades.trade_id), pa.string())
    price = _decimal_strings(trades.price_e8, 5)
    qty = _decimal_strings(trades.qty_e8, 8)
    side = pc.if_else(pa.array(trades.buyer_is_maker), pa.scalar("s"), pa.scalar("b"))
    price, qty, side = _corrupt_fields(trades, price, qty, side)
    us = pa.array(trades.exchange_us, pa.int64())
    seconds = pc.binary_join_element_wise(
        pc.cast(pc.divide(us, 1_000_000), pa.string()),
        pc.utf8_lpad(pc.cast(pc.subtract(us, pc.multiply(pc.divide(us, 1_000_000), 1_000_000)), pa.string()), 6, "0"),
        ".",
    )
    order_type = pc.if_else(pa.array(trades.trade_id % 7 == 0), pa.scalar("l"), pa.scalar("m"))
    message = pc.binary_join_element_wise(
        '["', price, '","', qty, '",', seconds, ',"', side, '","', order_type, '","",', trade_id, "]", "",
    )
    return _raw_table(trades, trade_id, price, qty, side, message)


RENDERERS = {"binance": render_binance, "kraken": render_kraken}


def _generate_hour(stream: _Stream, hour_start_us: int, n: int, cfg: FeedConfig, rng: np.random.Generator) -> Trades:
    """One hour of one instrument's trades, as a matching engine prints them.

    A taker order fills one or more resting maker orders at once: the fills of one match
    share the exchange time and the taker side, and walk the book away from the touch a
    level at a time. Matches arrive in bursts; the mid price follows a random walk from
    match to match, and each match trades at the touch on its side (the bid-ask bounce)."""
    inst = stream.instrument
    # Fills per match: geometric, mean 2.5.
    sizes = rng.geometric(0.4, size=n)
    matches = int(np.searchsorted(np.cumsum(sizes), n)) + 1
    sizes = sizes[:matches]
    sizes[-1] -= int(sizes.sum()) - n
    first_fill = np.repeat(np.arange(matches), sizes)  # match index of every fill
    fill_no = np.arange(n) - np.repeat(np.cumsum(sizes) - sizes, sizes)  # 0 for a match's first fill
    # Bursty arrival of matches: they cluster around bursts, milliseconds to seconds wide.
    bursts = rng.uniform(0, US_PER_HOUR, size=max(1, matches // 30))
    offsets = rng.exponential(scale=rng.choice([2_000.0, 50_000.0, 800_000.0], size=matches))
    match_us = np.sort(
        (hour_start_us + np.clip(bursts[rng.integers(0, len(bursts), size=matches)] + offsets, 0, US_PER_HOUR - 1)).astype(np.int64)
    )
    # Taker side, persistent from match to match.
    flips = rng.random(matches) < 0.3
    match_sell = np.cumsum(flips) % 2 == 1
    # Mid price: a random walk of the log price over matches (heavy-tailed steps).
    steps = rng.standard_t(df=4, size=matches) * (stream.vol / np.sqrt(max(matches, 1)) / np.sqrt(2.0))
    mid_ticks = stream.price_ticks * np.exp(np.cumsum(steps))
    stream.price_ticks = float(mid_ticks[-1])
    # A buy lifts the ask (one tick over the mid), a sell hits the bid; later fills of the
    # same match go one or more levels deeper with some probability.
    touch = np.where(match_sell, np.floor(mid_ticks), np.floor(mid_ticks) + 1).astype(np.int64)
    deeper = np.where(fill_no > 0, (rng.random(n) < 0.35) * rng.integers(1, 4, size=n), 0)
    levels = np.cumsum(deeper)
    depth = levels - np.repeat(levels[np.cumsum(sizes) - sizes], sizes)  # levels below the touch
    sell = match_sell[first_fill]
    price_ticks = np.maximum(touch[first_fill] + np.where(sell, -depth, depth), 1)
    price_e8 = price_ticks * inst.tick_e8
    # Maker order sizes: heavy-tailed (Pareto, alpha 1.3) on the lot grid, often round.
    typical_lots = max(1.0, TYPICAL_NOTIONAL_USDT * E8 / float(price_e8[0]) * E8 / inst.lot_e8 / 4)
    lots = np.maximum(1, np.round((rng.pareto(1.3, size=n) + 0.2) * typical_lots)).astype(np.int64)
    coarse = np.where(rng.random(n) < 0.6, max(1, int(typical_lots // 10)), 1)
    lots = np.maximum(coarse, (lots // coarse) * coarse)
    trade_id = np.arange(stream.next_trade_id, stream.next_trade_id + n, dtype=np.int64)
    stream.next_trade_id += n
    exchange_us = match_us[first_fill]
    # The feed handler receives a match's fills together: one message (Kraken) or one per
    # fill a few microseconds apart (Binance).
    latency = rng.lognormal(mean=np.log(3_000), sigma=0.6, size=matches).astype(np.int64)
    per_fill = fill_no * 3 if inst.exchange == "binance" else 0
    received_us = exchange_us + latency[first_fill] + per_fill
    buyer_is_maker = sell
    # Out of order: some messages arrive after later trades.
    ooo = rng.random(n) < cfg.out_of_order_share
    received_us = received_us + np.where(ooo, rng.integers(500_000, 5_000_000, size=n), 0)
    # Late: some arrive hours after their exchange time (network partitions, replays).
    late = rng.random(n) < cfg.late_share
    received_us = received_us + np.where(late, rng.integers(US_PER_HOUR, 6 * US_PER_HOUR, size=n), 0)
    corrupt = np.where(rng.random(n) < cfg.malformed_share, rng.integers(1, 4, size=n), 0).astype(np.int8)
    trades = Trades(inst, trade_id, price_e8, lots * inst.lot_e8, buyer_is_maker, exchange_us, received_us, corrupt)
    # Duplicate deliveries: the same message again, a little later.
    dup = np.flatnonzero(rng.random(n) < cfg.duplicate_share)
    if len(dup):
        redelivered = received_us[dup] + rng.integers(1_000, 2_000_000, size=len(dup))
        again = [np.concatenate([a, a[dup]]) for a in (trade_id, price_e8, trades.qty_e8, buyer_is_maker, exchange_us)]
        trades = Trades(
            inst,
            again[0],
            again[1],
            again[2],
            again[3],
            again[4],
            np.concatenate([received_us, redelivered]),
            np.concatenate([corrupt, corrupt[dup]]),
        )
    return trades


def generate(cfg: FeedConfig, instruments: dict[tuple[str, str], Instrument]) -> Iterator[pa.Table]:
    """The raw messages of the feed in arrival order, one table per arrival hour."""
    rng = np.random.default_rng(cfg.seed)
    streams = []
    for i, (exchange, symbol) in enumerate((e, s) for e in cfg.exchanges for s in cfg.symbols):
        inst = instruments.get((exchange, symbol))
        if inst is None:
            raise ValueError(f"instrument {symbol} on {exchange} is not in the warm tier's instruments table")
        start_price, vol = MARKET[symbol]
        jitter = 1 + rng.normal(0, 0.0005)
        streams.append(_Stream(inst, round(start_price * jitter * E8 / inst.tick_e8), 1_000_000_000 + i * 37_000_000, vol))
    per_stream = np.full(len(streams), cfg.trades_per_hour // len(streams))
    per_stream[: cfg.trades_per_hour % len(streams)] += 1
    for stream, n in zip(streams, per_stream, strict=True):
        stream.next_trade_id += cfg.hours_before * int(n)  # each hour takes exactly n ids per stream
    start_us = _micros(cfg.start)
    pending: list[pa.Table] = []
    for h in range(cfg.hours):
        hour_start = start_us + h * US_PER_HOUR
        for stream, n in zip(streams, per_stream, strict=True):
            trades = _generate_hour(stream, hour_start, int(n), cfg, rng)
            pending.append(RENDERERS[stream.instrument.exchange](trades))
        # Deliver what has arrived by the end of this hour, in arrival order; the rest waits.
        table = pa.concat_tables(pending)
        if h < cfg.hours - 1:
            now_mask = pc.less(table["received_at"].cast(pa.int64()), hour_start + US_PER_HOUR)
            yield table.filter(now_mask).sort_by("received_at")
            pending = [table.filter(pc.invert(now_mask))]
        else:
            yield table.sort_by("received_at")


def _ingested_as_received(messages: pa.Table, earliest: datetime, latest: datetime) -> pa.Table:
    received = messages["received_at"]
    lo, hi = (pa.scalar(_micros(t), type=pa.int64()) for t in (earliest, latest))
    ingested = pc.min_element_wise(pc.max_element_wise(received.cast(pa.int64()), lo), hi)  # no kernel for timestamps
    return messages.append_column("ingested_at", ingested.cast(received.type))


INSERT_ROWS = 1_000_000  # rows per insert: one ClickHouse insert block through the view chain


def simulate(client: Client, cfg: FeedConfig) -> int:
    """Inserts the feed into trades_raw; returns the number of messages written.

    Hours are gathered into inserts of up to INSERT_ROWS rows: each insert runs the whole
    chain of materialized views, so a month at a few trades an hour is a few inserts, not
    720, while a busy hour is still cut into bounded blocks."""
    instruments = load_instruments(client)
    pending: list[pa.Table] = []
    written, pending_rows = 0, 0

    def flush() -> int:
        if not pending_rows:
            return 0
        for batch in pa.concat_tables(pending).combine_chunks().to_batches(max_chunksize=INSERT_ROWS):
            client.insert_arrow("trades_raw", pa.Table.from_batches([batch]))
        pending.clear()
        return pending_rows

    for hour in generate(cfg, instruments):
        if cfg.ingested_from is not None:
            hour = _ingested_as_received(hour, cfg.ingested_from, datetime.now(UTC))
        pending.append(hour)
        pending_rows += hour.num_rows
        if pending_rows >= INSERT_ROWS:
            written += flush()
            pending_rows = 0
    return written + flush()


def parse_start(value: str) -> datetime:
    """An ISO date or date-time; without an offset it is read as UTC."""
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)
