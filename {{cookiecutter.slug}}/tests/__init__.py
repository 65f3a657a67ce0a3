"""The service's tests: real backing services, real processes."""
