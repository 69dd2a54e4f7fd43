"""The `digits` command line: train, evaluate, predict, serve."""
