"""Mirror: one production exchange sent, safely, to the candidate and the secondary.

    policy.py       which requests may be mirrored (safe methods, routes, dry-run rewrites,
                    breakers, the order retries never sent twice)
    preconditions.py the proof a side must give before an unsafe request reaches it
    correlation.py  ids and tokens minted differently per side, paired and substituted
    transport.py    the HTTP client and what is unsendable
    step.py         the mirror step: policy → proofs → send → second check → judge (once), for
                    the shadow workers and the replay
"""
