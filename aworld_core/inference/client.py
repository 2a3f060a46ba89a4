"""An async client for a pool of OpenAI-compatible endpoints that returns the sampled token ids.

Why token ids: RL must train on exactly the tokens the model sampled; re-rendering text through a
chat template does not reproduce them (FIELD_NOTES, verl docs). vLLM's ``/v1/completions`` takes a
prompt as a list of ids and, with ``return_token_ids``, returns the sampled ids and their logprobs.

Why a pool: a fleet of vLLM servers is the normal case on a cluster. Each request goes to the
healthy endpoint with the fewest requests in flight; a connection error or 5xx marks the endpoint
down for a while and the request is retried elsewhere with backoff (tenacity), so a restarting
server costs latency, not episodes.

Why aiohttp and not httpx here: a shard keeps 64+ requests in flight, and httpx's connection pool
rescans every connection for every queued request (profiled: ~40 ms of client CPU per episode at 64
in flight, most of a 2-core machine's spare CPU). aiohttp's connector hands out keep-alive
connections in O(1).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from aworld_core.errors import EndpointUnreachable

log = logging.getLogger(__name__)


@dataclass
class Completion:
    """One sampled continuation, token-faithful."""

    token_ids: list[int]
    logprobs: list[float]
    text: str
    finish_reason: str
    latency_s: float
    endpoint: str


class _Retryable(Exception):
    """A failure another endpoint (or the same one, later) may not have."""


@dataclass
class _Endpoint:
    url: str
    limit: asyncio.Semaphore
    in_flight: int = 0
    down_until: float = 0.0
    failures: int = 0
    served: int = 0
    errors: list[str] = field(default_factory=list)


class PolicyClient:
    """Least-outstanding-requests load balancing with failover over OpenAI-compatible endpoints."""

    def __init__(self, endpoints: list[str], model: str, *, api_key: str | None = None,
                 max_in_flight_per_endpoint: int = 64, timeout_s: float = 120.0,
                 max_attempts: int = 6, down_for_s: float = 2.0) -> None:
        if not endpoints:
            raise EndpointUnreachable("no endpoints configured (serve.endpoints is empty)")
        self.model = model
        self._endpoints = [_Endpoint(u.rstrip("/"), asyncio.Semaphore(max_in_flight_per_endpoint))
                           for u in endpoints]
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._max_connections = max_in_flight_per_endpoint * len(endpoints) + 8
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, connect=5.0)
        self._session: aiohttp.ClientSession | None = None  # made in the event loop that uses it
        self._max_attempts = max_attempts
        self._down_for_s = down_for_s

    async def __aenter__(self) -> "PolicyClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            # keep-alive below uvicorn's 5 s timeout (vLLM's server): reusing a connection the server
            # is closing gave spurious disconnects and retries
            connector = aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0, keepalive_timeout=3.0)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout, headers=self._headers)
        return self._session

    def _pick(self) -> _Endpoint:
        now = time.monotonic()
        healthy = [e for e in self._endpoints if e.down_until <= now] or self._endpoints
        return min(healthy, key=lambda e: (e.in_flight, e.failures))

    async def complete(self, prompt_ids: list[int], *, max_tokens: int, temperature: float = 1.0,
                       top_p: float = 1.0, stop_token_ids: list[int] | None = None,
                       seed: int | None = None) -> Completion:
        """Sample one continuation of ``prompt_ids``; retried across endpoints on transient failure."""
        body = {"model": self.model, "prompt": prompt_ids, "max_tokens": max_tokens,
                "temperature": temperature, "top_p": top_p, "logprobs": 0, "return_token_ids": True,
                "skip_special_tokens": False, "stop_token_ids": stop_token_ids or []}
        if seed is not None:
            body["seed"] = seed
        try:
            async for attempt in AsyncRetrying(
                    stop=stop_after_attempt(self._max_attempts),
                    wait=wait_exponential_jitter(initial=0.2, max=5.0),
                    retry=retry_if_exception_type(_Retryable), reraise=True):
                with attempt:
                    return await self._post(self._pick(), body)
        except _Retryable as exc:
            raise EndpointUnreachable(
                f"no endpoint answered after {self._max_attempts} attempts (last error: {exc}); "
                f"endpoints: {[e.url for e in self._endpoints]}. Check the servers are up "
                f"(curl URL/health) or fix serve.endpoints") from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _post(self, ep: _Endpoint, body: dict) -> Completion:
        async with ep.limit:
            ep.in_flight += 1
            t0 = time.perf_counter()
            try:
                async with self._http().post(f"{ep.url}/completions", json=body) as resp:
                    status, payload = resp.status, await resp.read()
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                self._mark_down(ep, f"{type(exc).__name__}: {exc}")
                raise _Retryable(f"{ep.url}: {type(exc).__name__}") from None
            finally:
                ep.in_flight -= 1
        if status >= 500 or status == 429:
            self._mark_down(ep, f"HTTP {status}")
            raise _Retryable(f"{ep.url}: HTTP {status}")
        if status >= 400:
            raise EndpointUnreachable(f"{ep.url} rejected the request: HTTP {status} "
                                      f"{payload[:300].decode(errors='replace')}")
        ep.failures, ep.served = 0, ep.served + 1
        choice = json.loads(payload)["choices"][0]
        if "token_ids" not in choice or choice["token_ids"] is None:
            raise EndpointUnreachable(
                f"{ep.url} returned no token_ids: token-faithful rollouts need a vLLM server "
                f"(return_token_ids); for hosted chat APIs use the chat-mode evaluation")
        lp = choice.get("logprobs") or {}
        logprobs = [float(x) if x is not None else 0.0 for x in lp.get("token_logprobs") or []]
        if len(logprobs) != len(choice["token_ids"]):
            logprobs = [0.0] * len(choice["token_ids"])
        return Completion(token_ids=list(choice["token_ids"]), logprobs=logprobs, text=choice["text"],
                          finish_reason=choice.get("finish_reason") or "stop",
                          latency_s=time.perf_counter() - t0, endpoint=ep.url)

    def _mark_down(self, ep: _Endpoint, why: str) -> None:
        ep.failures += 1
        ep.down_until = time.monotonic() + self._down_for_s * min(ep.failures, 5)
        log.warning("endpoint %s failed (%s); trying others", ep.url, why)

    def stats(self) -> dict[str, dict[str, int]]:
        return {e.url: {"served": e.served, "failures": e.failures} for e in self._endpoints}
