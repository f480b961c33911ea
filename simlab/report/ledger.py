"""The data-accounting ledger of a survey scenario as a report table (the ``_ledger`` partial).

A survey run records its ledger (rows read -> respondents used, per wave, with survey times;
:func:`simlab.survey.ledger.build_ledger`) in the config the store keeps with every run.
The main report's templates call ``{% include "_ledger.md.j2" %}`` inside their per-scenario
loop; the partial reads the section through the ``survey_ledger`` filter, so a simulated
scenario (no ledger) shows nothing.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from simlab.survey.design import DESIGN_NOTES
from simlab.survey.ledger import ledger_table


def ledger_context(section: Any) -> dict[str, Any] | None:
    """The partial's context from a report section (a dict with ``ledger``, or ``config``
    as a dict or JSON text holding one), or from a config / ledger dict; None without one."""
    ledger = _find(section)
    if not ledger:
        return None
    header, rows = ledger_table(ledger, time_head="survey time")
    config = section.get("config") if isinstance(section, Mapping) else None
    config = json.loads(config) if isinstance(config, str) else config
    extra = list((config or {}).get("data_warnings", [])) if isinstance(config, Mapping) else []
    warnings = list(dict.fromkeys([*ledger.get("warnings", []), *extra]))
    return {"header": header, "rows": rows, "warnings": warnings,
            "lost": f"{ledger['lost_share']:.1%}", "max_lost": f"{ledger['max_lost']:.0%}",
            "design": ledger["design"], "design_note": DESIGN_NOTES.get(ledger["design"], ""),
            "support": ledger["support"], "query": ledger["query"],
            "min_query": ledger["min_query"]}


def _find(obj: Any) -> dict[str, Any] | None:
    if isinstance(obj, str):
        try:
            obj = json.loads(obj)
        except ValueError:
            return None
    if not isinstance(obj, Mapping):
        return None
    if "waves" in obj and "total" in obj:
        return dict(obj)
    for key in ("ledger", "config"):
        if key in obj:
            found = _find(obj[key])
            if found:
                return found
    return None


__all__ = ["ledger_context"]
