"""Contract tests for the SD3.5 API: one suite, three targets (embedded mock, a URL, live)."""
