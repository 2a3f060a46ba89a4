"""web_search (every provider), fetch_page and the tool cache, against a loopback fixture server."""

from __future__ import annotations

import asyncio
import importlib.util
import pickle
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

import pytest

from aworld_core.errors import ConfigError
from aworld_core.tools.base import Tool, ToolError, build_tool
from aworld_core.tools.cache import CachedTool, CacheMiss, ToolCache, cache_key
from aworld_core.tools.web import FetchPageTool, TransientToolError, WebSearchTool, provider_from_env

from testkit import load_scripted_policy


def _servers() -> ModuleType:
    return load_scripted_policy()


@pytest.fixture(scope="module")
def web() -> Iterator[Any]:
    with _servers().FixtureWebServer(flaky_failures=2) as server:
        yield server


def run(tool: Tool, **arguments: Any) -> str:
    return asyncio.run(tool.run(**tool.validate(arguments)))


# --- web_search --------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["searxng", "serper", "tavily", "brave"])
def test_each_provider_returns_numbered_results(web: Any, provider: str) -> None:
    tool = WebSearchTool(env=web.env(provider))
    text = run(tool, query="lighthouse keeper", num_results=3)
    assert text.startswith("Results for 'lighthouse keeper':")
    assert "1. Port Alder Lighthouse" in text
    assert f"URL: {web.root}/pages/harbor-lighthouse.html" in text
    assert "first lit in 1871" in text


def test_search_with_no_hits_says_so(web: Any) -> None:
    assert run(WebSearchTool(env=web.env("searxng")), query="zzzqqq") == "No results for 'zzzqqq'."


