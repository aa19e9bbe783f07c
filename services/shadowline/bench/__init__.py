"""Benchmarks that print figures (never assert them): `shadowline bench append`."""
