"""Benchmarks: reproducible measurements of parcours on real public data (scripts; the engine never imports them)."""
