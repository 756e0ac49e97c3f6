"""PNG charts for materialization metadata, embedded as data URIs the Dagster UI renders.

Drawn on matplotlib's Agg canvas through `Figure` (no pyplot: no global state, no GUI backend,
safe in any thread). matplotlib is imported when a chart is drawn, not when the definitions load:
the import costs ~0.8 s, which every CLI command, code server and sensor tick would otherwise pay.
"""

import base64
import io
from typing import Any

import numpy as np
import pandas as pd

from liq_pipeline.contract import EXCHANGES

# 1000 x 400 px: readable in the UI's metadata panel, ~30-60 KB as PNG (limit 150 KB).
FIGSIZE = (10.0, 4.0)
DPI = 100
# Liquidation-chart convention: long liquidations (forced selling) red, shorts (buying) green.
SIDE_COLORS = {"long": "#d62728", "short": "#2ca02c"}
EXCHANGE_COLORS = dict(zip(EXCHANGES, ("#f0b90b", "#1f77b4", "#7f7f7f", "#111111"), strict=True))


def markdown_image(png: bytes, alt: str) -> str:
    """Markdown of an inline PNG (a base64 data URI): `dg.MetadataValue.md` renders it."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


def usd_axis_label(value: float, _pos: object = None) -> str:
    """Tick labels of a signed USD axis: magnitudes, `$1.5M`, `$250K` (sign shown by the side)."""
    magnitude = abs(value)
    if magnitude >= 1e9:
        return f"${magnitude / 1e9:g}B"
    if magnitude >= 1e6:
        return f"${magnitude / 1e6:g}M"
    if magnitude >= 1e3:
        return f"${magnitude / 1e3:g}K"
    return f"${magnitude:g}"


def _figure() -> tuple[Any, Any]:
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    # Fixed margins: a constrained layout measures every label first (~0.5 s a chart).
    fig.subplots_adjust(left=0.085, right=0.975, top=0.92, bottom=0.16)
    ax = fig.add_subplot()
    ax.yaxis.set_major_formatter(FuncFormatter(usd_axis_label))
    ax.axhline(0, color="black", linewidth=0.8)
    ax.grid(axis="y", linewidth=0.3, alpha=0.6)
    return fig, ax


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def totals_chart(window: pd.DataFrame, title: str) -> bytes:
    """Stacked daily bars: each exchange's long USD up, its short USD down.

    `window` has one row per day to show (`day` plus the `{exchange}_{side}_usd` columns of the
    totals table); a day without totals (NaN) is left empty rather than drawn as zero.
    """
    fig, ax = _figure()
    x = np.arange(len(window))
    for side, sign, alpha in (("long", 1.0, 1.0), ("short", -1.0, 0.55)):
        base = np.zeros(len(window))
        for exchange in EXCHANGES:
            values = window[f"{exchange}_{side}_usd"].to_numpy(dtype="float64")
            height = sign * np.nan_to_num(values)
            label = exchange if side == "long" else None
            _bars(ax, x, base, height, color=EXCHANGE_COLORS[exchange], alpha=alpha, label=label)
            base += height
    ax.autoscale_view()
    ax.set_xticks(x, [f"{d:%m-%d}" for d in window["day"]], rotation=60, fontsize=7)
    ax.set_xlim(-0.6, len(window) - 0.4)
    ax.set_ylabel("shorts ↓   USD   longs ↑")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", fontsize=8, ncols=len(EXCHANGES), frameon=False)
    return _png(fig)


def bars_chart(bars: pd.DataFrame, cascades: pd.DataFrame, day: pd.Timestamp, title: str) -> bytes:
    """One day's liquidated USD per minute (longs up, shorts down), its cascades shaded.

    Each side is one step polygon over the day's 1,440 minutes and the cascades one collection
    per side: a bar patch per minute costs seconds to draw on a busy day, a step patch (`stairs`)
    half a second just to compute its limits.
    """
    fig, ax = _figure()
    day = pd.Timestamp(day)
    edges = np.arange(1441)
    for side, sign in (("long", 1.0), ("short", -1.0)):
        of_side = bars[bars["side"] == side]
        minutes = _minute_of_day(of_side["bucket_start"], day).astype("int64")
        per_minute = np.bincount(minutes, weights=of_side["usd_value"], minlength=1440)[:1440]
        heights = sign * np.append(per_minute, per_minute[-1])
        ax.fill_between(edges, heights, step="post", color=SIDE_COLORS[side], lw=0, label=side)
    low, high = ax.get_ylim()
    for side, (bottom, top) in (("long", (0.0, high)), ("short", (low, 0.0))):
        of_side = cascades[cascades["side"] == side]
        starts = _minute_of_day(of_side["start"], day, fractional=True)
        ends = _minute_of_day(of_side["end"], day, fractional=True)
        # At least a minute wide, so a cascade of a few seconds stays visible.
        spans = [(lo, max(hi - lo, 1.0)) for lo, hi in zip(starts, ends, strict=True)]
        if spans:
            ax.broken_barh(
                spans,
                (bottom, top - bottom),
                color=SIDE_COLORS[side],
                alpha=0.15,
                zorder=0,
                label=f"{side} cascades ({len(spans)})",
            )
    ax.set_ylim(low, high)
    ax.set_xlim(0, 1440)
    ax.set_xticks(range(0, 1441, 180), [f"{h:02d}:00" for h in range(0, 25, 3)])
    ax.set_xlabel("UTC")
    ax.set_ylabel("shorts ↓   USD per minute   longs ↑")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper right", fontsize=8, ncols=4, frameon=False)
    return _png(fig)


def _bars(ax: Any, x: np.ndarray, bottom: np.ndarray, height: np.ndarray, **style: Any) -> None:
    """Bars 0.8 wide as ONE polygon collection (`ax.bar` adds a patch per bar: ~4 ms each)."""
    from matplotlib.collections import PolyCollection

    left, right, top = x - 0.4, x + 0.4, bottom + height
    corners = np.stack(
        [
            np.column_stack([left, bottom]),
            np.column_stack([left, top]),
            np.column_stack([right, top]),
            np.column_stack([right, bottom]),
        ],
        axis=1,
    )
    ax.add_collection(PolyCollection(list(corners), linewidths=0, **style))


def _minute_of_day(times: pd.Series, day: pd.Timestamp, fractional: bool = False) -> np.ndarray:
    since = (times - day).dt.total_seconds().to_numpy(dtype="float64") / 60.0
    return since if fractional else np.floor(since)
