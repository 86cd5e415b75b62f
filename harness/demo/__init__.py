"""`parity demo`: the reference Cryptobot, the shadow proxy, traffic, the gate and the report."""
