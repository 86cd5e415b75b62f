"""The reference Cryptobot: a faithful stand-in for the real Cryptobot FastAPI services (data,
backtest, strategy, auth, trade, MCP paper trading), run as separate processes in a "docker"
flavour (primary and secondary) and a "native" flavour (the candidate) with switchable migration
drifts (see `reference_cryptobot.drifts`). It is the target of the demo, the tests and the
benchmarks; no harness module imports it, the harness launches it as a subprocess.

Modules, one job each: settings, drifts, clock, errors, noise (headers), market (data service),
simulation (the backtest computation), backtest, strategy, auth, orders (shared by trade and
paper), trade, paper (MCP paper trading), debug (introspection for tests), server (app and CLI).
"""
