"""The dashboard's trace routes over plain HTTP: CSRF and origin, the server's own
confirmation (no JavaScript), unknown sessions, vhosts and traces, hostile vhost names."""

from __future__ import annotations

import re
from typing import Any

import aiohttp

from amqpprox.core import trace_ops
from tests.conftest import RunningProxy

CSRF = re.compile(r'data-csrf="([0-9a-f]+)"')


async def _csrf(http: Any, base: str) -> str:
    async with http.get(base + "/vhosts") as response:
        match = CSRF.search(await response.text())
    assert match is not None
    return match.group(1)


async def test_trace_routes_check_csrf_confirm_and_names(bare_proxy: RunningProxy) -> None:
    base = bare_proxy.admin_url
    async with aiohttp.ClientSession() as http:
        token = await _csrf(http, base)
        confirmed = {"csrf": token, "confirm": "yes"}

        async def post(path: str, form: dict[str, str], **headers: str) -> tuple[int, str, str]:
            async with http.post(
                base + path, data=form, headers=headers, allow_redirects=False
            ) as response:
                return response.status, response.headers.get("Location", ""), await response.text()

        # Refused without our CSRF token or from another site; never on GET.
        assert (await post("/vhosts/orders/trace", {**confirmed, "csrf": "0" * 64}))[0] == 403
        status, _, _ = await post("/vhosts/orders/trace", confirmed, Origin="http://evil.example")
        assert status == 403
        async with http.get(base + "/vhosts/orders/trace") as response:
            assert response.status == 405
        assert not bare_proxy.ctx.traces.all()
        # Without confirm=yes the server asks first, posting back to the same route.
        status, _, page = await post("/vhosts/orders/trace", {"csrf": token})
        assert status == 200 and "Trace vhost &#39;orders&#39;?" in page
        assert 'action="/vhosts/orders/trace"' in page
        # Confirmed: started, and the browser goes to the trace's page.
        status, location, _ = await post("/vhosts/orders/trace", confirmed)
        assert (status, location) == (303, "/traces/1")
        assert bare_proxy.ctx.traces.get(1).filter.vhost == "orders"
        async with http.get(base + "/traces/1") as response:
            assert response.status == 200
            page = await response.text()
        assert "Trace 1" in page and "trace.js" in page
        assert "script-src" not in page  # no inline script: the CSP forbids it
        # Unknown session, trace; a vhost name with a control character.
        assert (await post("/sessions/77/trace", confirmed))[0] == 404
        assert (await post("/traces/9/stop", confirmed))[0] == 404
        status, _, page = await post("/vhosts/a%1Bb/trace", confirmed)
        assert status == 400 and "vhost name must be" in page
        for path in ("/traces/9", "/traces/9/events", "/traces/abc"):
            async with http.get(base + path) as response:
                assert response.status == 404, path
        # Stop, confirmed: back to the trace's page, stopped.
        status, location, _ = await post("/traces/1/stop", confirmed)
        assert (status, location) == (303, "/traces/1")
        assert not bare_proxy.ctx.traces.get(1).running


async def test_the_traces_page_lists_every_trace_and_stops_a_running_one(
    bare_proxy: RunningProxy,
) -> None:
    base = bare_proxy.admin_url
    ctx = bare_proxy.ctx
    async with aiohttp.ClientSession() as http:

        async def page(**headers: str) -> tuple[int, str]:
            async with http.get(base + "/traces", headers=headers) as response:
                return response.status, await response.text()

        status, text = await page()
        assert status == 200 and "No trace has been started." in text
        assert '<a href="/traces" aria-current="page">Traces</a>' in text
        # Started elsewhere (REST, the control socket): listed all the same, newest first.
        hostile = '<img src=x onerror="alert(1)">'
        options = trace_ops.make_options()
        trace_ops.start_trace(ctx, trace_ops.make_filter(vhost=hostile), options)
        trace_ops.start_trace(ctx, trace_ops.make_filter(source="10.1.2.3"), options)
        status, text = await page()
        assert status == 200
        rows = re.findall(r'<tr data-trace="(\d+)">', text)
        assert rows == ["2", "1"]
        assert hostile not in text  # escaped, not markup
        assert 'vhost <a href="/sessions?vhost=%3Cimg%20src%3Dx' in text
        assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in text
        assert 'client address <span class="mono">10.1.2.3</span>' in text
        assert text.count('action="/traces/') == 2 and text.count(">running<") == 2
        # Stopping one: it stays listed, stopped, without its stop button.
        token = await _csrf(http, base)
        async with http.post(
            base + "/traces/1/stop",
            data={"csrf": token, "confirm": "yes", "next": "/traces"},
            allow_redirects=False,
        ) as response:
            assert (response.status, response.headers["Location"]) == (303, "/traces")
        status, text = await page()
        assert re.findall(r'<tr data-trace="(\d+)">', text) == ["2", "1"]
        assert 'action="/traces/1/stop"' not in text and 'action="/traces/2/stop"' in text
        assert ">stopped<" in text and "requested" in text
        # The live refresh gets the table alone.
        async with http.get(base + "/traces", headers={"X-Dashboard-Live": "1"}) as response:
            assert response.status == 200
            live = await response.json()
        assert set(live["regions"]) == {"traces_table"}
        assert 'data-trace="2"' in live["regions"]["traces_table"]
