"""The browser dashboard: a live feed of invocations, their details, replay, functions and connection.

Serve it with `mount_dashboard(app, sources)`, `sources` a `DashboardSources`.
"""

from devserver.ui.dashboard.api import Dashboard, mount_dashboard
from devserver.ui.dashboard.sources import DashboardSources

__all__ = ["Dashboard", "DashboardSources", "mount_dashboard"]
