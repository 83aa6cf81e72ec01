"""Trade surveillance: rules over our own orders and fills that flag wash trades,
spoofing, layering, marking the close and excessive order-to-trade ratios.

```python
from sapphire.compliance.surveillance import SurveillanceConfig, surveil

alerts = surveil(store, run_ids=["paper-1", "live-2"], config=SurveillanceConfig.load("s.yaml"))
for alert in alerts:
    print(alert.rule, alert.severity, alert.client_order_ids, alert.explanation)
```

On demand, `surveil` reads the store; in a running node, `SurveillanceMonitor` takes the
order events one by one and raises the same alerts. See docs/surveillance.md.
"""

from sapphire.compliance.surveillance.alerts import (
    RISK_EVENT_KIND,
    Alert,
    Rule,
    Severity,
    iso_time,
)
from sapphire.compliance.surveillance.batch import order_events, surveil, surveil_events
from sapphire.compliance.surveillance.config import (
    LayeringConfig,
    MarkingCloseConfig,
    OrderToTradeConfig,
    SpoofingConfig,
    SurveillanceConfig,
    WashConfig,
)
from sapphire.compliance.surveillance.monitor import SurveillanceMonitor

__all__ = [
    "RISK_EVENT_KIND",
    "Alert",
    "LayeringConfig",
    "MarkingCloseConfig",
    "OrderToTradeConfig",
    "Rule",
    "Severity",
    "SpoofingConfig",
    "SurveillanceConfig",
    "SurveillanceMonitor",
    "WashConfig",
    "iso_time",
    "order_events",
    "surveil",
    "surveil_events",
]
