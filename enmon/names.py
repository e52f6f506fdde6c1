"""Names people read for the codes the data carries: sub-items, energy types, alert rules,
severities and label keys, marked for the core catalog (``enmon/locale``).

The codes stay what the data, the API and the logs use (``01A00``, ``electricity``,
``meter_offline``); only what a person reads is translated, when a notification or a CLI
line is written. The sub-item names are those of the 2008 public-building sub-item
metering guide (《国家机关办公建筑和大型公共建筑能耗监测系统分项能耗数据采集技术导则》),
the same as the inspector's (``inspector/labels.py``), which the rule engine may not import.
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
SEVERITIES = {"critical": N_("critical"), "warning": N_("warning"), "info": N_("info")}
STATES = {"pending": N_("pending"), "firing": N_("firing"), "resolved": N_("resolved"),
          "inactive": N_("inactive"), "acknowledged": N_("acknowledged")}
LABEL_KEYS = {"site": N_("site"), "building": N_("building"), "gateway": N_("gateway"),
              "device": N_("meter"), "quantity": N_("quantity"), "boiler": N_("boiler"),
              "budget": N_("budget"), "service": N_("service"),
              "category": N_("sub-item"), "energy_type": N_("energy type")}


def name(table: dict[str, str], code: str, lang: Lang) -> str:
    """The reader's name of ``code`` in ``table``; an unknown code (a threshold rule the
    user named, a label we do not know) is shown as it is."""
    msgid = table.get(code)
    return gettext_for(lang)(msgid) if msgid else code


def category(code: str, lang: Lang) -> str:
    """``01A00`` → ``照明插座用电 (01A00)``: the name with the code the drawings use."""
    return f"{name(CATEGORIES, code, lang)} ({code})" if code in CATEGORIES else code
