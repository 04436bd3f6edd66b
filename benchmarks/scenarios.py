"""The scenarios by name: S1-S6 of design section 6, plus ``proxy`` (the proxy's own cost).

One module per scenario (``s1_overhead`` ... ``proxy_cost``) on the shared harness in
:mod:`.harness`; this module only registers them, so ``python -m benchmarks`` and the
tests find every scenario, its aliases, and the harness names in one place.
"""

from __future__ import annotations

from .harness import Case, Context, Record, Scenario, Settings, run_scenario
from .proxy_cost import ProxyCost
from .s1_overhead import Overhead
from .s2_steady import Steady
from .s3_expiry import ExpiryStorm
from .s4_cold import Cold
from .s5_outage import Outage
from .s6_e2e import EndToEnd

__all__ = [
    "ALIASES",
    "SCENARIOS",
    "Case",
    "Context",
    "Record",
    "Scenario",
    "Settings",
    "run_scenario",
]

SCENARIOS: dict[str, Scenario] = {
    sc.name: sc
    for sc in (Overhead(), Steady(), ExpiryStorm(), Cold(), Outage(), EndToEnd(), ProxyCost())
}
ALIASES = {
    "overhead": "s1",
    "steady": "s2",
    "expiry": "s3",
    "storm": "s3",
    "cold": "s4",
    "outage": "s5",
    "e2e": "s6",
}
