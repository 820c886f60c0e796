"""What the developer sees: the dashboard, the terminal lines, the invocation records."""
