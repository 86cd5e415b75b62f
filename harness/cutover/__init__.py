"""Cutover: move users to the candidate (native) in sticky batches, per migration group, and roll a
group back to the primary (Docker) on a parity breach within a second.

    identity.py   who a request is (JWT `sub`, API-key fingerprint, first X-Forwarded-For hop,
                  peer) and its stable, keyed position in [0, 100)
    state.py      shares per group, the key, early adopters and the event history; persisted
                  atomically on every change; the routing decision
    judge.py      the rollback judge over a sliding window of one group's judged exchanges
    control.py    the proxy side: routing, judge, state and the admin listener together
    serve.py      the hot path of a moved request: the candidate answers, or the primary does
    reverse.py    the worker side: a moved exchange mirrored to the primary, safety reversed
    tokens.py     the token-exchange check (each side accepts a token minted by the other)
    upstream.py   the hot path's HTTP/1.1 client to the candidate (knows what was sent)
    status.py     the status as a person reads it
    demo.py       `parity demo --cutover`

The plan (`[cutover]` in parity.toml: identity sources, early adopters, rollback thresholds) is
`harness.config.CutoverPlan`.
"""
