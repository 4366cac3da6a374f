"""`lakehub cost`: the monthly cost of a configuration, estimated from the generated templates.

The model is in `lakehub.cost.model`, the prices (each with its source) in `prices.yaml` beside it.
"""

from lakehub.cost.model import PRICES_FILE, Profile, estimate, parse_cron, weekly_hours

__all__ = ["PRICES_FILE", "Profile", "estimate", "parse_cron", "weekly_hours"]
