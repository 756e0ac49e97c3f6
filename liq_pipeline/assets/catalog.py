"""What the Dagster catalog says about every asset: owners, tags and kinds, defined once."""

from typing import Literal

OWNERS = ("team:data-platform",)

Source = Literal["kwery", "newhedge", "warehouse"]


def catalog_tags(source: Source) -> dict[str, str]:
    """`source` is what the asset reads; reading a paid API costs credits, the warehouse nothing."""
    return {
        "domain": "liquidations",
        "source": source,
        "cost": "free" if source == "warehouse" else "paid-api",
    }


def asset_kinds(storage: str | None) -> set[str]:
    """python/pandas plus where the data lives (`sqlite`/`postgresql`, see warehouse_kind)."""
    return {"python", "pandas", *([storage] if storage else [])}
