"""Web tools: ``web_search`` through a pluggable provider, and ``fetch_page`` (URL -> readable text).

Why pluggable: where this recipe runs decides which search backend exists (a self-hosted SearxNG on
an air-gapped cluster, a paid API elsewhere), so the provider is chosen by environment variables,
never in code, and every provider returns the same ``SearchHit`` list:

======================  ==========================================================================
``AWORLD_SEARCH_PROVIDER``  ``searxng`` | ``serper`` | ``tavily`` | ``brave``
searxng                 ``AWORLD_SEARXNG_URL`` (base URL; its JSON API must be enabled:
                        ``search.formats: [html, json]`` in SearxNG's settings.yml)
serper                  ``SERPER_API_KEY``; ``AWORLD_SERPER_URL`` (default https://google.serper.dev)
tavily                  ``TAVILY_API_KEY``; ``AWORLD_TAVILY_URL`` (default https://api.tavily.com)
brave                   ``BRAVE_API_KEY``; ``AWORLD_BRAVE_URL`` (default https://api.search.brave.com)
======================  ==========================================================================

Keys are read from the environment when the tool is built, sent only in the provider's header or
body, and never logged or put in an error message.

Errors the model can act on (no provider configured, a provider's 4xx) raise ``ToolError``;
network trouble and 5xx are retried (tenacity) and then raise ``TransientToolError``, which the
tool cache (``cache.py``) does not store, so a flaky network is not replayed as a permanent answer.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import httpx
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from aworld_core.tools.base import Tool, ToolError, register_tool
from aworld_core.tools.readers import DEFAULT_MAX_CHARS, html_to_text, pdf_text, truncate

log = logging.getLogger(__name__)

__all__ = ["FetchPageTool", "PROVIDERS", "SearchHit", "SearchProvider", "TransientToolError", "WebSearchTool",
           "provider_from_env"]

USER_AGENT = "aworld-recipe/0.1 (+evaluation agent; https://github.com/inclusionAI/AWorld)"
MAX_PAGE_BYTES = 10 * 1024 * 1024


class TransientToolError(ToolError):
    """A failure that may not happen again (network, 5xx): reported to the model, never cached."""

    transient = True


@dataclass(frozen=True)
class SearchHit:
    title: str
    url: str
    snippet: str


class SearchProvider:
    """One search backend. Subclasses build the request and parse the response."""

    name: ClassVar[str]

    def request(self, query: str, num_results: int) -> tuple[str, str, dict[str, Any]]:
        """(method, url, httpx request kwargs)."""
        raise NotImplementedError

    def parse(self, data: Any) -> list[SearchHit]:
        raise NotImplementedError

    def __repr__(self) -> str:  # never show keys
        return f"{type(self).__name__}()"


def _need(env: Mapping[str, str], var: str, provider: str) -> str:
    value = env.get(var)
    if not value:
        raise ToolError(f"web_search provider {provider!r} needs the environment variable {var}; set it "
                        "(or choose another provider with AWORLD_SEARCH_PROVIDER)")
    return value


class SearxNG(SearchProvider):
    name = "searxng"

    def __init__(self, env: Mapping[str, str]) -> None:
        self.base = _need(env, "AWORLD_SEARXNG_URL", self.name).rstrip("/")

    def request(self, query: str, num_results: int) -> tuple[str, str, dict[str, Any]]:
        return "GET", f"{self.base}/search", {"params": {"q": query, "format": "json"}}

    def parse(self, data: Any) -> list[SearchHit]:
        return [SearchHit(str(r.get("title", "")), str(r.get("url", "")), str(r.get("content", "")))
                for r in data.get("results", []) if isinstance(r, dict)]


class Serper(SearchProvider):
    name = "serper"

    def __init__(self, env: Mapping[str, str]) -> None:
        self._key = _need(env, "SERPER_API_KEY", self.name)
        self.base = (env.get("AWORLD_SERPER_URL") or "https://google.serper.dev").rstrip("/")

    def request(self, query: str, num_results: int) -> tuple[str, str, dict[str, Any]]:
        return "POST", f"{self.base}/search", {"json": {"q": query, "num": num_results},
                                               "headers": {"X-API-KEY": self._key}}

    def parse(self, data: Any) -> list[SearchHit]:
        hits = []
        box = data.get("answerBox")
        if isinstance(box, dict) and (box.get("answer") or box.get("snippet")):
            hits.append(SearchHit(str(box.get("title", "Answer box")), str(box.get("link", "")),
                                  str(box.get("answer") or box.get("snippet"))))
        hits += [SearchHit(str(r.get("title", "")), str(r.get("link", "")), str(r.get("snippet", "")))
                 for r in data.get("organic", []) if isinstance(r, dict)]
        return hits


class Tavily(SearchProvider):
    name = "tavily"

    def __init__(self, env: Mapping[str, str]) -> None:
        self._key = _need(env, "TAVILY_API_KEY", self.name)
        self.base = (env.get("AWORLD_TAVILY_URL") or "https://api.tavily.com").rstrip("/")

    def request(self, query: str, num_results: int) -> tuple[str, str, dict[str, Any]]:
        return "POST", f"{self.base}/search", {"json": {"query": query, "max_results": num_results},
                                               "headers": {"Authorization": f"Bearer {self._key}"}}

    def parse(self, data: Any) -> list[SearchHit]:
        return [SearchHit(str(r.get("title", "")), str(r.get("url", "")), str(r.get("content", "")))
                for r in data.get("results", []) if isinstance(r, dict)]


class Brave(SearchProvider):
    name = "brave"

    def __init__(self, env: Mapping[str, str]) -> None:
        self._key = _need(env, "BRAVE_API_KEY", self.name)
        self.base = (env.get("AWORLD_BRAVE_URL") or "https://api.search.brave.com").rstrip("/")

    def request(self, query: str, num_results: int) -> tuple[str, str, dict[str, Any]]:
        return "GET", f"{self.base}/res/v1/web/search", {
            "params": {"q": query, "count": min(num_results, 20)},
            "headers": {"X-Subscription-Token": self._key, "Accept": "application/json"}}

    def parse(self, data: Any) -> list[SearchHit]:
        web = data.get("web") or {}
        return [SearchHit(str(r.get("title", "")), str(r.get("url", "")), str(r.get("description", "")))
                for r in web.get("results", []) if isinstance(r, dict)]


PROVIDERS: dict[str, Callable[[Mapping[str, str]], SearchProvider]] = {
    "searxng": SearxNG, "serper": Serper, "tavily": Tavily, "brave": Brave}


def provider_from_env(env: Mapping[str, str] | None = None, name: str | None = None) -> SearchProvider:
    """The provider named by ``name`` or ``AWORLD_SEARCH_PROVIDER``; ToolError saying what to set."""
    env = os.environ if env is None else env
    chosen = (name or env.get("AWORLD_SEARCH_PROVIDER") or "").strip().lower()
    if not chosen:
        raise ToolError("web search is not configured: set AWORLD_SEARCH_PROVIDER to one of "
                        f"{', '.join(PROVIDERS)} and that provider's URL/key variables (see aworld_core/tools/web.py)")
    if chosen not in PROVIDERS:
        raise ToolError(f"unknown search provider {chosen!r} in AWORLD_SEARCH_PROVIDER; valid: {', '.join(PROVIDERS)}")
    return PROVIDERS[chosen](env)


class _Retry(Exception):
    pass


async def _send(client: httpx.AsyncClient, method: str, url: str, attempts: int, **kwargs: Any) -> httpx.Response:
    """One request with retries on connection errors, 5xx and 429; TransientToolError when they run out."""
    last = ""
    try:
        async for attempt in AsyncRetrying(stop=stop_after_attempt(attempts),
                                           wait=wait_exponential_jitter(initial=0.2, max=4.0),
                                           retry=retry_if_exception_type(_Retry), reraise=True):
            with attempt:
                try:
                    resp = await client.request(method, url, **kwargs)
                except (httpx.TransportError, httpx.TimeoutException) as exc:
                    last = type(exc).__name__
                    raise _Retry() from None
                if resp.status_code >= 500 or resp.status_code == 429:
                    last = f"HTTP {resp.status_code}"
                    raise _Retry()
                return resp
    except _Retry:
        pass
    host = httpx.URL(url).host
    raise TransientToolError(f"{host} did not answer after {attempts} attempts ({last}); try again later or "
                             "another source")


@register_tool("web_search")
class WebSearchTool(Tool):
    """Search the web with the configured provider; results as numbered title / URL / snippet."""

    name = "web_search"
    description = ("Search the web. Returns a numbered list of results (title, URL, snippet). Open a result "
                   "with fetch_page to read it.")
    parameters = {"type": "object",
                  "properties": {"query": {"type": "string", "description": "the search query"},
                                 "num_results": {"type": "integer", "description": "how many results (1-20, default 8)"}},
                  "required": ["query"]}

    def __init__(self, provider: str | None = None, env: Mapping[str, str] | None = None,
                 timeout_s: float = 30.0, attempts: int = 3, max_chars: int = DEFAULT_MAX_CHARS) -> None:
        self._provider_name, self._env = provider, env
        self.timeout_s, self.attempts, self.max_chars = timeout_s, attempts, max_chars
        try:  # resolved now so a misconfiguration is visible before the first call, but not fatal
            self.provider: SearchProvider | None = provider_from_env(env, provider)
            self.config_error: str | None = None
        except ToolError as exc:
            self.provider, self.config_error = None, str(exc)

    async def run(self, **arguments: Any) -> str:
        if self.provider is None:
            raise ToolError(self.config_error or "web search is not configured")
        query = str(arguments["query"]).strip()
        if not query:
            raise ToolError("query must not be empty")
        num = max(1, min(int(arguments.get("num_results") or 8), 20))
        method, url, kwargs = self.provider.request(query, num)
        async with httpx.AsyncClient(timeout=self.timeout_s, headers={"User-Agent": USER_AGENT}) as client:
            resp = await _send(client, method, url, self.attempts, **kwargs)
        if resp.status_code >= 400:
            raise ToolError(f"search provider {self.provider.name} refused the query: HTTP {resp.status_code}")
        try:
            hits = self.provider.parse(resp.json())[:num]
        except (ValueError, AttributeError):
            raise ToolError(f"search provider {self.provider.name} did not return JSON results") from None
        if not hits:
            return f"No results for {query!r}."
        lines = [f"Results for {query!r}:"]
        for i, h in enumerate(hits, start=1):
            lines.append(f"{i}. {h.title}\n   URL: {h.url}\n   {h.snippet}".rstrip())
        return truncate("\n".join(lines), self.max_chars)


@register_tool("fetch_page")
class FetchPageTool(Tool):
    """HTTP GET a URL and return readable text (HTML stripped to text, PDFs extracted)."""

    name = "fetch_page"
    description = ("Open a web page (http or https URL) and return its readable text. Long pages are cut; "
                   "pass offset to read on.")
    parameters = {"type": "object",
                  "properties": {"url": {"type": "string", "description": "http(s) URL"},
                                 "offset": {"type": "integer", "description": "character offset to start at (default 0)"}},
                  "required": ["url"]}

    def __init__(self, timeout_s: float = 30.0, attempts: int = 3, max_chars: int = DEFAULT_MAX_CHARS,
                 max_bytes: int = MAX_PAGE_BYTES) -> None:
        self.timeout_s, self.attempts, self.max_chars, self.max_bytes = timeout_s, attempts, max_chars, max_bytes

    async def run(self, **arguments: Any) -> str:
        url = str(arguments["url"]).strip()
        offset = int(arguments.get("offset") or 0)
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL:
            raise ToolError(f"not a valid URL: {url!r}") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ToolError(f"only http(s) URLs can be fetched, got {url!r}")
        async with httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=True,
                                     headers={"User-Agent": USER_AGENT}) as client:
            resp = await _send(client, "GET", url, self.attempts)
        if resp.status_code >= 400:
            raise ToolError(f"{url} answered HTTP {resp.status_code}")
        body = resp.content
        if len(body) > self.max_bytes:
            raise ToolError(f"{url} is larger than {self.max_bytes // 2**20} MiB; not read")
        kind = resp.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "application/pdf" or body[:5] == b"%PDF-":
            text = pdf_text(body)
        elif kind in ("text/html", "application/xhtml+xml") or (not kind and b"<html" in body[:2048].lower()):
            text = html_to_text(body)
        elif kind.startswith("text/") or kind in ("application/json", "application/xml", ""):
            text = resp.text
        else:
            raise ToolError(f"{url} is {kind} ({len(body)} bytes), which fetch_page cannot turn into text")
        return truncate(f"URL: {resp.url}\n\n{text}", self.max_chars, offset)
