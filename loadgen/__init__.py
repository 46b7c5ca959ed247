"""Load generator and benchmarks for the dispatcher."""
