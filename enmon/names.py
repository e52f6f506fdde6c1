"""Names people read for the codes the data carries — sub-items, energy types, building
types, quantities, alert rules, severities, states, label keys, quota states, tariff bands —
marked for the core catalog (``enmon/locale``).

The one vocabulary of names: notifications, the CLI, the alert summaries
(``enmon.summaries``) and the inspector (``inspector/labels.py`` takes its tables from here,
and ``inspector.i18n`` translates them from the core catalog) all read these tables, so a
code has one name in every place a person sees it. The codes stay what the data, the API
and the logs use (``01A00``, ``electricity``, ``meter_offline``); only what a person reads is
translated, when it is shown. The sub-item names are those of the 2008 public-building
sub-item metering guide (《国家机关办公建筑和大型公共建筑能耗监测系统分项能耗数据采集技术导则》).
"""

from __future__ import annotations

from enmon.i18n import N_, Lang, gettext_for

CATEGORIES = {"01000": N_("total electricity"),
              "01A00": N_("lighting and sockets"), "01B00": N_("HVAC"),
              "01C00": N_("power"), "01D00": N_("special"),
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
RULES = {"meter_offline": N_("meter offline"), "gateway_offline": N_("gateway offline"),
         "counter_backwards": N_("counter went backwards"),
         "implausible_jump": N_("implausible jump"), "flatline": N_("flat readings"),
         "completeness": N_("data completeness below target"),
         "boiler_efficiency": N_("boiler efficiency below the limit"),
         "boiler_efficiency_indirect": N_("boiler efficiency below the limit (indirect method)"),
         "boiler_implausible": N_("boiler readings implausible"),
         "quota_early_warning": N_("quota early warning"),
         "quota_exceeded": N_("quota exceeded"),
         "quota_over_pro_rata": N_("above the pro-rated quota"),
         "budget": N_("energy budget exhausted"),
         "submeter_balance": N_("sub-item meters do not add up to the main meter"),
         "rules_degraded": N_("rule engine degraded")}
BUILDING_TYPES = {"office": N_("office"), "hospital": N_("hospital"), "school": N_("school"),
                  "retail": N_("retail"), "hotel": N_("hotel"),
                  "government": N_("government office"), "other": N_("other")}
# the canonical quantities of the wire contract (enmon/quantities.py), as a reader names them
QUANTITIES = {
    "active_energy_import_kwh": N_("active energy (import)"),
    "active_energy_export_kwh": N_("active energy (export)"),
    "active_energy_total_kwh": N_("active energy (import + export)"),
    "reactive_energy_import_kvarh": N_("reactive energy (import)"),
    "reactive_energy_export_kvarh": N_("reactive energy (export)"),
    "active_power_kw": N_("active power"), "active_power_l1_kw": N_("active power L1"),
    "active_power_l2_kw": N_("active power L2"), "active_power_l3_kw": N_("active power L3"),
    "reactive_power_kvar": N_("reactive power"), "apparent_power_kva": N_("apparent power"),
    "power_factor": N_("power factor"), "demand_kw": N_("demand"),
    "max_demand_kw": N_("maximum demand"),
    "voltage_l1_v": N_("voltage L1"), "voltage_l2_v": N_("voltage L2"),
    "voltage_l3_v": N_("voltage L3"), "voltage_l1_l2_v": N_("line voltage L1-L2"),
    "voltage_l2_l3_v": N_("line voltage L2-L3"), "voltage_l3_l1_v": N_("line voltage L3-L1"),
    "current_l1_a": N_("current L1"), "current_l2_a": N_("current L2"),
    "current_l3_a": N_("current L3"), "current_n_a": N_("neutral current"),
    "frequency_hz": N_("frequency"),
    "water_volume_m3": N_("water volume"), "water_flow_m3_h": N_("water flow"),
    "gas_volume_m3": N_("gas volume"), "gas_flow_m3_h": N_("gas flow"),
    "gas_pressure_kpa": N_("gas pressure"), "gas_temp_c": N_("gas temperature"),
    "heat_energy_gj": N_("heat energy"), "cooling_energy_gj": N_("cooling energy"),
    "heat_power_kw": N_("thermal power"), "supply_temp_c": N_("supply temperature"),
    "return_temp_c": N_("return temperature"),
    "steam_mass_t": N_("steam mass"), "steam_flow_t_h": N_("steam flow"),
    "steam_pressure_mpa": N_("steam pressure"), "steam_temp_c": N_("steam temperature"),
    "coal_mass_t": N_("raw coal consumed"), "product_output_t": N_("product output"),
    "feedwater_temp_c": N_("feedwater temperature"), "flue_o2_pct": N_("flue gas O2"),
    "flue_co_ppm": N_("flue gas CO"), "flue_temp_c": N_("flue gas temperature"),
    "combustion_air_temp_c": N_("combustion air temperature"),
    "boiler_load_pct": N_("boiler load"), "outdoor_temp_c": N_("outdoor temperature"),
    "indoor_temp_c": N_("indoor temperature"), "relative_humidity_pct": N_("relative humidity"),
    "breaker_closed": N_("breaker closed"), "pump_running": N_("pump running"),
    "alarm_active": N_("alarm contact active")}
SEVERITIES = {"critical": N_("critical"), "warning": N_("warning"), "info": N_("info")}
STATES = {"pending": N_("pending"), "firing": N_("firing"), "resolved": N_("resolved"),
          "inactive": N_("inactive"), "acknowledged": N_("acknowledged")}
LABEL_KEYS = {"site": N_("site"), "building": N_("building"), "gateway": N_("gateway"),
              "device": N_("meter"), "quantity": N_("quantity"), "boiler": N_("boiler"),
              "budget": N_("budget"), "service": N_("service"),
              "category": N_("sub-item"), "energy_type": N_("energy type")}
QUOTA_STATES = {"ok": N_("within quota"),
                "early_warning": N_("early warning: projected above the quota"),
                "exceeded": N_("quota exceeded"),
                "incomplete": N_("no verdict: the year-to-date lacks readings before the "
                                 "period")}
# time-of-use bands of a tariff (energy/tariff.py)
TARIFF_BANDS = {"sharp": N_("sharp (TOU band)"), "peak": N_("peak (TOU band)"),
                "flat": N_("flat (TOU band)"), "valley": N_("valley (TOU band)"),
                "deep_valley": N_("deep valley (TOU band)"), "all": N_("single price")}
# a notification's row in the rules outbox (rules/outbox.py)
OUTBOX_STATES = {"pending": N_("waiting to be sent"), "dead": N_("gave up")}
# every table of names, for the catalogs that translate them (inspector.i18n)
TABLES = (CATEGORIES, ENERGY_TYPES, BUILDING_TYPES, QUANTITIES, RULES, SEVERITIES, STATES,
          LABEL_KEYS, QUOTA_STATES, TARIFF_BANDS, OUTBOX_STATES)


def name(table: dict[str, str], code: str, lang: Lang) -> str:
    """The reader's name of ``code`` in ``table``; an unknown code (a threshold rule the
    user named, a label we do not know) is shown as it is."""
    msgid = table.get(code)
    return gettext_for(lang)(msgid) if msgid else code


def category(code: str, lang: Lang) -> str:
    """``01A00`` → ``照明插座用电 (01A00)``: the name with the code the drawings use."""
    return f"{name(CATEGORIES, code, lang)} ({code})" if code in CATEGORIES else code


def quantity(code: str, lang: Lang) -> str:
    """``active_power_kw`` → ``有功功率``: a quantity of the vocabulary by its name (an
    unknown one as it is)."""
    return name(QUANTITIES, code, lang)


def msgids() -> set[str]:
    """Every name of every table: what the core catalog translates for every surface."""
    return {msgid for table in TABLES for msgid in table.values()}
