"""Benchmarks that print figures (never assert them): `shadowline bench append|replication|
failover|watchdog|cli`.

A package of its own beside `shadowline`: the product never imports it (the `shadowline bench`
commands load it by name), and its extra dependencies come with `pip install 'shadowline[bench]'`.
It starts real instances and watchdogs through the product's harness (shadowline.harness).
"""
