"""What the dashboards show: panel definitions (SQL over the query surface) and renderers."""
