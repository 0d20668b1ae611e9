"""Reports, statistics, plots, offline replay, simulation, benchmarks, boost preview and diff."""
