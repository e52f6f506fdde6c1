"""Names readers see for the codes the data carries (sub-items, energy types, building types,
alert rules, states), as the inspector's pages and exports look them up.

The names themselves are the core vocabulary's (``enmon/names.py``), translated in the core
catalog (``enmon/locale``; ``inspector.i18n`` reads it beside the inspector's own), so a code
has one name in the console, the report, a notification and the CLI. Defined here, once,
are only the report's own words: the "not sub-metered" line and the energy domain's
remarks. The codes stay what the data, the API and the logs use (``01A00``,
``electricity``, ``meter_offline``); only what a person reads is translated, at rendering
time.
"""

from __future__ import annotations

from enmon import names
from inspector.i18n import N_

# the four first-level sub-items of the report's table, and what no sub-item meter measured
SUBITEMS = {**{code: names.CATEGORIES[code] for code in ("01A00", "01B00", "01C00", "01D00")},
            "": N_("not sub-metered (total − sub-items)")}
# every category a meter may carry, for the meters table: the total, the four sub-items
# and the guide's second level (01A10 照明与插座 … 01D60 其他)
CATEGORIES = names.CATEGORIES
ENERGY_TYPES = names.ENERGY_TYPES
BUILDING_TYPES = names.BUILDING_TYPES
RULES = names.RULES
SEVERITIES = names.SEVERITIES
# the states an alert episode shows (acknowledged is a column of its own)
ALERT_STATES = {code: names.STATES[code] for code in ("pending", "firing", "resolved")}
QUOTA_STATES = names.QUOTA_STATES
# the energy domain's remarks on a line of the report, by their exact English text
# (energy/ holds no language); a remark not listed here is shown as it comes
ENERGY_NOTES = {"water is not an energy in 综合能耗 (GB/T 2589-2020)":
                N_("water is not an energy in 综合能耗 (GB/T 2589-2020)")}
# time-of-use bands of a tariff (energy/tariff.py)
TARIFF_BANDS = names.TARIFF_BANDS
