"""Thin adapters that connect :class:`~driftwatch.monitor.DriftMonitor` to training frameworks.

Each adapter only translates framework events into ``monitor.start`` / ``monitor.step`` calls
and a :class:`~driftwatch.policy.Decision` into the framework's own stop flag; probing, drift
and policy logic stay in the monitor. Import the adapter you need (``callbacks.lightning``);
each imports its framework lazily.
"""
