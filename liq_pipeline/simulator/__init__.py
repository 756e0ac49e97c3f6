"""Local simulator of the Kwery and Newhedge liquidation APIs (contracts in docs/api/).

``Simulator`` serves ``GET /v1/liquidations`` (Kwery) and
``GET /api/v2/metrics/liquidations/{metric}`` (Newhedge) on one root URL, from the deterministic
data in `liq_pipeline.simulator.data`, with switchable faults. Demo credentials: Kwery keys
``demo-free-key``, ``demo-pro-key``, ``demo-business-key``; Newhedge token
``demo0newhedge0token00000``. Command line: ``liq-simulator`` or
``python -m liq_pipeline.simulator``.
"""

from liq_pipeline.simulator.faults import FAULT_KINDS
from liq_pipeline.simulator.kwery import DEFAULT_TIERS, DEMO_KWERY_KEYS, KweryTier
from liq_pipeline.simulator.newhedge import DEMO_NEWHEDGE_TOKEN
from liq_pipeline.simulator.server import Simulator

__all__ = [
    "DEFAULT_TIERS",
    "DEMO_KWERY_KEYS",
    "DEMO_NEWHEDGE_TOKEN",
    "FAULT_KINDS",
    "KweryTier",
    "Simulator",
]
