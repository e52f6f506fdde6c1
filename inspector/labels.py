"""Names readers see for the codes the data carries (sub-items, energy types, building types,
alert rules, states), marked for the catalog with :func:`inspector.i18n.N_`.

The codes stay what the data, the API and the logs use (``01A00``, ``electricity``,
``meter_offline``); only what a person reads is translated, at rendering time. The
sub-item names are those of the 2008 public-building sub-item metering guide
(《国家机关办公建筑和大型公共建筑能耗监测系统分项能耗数据采集技术导则》).
"""

from __future__ import annotations

from inspector.i18n import N_

SUBITEMS = {"01A00": N_("lighting and sockets"), "01B00": N_("HVAC"),
            "01C00": N_("power"), "01D00": N_("special"),
            "": N_("not sub-metered (total − sub-items)")}
# every category a meter may carry, for the meters table: the total, the four sub-items
# and the guide's second level (01A10 照明与插座 … 01D60 其他)
CATEGORIES = {"01000": N_("total electricity"),
              **{code: name for code, name in SUBITEMS.items() if code},
              "01A10": N_("lighting and sockets in rooms"),
              "01A20": N_("corridor and emergency lighting"),
              "01A30": N_("outdoor landscape lighting"),
              "01B10": N_("chiller and heating plant"), "01B20": N_("HVAC terminals"),
              "01C10": N_("lifts"), "01C20": N_("water pumps"), "01C30": N_("fans"),
              "01D10": N_("data centre"), "01D20": N_("laundry"),
              "01D30": N_("kitchen and canteen"), "01D40": N_("swimming pool"),
              "01D50": N_("gym"), "01D60": N_("other special uses")}
ENERGY_TYPES = {"electricity": N_("electricity"), "water": N_("water"), "gas": N_("gas"),
                "heat": N_("heat"), "cooling": N_("cooling"), "steam": N_("steam")}
BUILDING_TYPES = {"office": N_("office"), "hospital": N_("hospital"), "school": N_("school"),
                  "retail": N_("retail"), "hotel": N_("hotel"),
                  "government": N_("government office"), "other": N_("other")}
RULES = {"meter_offline": N_("meter offline"), "gateway_offline": N_("gateway offline"),
         "counter_backwards": N_("counter went backwards"),
         "implausible_jump": N_("implausible jump"), "flatline": N_("flat readings"),
         "completeness": N_("data completeness below target"),
         "boiler_efficiency": N_("boiler efficiency below the limit"),
         "boiler_efficiency_indirect": N_("boiler efficiency below the limit (indirect method)"),
         "quota_early_warning": N_("quota early warning"),
         "quota_exceeded": N_("quota exceeded"),
         "quota_over_pro_rata": N_("above the pro-rated quota"),
         "budget": N_("energy budget exhausted")}
SEVERITIES = {"critical": N_("critical"), "warning": N_("warning"), "info": N_("info")}
ALERT_STATES = {"pending": N_("pending"), "firing": N_("firing"), "resolved": N_("resolved")}
QUOTA_STATES = {"ok": N_("within quota"),
                "early_warning": N_("early warning: projected above the quota"),
                "exceeded": N_("quota exceeded"),
                "incomplete": N_("no verdict: the year-to-date lacks readings before the "
                                 "period")}
# the energy domain's remarks on a line of the report, by their exact English text
# (energy/ holds no language); a remark not listed here is shown as it comes
ENERGY_NOTES = {"water is not an energy in 综合能耗 (GB/T 2589-2020)":
                N_("water is not an energy in 综合能耗 (GB/T 2589-2020)")}
# time-of-use bands of a tariff (energy/tariff.py)
TARIFF_BANDS = {"sharp": N_("sharp (TOU band)"), "peak": N_("peak (TOU band)"),
                "flat": N_("flat (TOU band)"), "valley": N_("valley (TOU band)"),
                "deep_valley": N_("deep valley (TOU band)"), "all": N_("single price")}
