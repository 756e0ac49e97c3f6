"""The one daily partitioning scheme every asset shares: UTC calendar days, keys `YYYY-MM-DD`."""

import datetime as dt

import dagster as dg
import pandas as pd

DEFAULT_START_DATE = "2020-01-01"


def parse_start_date(value: str) -> str:
    """Validate a `LIQ_START_DATE` value and return it normalised to `YYYY-MM-DD`."""
    try:
        day = dt.date.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(
            f"LIQ_START_DATE must be a UTC calendar day written YYYY-MM-DD, got {value!r}"
        ) from None
    if day > dt.datetime.now(dt.UTC).date():
        raise ValueError(f"LIQ_START_DATE {day} is in the future; no partition would exist yet")
    return day.isoformat()


def daily_partitions(start_date: str = DEFAULT_START_DATE) -> dg.DailyPartitionsDefinition:
    # end_offset=0: today's partition only appears once the UTC day is complete.
    return dg.DailyPartitionsDefinition(start_date=parse_start_date(start_date), timezone="UTC")


def utc_days(start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    """Midnights (UTC) of every day in `[start, end)`; the partition windows are whole days."""
    days = []
    day = start.astimezone(dt.UTC)
    while day < end:
        days.append(day)
        day += dt.timedelta(days=1)
    return days


def window_days(start: dt.datetime, end: dt.datetime) -> pd.DatetimeIndex:
    """The UTC days of `[start, end)` as naive midnights, the dtype of the `day` columns."""
    first = pd.Timestamp(start).tz_convert("UTC").tz_localize(None)
    last = pd.Timestamp(end).tz_convert("UTC").tz_localize(None)
    return pd.date_range(first, last, freq="D", inclusive="left", unit="s")


def partition_key(day: dt.date) -> str:
    """The partition key of a UTC day (a date, a UTC midnight or a naive `day` value)."""
    return day.strftime("%Y-%m-%d")


def run_window(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> dg.TimeWindow:
    """The run's UTC window; a reversed range fails at once instead of fetching nothing."""
    keys = context.partition_key_range
    if keys.start > keys.end:
        raise dg.Failure(
            description=(
                f"the partition range {keys.start}...{keys.end} is reversed: give the first day "
                f"first, e.g. --partition-range {keys.end}...{keys.start}"
            ),
            allow_retries=False,
        )
    return context.partition_time_window
