"""Tooling around the worker: the demo, replay and dump of the events topic, the embedded
servers, worker subprocesses, metrics scraping and latency measurement.

Tools may import the worker (``stream``) and the model (``serving``); neither imports tools.
"""
