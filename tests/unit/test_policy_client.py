"""The endpoint pool: least-outstanding balancing, failover past dead or failing endpoints, clear
errors when nothing answers. Real HTTP servers on loopback stand in for vLLM."""

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from aworld_core.errors import EndpointUnreachable
from aworld_core.inference.client import PolicyClient
from testkit import free_port


def _server(status: int = 200, token_ids=(5, 6, 2)):
    hits = []

    class H(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            hits.append(body)
            if status != 200:
                self.send_response(status)
                self.end_headers()
                return
            out = json.dumps({"choices": [{"text": "x", "token_ids": list(token_ids), "finish_reason": "stop",
                                           "logprobs": {"token_logprobs": [-0.5] * len(token_ids)}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}/v1", hits


def test_returns_token_ids_and_logprobs():
    srv, url, hits = _server()
    async def go():
        async with PolicyClient([url], "m") as c:
            return await c.complete([1, 2, 3], max_tokens=4, stop_token_ids=[2])
    r = asyncio.run(go())
    srv.shutdown()
    assert r.token_ids == [5, 6, 2] and r.logprobs == [-0.5] * 3 and r.endpoint == url
    assert hits[0]["prompt"] == [1, 2, 3] and hits[0]["return_token_ids"] is True


def test_balances_over_endpoints():
    servers = [_server() for _ in range(3)]
    async def go():
        async with PolicyClient([u for _, u, _ in servers], "m") as c:
            await asyncio.gather(*(c.complete([1], max_tokens=1) for _ in range(60)))
    asyncio.run(go())
    counts = [len(h) for _, _, h in servers]
    for s, _, _ in servers:
        s.shutdown()
    assert sum(counts) == 60 and min(counts) >= 10, counts


def test_fails_over_from_dead_and_erroring_endpoints():
    dead = f"http://127.0.0.1:{free_port()}/v1"
    bad, bad_url, bad_hits = _server(status=503)
    good, good_url, good_hits = _server()
    async def go():
        async with PolicyClient([dead, bad_url, good_url], "m", down_for_s=30) as c:
            return await asyncio.gather(*(c.complete([1], max_tokens=1) for _ in range(20)))
    results = asyncio.run(go())
    bad.shutdown(); good.shutdown()
    assert len(results) == 20 and all(r.endpoint == good_url for r in results)
    assert len(good_hits) == 20


def test_nothing_answers_gives_actionable_error():
    async def go():
        async with PolicyClient([f"http://127.0.0.1:{free_port()}/v1"], "m", max_attempts=2) as c:
            await c.complete([1], max_tokens=1)
    with pytest.raises(EndpointUnreachable, match="no endpoint answered.*serve.endpoints"):
        asyncio.run(go())


def test_client_error_is_not_retried():
    srv, url, hits = _server(status=400)
    async def go():
        async with PolicyClient([url], "m") as c:
            await c.complete([1], max_tokens=1)
    with pytest.raises(EndpointUnreachable, match="rejected the request: HTTP 400"):
        asyncio.run(go())
    srv.shutdown()
    assert len(hits) == 1
