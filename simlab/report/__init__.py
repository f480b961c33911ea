"""Report layer: comparison reports (HTML + Markdown + figures) from a results store."""
from simlab.report.report import build_report

__all__ = ["build_report"]
