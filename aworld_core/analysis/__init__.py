"""DuckDB analysis of committed trajectories: views, ad-hoc SQL, canned reports (docs/analysis.md)."""

from aworld_core.analysis.duck import VIEWS, QueryError, connect, query, sql
from aworld_core.analysis.reports import REPORTS, ReportResult, resolve_names, run_report, run_reports

__all__ = ["REPORTS", "VIEWS", "QueryError", "ReportResult", "connect", "query", "resolve_names",
           "run_report", "run_reports", "sql"]
