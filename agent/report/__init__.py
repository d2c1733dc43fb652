"""`ensnas report RUN`: one self-contained HTML page of a search (data → sections → page)."""
from agent.report.page import REPORT_NAME, open_store, refresh_report, render, write_report

__all__ = ["REPORT_NAME", "open_store", "refresh_report", "render", "write_report"]
