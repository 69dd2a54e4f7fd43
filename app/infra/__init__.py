"""Plumbing every part shares: settings from the environment, JSON logs, Prometheus metrics."""
