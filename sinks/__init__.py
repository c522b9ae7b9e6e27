"""Warehouse adapters: ClickHouse schema, migrations and idempotent batch writes."""
