"""Report layer: comparison reports (HTML + Markdown + figures) from a results store."""
from simlab.report.report import build_report
from simlab.report.store_report import report_from_store

__all__ = ["build_report", "report_from_store"]
