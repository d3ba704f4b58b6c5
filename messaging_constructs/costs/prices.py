"""The dated price table the cost model reads: ``prices.toml`` beside this module, or a table of your own."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import date
from pathlib import Path

DEFAULT_TABLE = Path(__file__).with_name("prices.toml")


@dataclass(frozen=True)
class Price:
    """One list price: ``usd`` per ``unit``, read from ``source``, last checked on ``read``; ``note`` says how sure it is."""

    key: str
    usd: float
    unit: str
    source: str
    read: date
    note: str = ""


@dataclass(frozen=True)
class PriceTable:
    """Prices by key (``"sqs.request"``, ``"msk.kafka.t3.small"``...) for one region and currency."""

    region: str
    currency: str
    prices: dict[str, Price]

    @classmethod
    def load(cls, path: str | Path = DEFAULT_TABLE) -> PriceTable:
        """Read a table in the format of ``prices.toml``; every price must name its source page and the day it was read."""
        data = tomllib.loads(Path(path).read_text())
        prices = {}
        for key, entry in data["prices"].items():
            missing = {"usd", "unit", "source", "read"} - entry.keys()
            if missing:
                raise ValueError(f"{path}: price {key!r} lacks {sorted(missing)}")
            if not str(entry["source"]).startswith("https://"):
                raise ValueError(f"{path}: price {key!r} has no source page")
            prices[key] = Price(key, float(entry["usd"]), entry["unit"], entry["source"], date.fromisoformat(str(entry["read"])), entry.get("note", ""))
        return cls(data["region"], data["currency"], prices)

    def __getitem__(self, key: str) -> Price:
        try:
            return self.prices[key]
        except KeyError:
            raise KeyError(f"no price {key!r} in the price table: add it (with its source page and the day read)") from None

    def __contains__(self, key: str) -> bool:
        return key in self.prices

    @property
    def oldest(self) -> date:
        """The day the least recently read price was read."""
        return min(price.read for price in self.prices.values())
