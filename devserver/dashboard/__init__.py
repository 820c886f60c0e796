"""The browser dashboard: a live feed of invocations, their details, replay, functions and connection.

Mount it with `app.include_router(create_dashboard_router(sources))`, `sources` a `DashboardSources`.
"""

from devserver.dashboard.api import create_dashboard_router
from devserver.dashboard.sources import DashboardSources

__all__ = ["DashboardSources", "create_dashboard_router"]