def test_provider_from_environment_variables(web: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in web.env("serper").items():
        monkeypatch.setenv(key, value)
    tool = build_tool("web_search")
    assert tool.provider is not None and tool.provider.name == "serper"
    assert web.api_key not in repr(tool.provider)
    assert "Used book catalog" in run(tool, query="used book catalog prices")


def test_unconfigured_search_is_a_clear_tool_error() -> None:
    tool = WebSearchTool(env={})
    with pytest.raises(ToolError, match="web search is not configured: set AWORLD_SEARCH_PROVIDER"):
        run(tool, query="anything")
    with pytest.raises(ToolError, match="unknown search provider 'bing'"):
        provider_from_env({"AWORLD_SEARCH_PROVIDER": "bing"})
    with pytest.raises(ToolError, match="needs the environment variable SERPER_API_KEY"):
        provider_from_env({"AWORLD_SEARCH_PROVIDER": "serper"})


def test_wrong_key_is_a_tool_error_without_the_key(web: Any) -> None:
    env = {**web.env("serper"), "SERPER_API_KEY": "wrong-key-123"}
    with pytest.raises(ToolError, match="refused the query: HTTP 403") as info:
        run(WebSearchTool(env=env), query="lighthouse")
    assert "wrong-key-123" not in str(info.value)


def test_unreachable_provider_is_transient() -> None:
    env = {"AWORLD_SEARCH_PROVIDER": "searxng", "AWORLD_SEARXNG_URL": "http://127.0.0.1:9"}
    with pytest.raises(TransientToolError, match="did not answer after 2 attempts"):
        run(WebSearchTool(env=env, attempts=2, timeout_s=2), query="x")


# --- fetch_page ---------------------------------------------------------------------------------


def test_fetch_page_returns_readable_text(web: Any) -> None:
    text = run(FetchPageTool(), url=f"{web.root}/pages/harbor-lighthouse.html")
    assert text.startswith(f"URL: {web.root}/pages/harbor-lighthouse.html")
    assert "Title: Port Alder Lighthouse" in text and "Agnes Mott | 1871-1899" in text
    assert "tracking" not in text
    assert "the harbor registry (https://example.org/harbors)" in text


def test_fetch_page_follows_redirects_and_reads_pdf_and_plain_text(web: Any) -> None:
    assert "stands 34 metres tall" in run(FetchPageTool(), url=f"{web.root}/redirect")
    assert "Total due: $1,134.50" in run(FetchPageTool(), url=f"{web.root}/doc.pdf")
    long = run(FetchPageTool(max_chars=500), url=f"{web.root}/notes.txt")
    assert "line of notes" in long and "call again with offset=500" in long
    assert "starting at character 500" in run(FetchPageTool(max_chars=500), url=f"{web.root}/notes.txt", offset=500)


def test_fetch_page_retries_a_flaky_server(web: Any) -> None:
    assert "steady now" in run(FetchPageTool(attempts=3), url=f"{web.root}/flaky")
    assert web.hits["/flaky"] == 3


@pytest.mark.parametrize("url, message", [
    ("/missing.html", "answered HTTP 404"),
    ("/blob.bin", "application/octet-stream"),
])
def test_fetch_page_errors(web: Any, url: str, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        run(FetchPageTool(), url=f"{web.root}{url}")


def test_fetch_page_gives_up_on_a_server_that_stays_down(web: Any) -> None:
    with pytest.raises(TransientToolError, match="HTTP 503"):
        run(FetchPageTool(attempts=2), url=f"{web.root}/always-503")


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.org/x", "not a url"])
def test_fetch_page_only_takes_http_urls(url: str) -> None:
    with pytest.raises(ToolError, match="http"):
        run(FetchPageTool(), url=url)


# --- the tool cache -----------------------------------------------------------------------------


class CountingTool(Tool):
    name = "counting"
    description = "test tool"
    parameters = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}

    def __init__(self, fail_with: Exception | None = None) -> None:
        self.calls, self.fail_with = 0, fail_with

    async def run(self, **arguments: Any) -> str:
        self.calls += 1
        if self.fail_with is not None:
            raise self.fail_with
        return f"result {self.calls} for {arguments['q']}"


def test_cache_key_is_canonical() -> None:
    assert cache_key("t", {"a": 1, "b": [1, 2]}) == cache_key("t", {"b": [1, 2], "a": 1})
    assert cache_key("t", {"a": 1}) != cache_key("u", {"a": 1})
    assert cache_key("t", {"a": 1}, scope="task-1") != cache_key("t", {"a": 1}, scope="task-2")


def test_cache_hit_miss_and_replay_only(tmp_path: Path) -> None:
    inner = CountingTool()
    cache = ToolCache(tmp_path, "read_write")
    tool = CachedTool(inner, cache)
    assert tool.schema() == inner.schema()
    assert run(tool, q="x") == "result 1 for x"
    assert run(tool, q="x") == "result 1 for x"  # hit: not run again
    assert inner.calls == 1 and cache.stats() == {"hits": 1, "misses": 1, "stores": 1}
    assert len(cache) == 1

    replay_inner = CountingTool()
    replay = CachedTool(replay_inner, ToolCache(tmp_path, "replay_only"))
    assert run(replay, q="x") == "result 1 for x"
    with pytest.raises(CacheMiss, match="not in the tool cache"):
        run(replay, q="never recorded")
    assert replay_inner.calls == 0


def test_cache_off_always_runs(tmp_path: Path) -> None:
    inner = CountingTool()
    tool = CachedTool(inner, ToolCache(tmp_path, "off"))
    run(tool, q="x")
    run(tool, q="x")
    assert inner.calls == 2 and not (tmp_path / "tool_cache.sqlite").exists()


def test_tool_errors_are_cached_but_transient_ones_are_not(tmp_path: Path) -> None:
    cache = ToolCache(tmp_path)
    permanent = CountingTool(fail_with=ToolError("404 page"))
    for _ in range(2):
        with pytest.raises(ToolError, match="404 page"):
            run(CachedTool(permanent, cache), q="p")
    assert permanent.calls == 1
    flaky = CountingTool(fail_with=TransientToolError("network down"))
    for _ in range(2):
        with pytest.raises(TransientToolError):
            run(CachedTool(flaky, cache), q="p2")
    assert flaky.calls == 2


def test_scopes_keep_task_local_results_apart(tmp_path: Path) -> None:
    cache = ToolCache(tmp_path)
    inner = CountingTool()
    assert run(CachedTool(inner, cache, scope="task-a"), q="file") == "result 1 for file"
    assert run(CachedTool(inner, cache, scope="task-b"), q="file") == "result 2 for file"


def test_replay_only_needs_a_recorded_cache_and_modes_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no cache at"):
        ToolCache(tmp_path / "empty", "replay_only")
    with pytest.raises(ConfigError, match="unknown tool cache mode"):
        ToolCache(tmp_path, "sometimes")  # type: ignore[arg-type]


def test_cache_pickles_for_dask_workers(tmp_path: Path) -> None:
    cache = ToolCache(tmp_path)
    run(CachedTool(CountingTool(), cache), q="x")
    clone = pickle.loads(pickle.dumps(cache))
    assert clone.mode == "read_write" and len(clone) == 1


def test_web_search_replays_offline_from_the_cache(web: Any, tmp_path: Path) -> None:
    live = CachedTool(WebSearchTool(env=web.env("searxng")), ToolCache(tmp_path))
    recorded = run(live, query="lighthouse")
    offline_env = {"AWORLD_SEARCH_PROVIDER": "searxng", "AWORLD_SEARXNG_URL": "http://127.0.0.1:9"}
    replay = CachedTool(WebSearchTool(env=offline_env), ToolCache(tmp_path, "replay_only"))
    assert run(replay, query="lighthouse") == recorded
