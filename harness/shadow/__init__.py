"""The shadow proxy: production traffic answered by the primary, mirrored off the hot path.

    addon.py        the mitmproxy addon: options (from harness.settings), and a `response`
                    hook that captures and hands off
    proxy.py        the lean mitmproxy master `parity shadow` runs
    capture.py      what is captured of a flow, and how a worker turns it into an exchange
    channel.py      the non-blocking pipe between the proxy and a worker (the bounded queue)
    pool.py         the worker processes: start, shard by client, supervise, drain and stop
    worker.py       a worker: mirror to candidate and secondary, judge, record, report counts
    counters.py     the live counts logged by the proxy
    settings.py     what a worker is told when it starts (derived from harness.settings)
"""
