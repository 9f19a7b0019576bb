"""Model-quality benchmarks on the real data sets under `../shared/data` (see docs/benchmarks.md, "Real data")."""
