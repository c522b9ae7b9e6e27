"""Where the shared perturbed workload lives in event time (nothing else in the test database
falls inside this window)."""

from datetime import UTC, datetime, timedelta

START = datetime(2026, 11, 16, 0, 0, tzinfo=UTC)
END = START + timedelta(hours=7)   # the workload spans 6 h
