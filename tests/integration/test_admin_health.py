"""The admin app's health endpoints, served by the running proxy."""

from __future__ import annotations

import aiohttp

from amqpprox import __version__
from tests.conftest import RunningProxy


async def test_healthz_and_readyz(proxy: RunningProxy) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(proxy.admin_url + "/healthz") as response:
            assert response.status == 200
            assert await response.json() == {"status": "ok", "version": __version__}
        async with http.get(proxy.admin_url + "/readyz") as response:
            assert response.status == 200
            body = await response.json()
            assert body["status"] == "ready" and proxy.port in body["listeners"]
        proxy.ctx.shutdown.set()
        async with http.get(proxy.admin_url + "/readyz") as response:
            assert response.status == 503
            assert (await response.json())["status"] == "draining"
