"""`parity shadow` runs mitmproxy with only the addons a reverse proxy needs (a full mitmdump
dispatches every hook through ~40 addons) plus the shadow addon."""

from __future__ import annotations

import asyncio
import signal

from mitmproxy import options
from mitmproxy.addons import core, errorcheck, next_layer, proxyserver, tlsconfig
from mitmproxy.master import Master

from harness.shadow.addon import ShadowAddon


class ShadowProxy(Master):
    """A reverse proxy in front of the primary with the shadow addon, nothing else."""

    def __init__(self, opts: options.Options) -> None:
        super().__init__(opts, with_termlog=True)
        self.shadow = ShadowAddon()
        self.addons.add(
            core.Core(),
            proxyserver.Proxyserver(),
            next_layer.NextLayer(),
            tlsconfig.TlsConfig(),
            errorcheck.ErrorCheck(),
            self.shadow,
        )


async def serve(settings: dict, listen_host: str, listen_port: int, primary: str,
                certs: list[str] | None = None) -> None:
    """Run the shadow proxy until SIGINT or SIGTERM; workers are flushed and stopped."""
    opts = options.Options(listen_host=listen_host, listen_port=listen_port,
                           mode=[f"reverse:{primary}"])
    proxy = ShadowProxy(opts)
    updates = {**settings, "connection_strategy": "lazy"}
    if certs:
        updates["certs"] = certs
    if settings.get("parity_insecure"):
        updates["ssl_insecure"] = True
    opts.update(**updates)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, proxy.shutdown)
    await proxy.run()
