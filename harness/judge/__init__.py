"""Judge: differences in, a verdict out, and per group a gate (Diffy's count and judge).

    engine.py       judges one exchange: lift, the route's comparator, noise, the verdict
    noise.py        noise learned from a second Docker copy, per route and difference path
    volatile.py     what is volatile by nature (ids, timestamps, tokens) before anything is learned
    gate.py         judged exchanges of a group → ready or not, and why
"""
