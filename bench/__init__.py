"""Benchmark harness: our mock vs WireMock vs Prism under one wrk workload (`python -m bench`)."""
