"""The reference Cryptobot: a faithful stand-in for the real Cryptobot FastAPI services (data,
backtest, strategy, auth, trade, MCP paper trading) in a "docker" and a "native" flavour, with
switchable migration drifts. It is the target of the demo, the tests and the benchmarks; no
harness module imports it."""
