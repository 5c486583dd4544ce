"""``nextaction``: one command-line tree for the worker, the tools, the model and the benchmarks."""
