"""Loopback test servers: a scripted OpenAI-compatible chat policy, and a fixture web + search API.

``ScriptedPolicyServer`` is a real HTTP server (stdlib ``http.server`` in a thread, 127.0.0.1 and a
free port) implementing ``GET /v1/models`` and ``POST /v1/chat/completions``. It plays per-task
scripts: the task is found by a marker (a piece of the question) in the first user message, the
variant by the request's ``seed`` (the chat loop sends ``seed + sample_index``, so sample 0 plays
variant 0, sample 1 variant 1, ...), and the step by the number of assistant messages already in
the conversation. A step returns structured ``tool_calls``, Hermes ``<tool_call>`` text, or a final
message, and a final message can depend on what the tools returned (``require``), so a correct
answer proves the tool really read the attachment.

``FixtureWebServer`` serves ``tests/fixtures/web/pages`` and answers searches over them in the JSON
shapes of SearxNG (``GET /search?format=json``), Serper (``POST /serper/search``), Tavily
(``POST /tavily/search``) and Brave (``GET /brave/res/v1/web/search``); it also has a flaky route
(503 then 200), redirects, a 404, a PDF, a binary file and an OpenAI-style
``/v1/audio/transcriptions``.

Both count what they served, stop cleanly, and never reach beyond loopback.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
WEB_PAGES = FIXTURES / "web" / "pages"


# --------------------------------------------------------------------------------------------------
# Scripts.


@dataclass(frozen=True)
class Step:
    """One scripted assistant response.

    ``tool_calls``: (name, raw JSON argument string) pairs, sent as OpenAI ``tool_calls`` (or as
    Hermes text blocks with ``hermes=True``). Otherwise ``content`` is the reply; with ``require``,
    ``content`` is sent only if that text occurs in a tool result (or tool-response user message) of
    the conversation, else ``otherwise``.
    """

    content: str | None = None
    tool_calls: tuple[tuple[str, str], ...] = ()
    hermes: bool = False
    require: str | None = None
    otherwise: str = "FINAL ANSWER: unknown"
    finish_reason: str | None = None


def call(name: str, **arguments: Any) -> tuple[str, str]:
    """A well-formed tool call."""
    return name, json.dumps(arguments)


def answer(text: str, require: str | None = None, convention: str = "final_answer") -> Step:
    body = f"FINAL ANSWER: {text}" if convention == "final_answer" else f"<answer>{text}</answer>"
    return Step(content=f"I have what I need.\n{body}", require=require)


def tools(*calls: tuple[str, str], hermes: bool = False, content: str | None = None) -> Step:
    return Step(content=content, tool_calls=tuple(calls), hermes=hermes)


Script = list[list[Step]]  # variants, each a list of steps


# --------------------------------------------------------------------------------------------------
# A threaded loopback server base.


class _Server:
    handler_class: type[BaseHTTPRequestHandler]

    def __init__(self) -> None:
        self.httpd: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()

    def start(self) -> "_Server":
        owner = self

        class Handler(self.handler_class):  # type: ignore[name-defined, misc]
            server_owner = owner

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       name=type(self).__name__, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    @property
    def port(self) -> int:
        assert self.httpd is not None
        return self.httpd.server_address[1]

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    server_owner: Any
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read the logs
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj).encode())

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""


# --------------------------------------------------------------------------------------------------
# The scripted policy.


class _PolicyHandler(_Handler):
    def do_GET(self) -> None:
        owner: ScriptedPolicyServer = self.server_owner
        if not owner.authorized(self.headers.get("Authorization")):
            return self._json(401, {"error": {"message": "bad api key"}})
        if self.path.rstrip("/") == "/v1/models":
            return self._json(200, {"object": "list", "data": [{"id": owner.model, "object": "model"}]})
        self._json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        owner: ScriptedPolicyServer = self.server_owner
        if not owner.authorized(self.headers.get("Authorization")):
            return self._json(401, {"error": {"message": "bad api key"}})
        if self.path.rstrip("/") != "/v1/chat/completions":
            return self._json(404, {"error": {"message": f"no route {self.path}"}})
        request = json.loads(self._body() or b"{}")
        status, payload = owner.respond(request)
        self._json(status, payload)


class ScriptedPolicyServer(_Server):
    """An OpenAI-compatible chat endpoint that replays scripts. ``base_url`` ends in ``/v1``."""

    handler_class = _PolicyHandler

    def __init__(self, scripts: dict[str, Script], model: str = "scripted", api_key: str | None = None,
                 fail_first: dict[str, int] | None = None, prompt_tokens_per_message: int = 10,
                 completion_tokens: int = 7) -> None:
        super().__init__()
        self.scripts, self.model, self.api_key = scripts, model, api_key
        self.failures_left = dict(fail_first or {})  # marker -> how many 503s to answer first
        self.prompt_tokens_per_message, self.completion_tokens = prompt_tokens_per_message, completion_tokens
        self.requests: list[dict[str, Any]] = []
        self.failures_sent = 0
        self.prompt_tokens_served = self.completion_tokens_served = 0

    @property
    def base_url(self) -> str:
        return f"{self.root}/v1"

    def authorized(self, header: str | None) -> bool:
        return self.api_key is None or header == f"Bearer {self.api_key}"

    def _marker(self, messages: list[dict[str, Any]]) -> str | None:
        first_user = next((m.get("content") or "" for m in messages if m.get("role") == "user"), "")
        for marker in self.scripts:
            if marker in first_user:
                return marker
        return None

    def respond(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        messages = request.get("messages") or []
        marker = self._marker(messages)
        with self.lock:
            self.requests.append(request)
            if marker is not None and self.failures_left.get(marker, 0) > 0:
                self.failures_left[marker] -= 1
                self.failures_sent += 1
                return 503, {"error": {"message": "scripted overload"}}
        if marker is None:
            return 400, {"error": {"message": "no script for this conversation"}}
        variants = self.scripts[marker]
        variant = variants[int(request.get("seed") or 0) % len(variants)]
        step_index = sum(1 for m in messages if m.get("role") == "assistant")
        step = variant[min(step_index, len(variant) - 1)]
        message: dict[str, Any] = {"role": "assistant", "content": step.content}
        finish = step.finish_reason or "stop"
        if step.tool_calls and step.hermes:
            blocks = "\n".join(f'<tool_call>\n{{"name": "{n}", "arguments": {a}}}\n</tool_call>'
                               for n, a in step.tool_calls)
            message["content"] = f"{step.content or ''}\n{blocks}".strip()
        elif step.tool_calls:
            message["tool_calls"] = [{"id": f"call_{step_index}_{i}", "type": "function",
                                      "function": {"name": n, "arguments": a}}
                                     for i, (n, a) in enumerate(step.tool_calls)]
            finish = step.finish_reason or "tool_calls"
        elif step.require is not None:
            observed = "\n".join(str(m.get("content") or "") for m in messages
                                 if m.get("role") == "tool" or (m.get("role") == "user" and "<tool_response>" in str(m.get("content"))))
            if step.require not in observed:
                message["content"] = step.otherwise
        usage = {"prompt_tokens": self.prompt_tokens_per_message * len(messages),
                 "completion_tokens": self.completion_tokens}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        with self.lock:
            self.prompt_tokens_served += usage["prompt_tokens"]
            self.completion_tokens_served += usage["completion_tokens"]
        return 200, {"id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion", "model": self.model,
                     "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage}


# --------------------------------------------------------------------------------------------------
# The fixture web and search server.


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.title, self.parts, self._skip, self._in_title = "", [], 0, False

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip -= 1
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._skip and data.strip():
            self.parts.append(data.strip())


def _page_index(root: str) -> list[dict[str, str]]:
    pages = []
    for path in sorted(WEB_PAGES.glob("*.html")):
        parser = _TextExtractor()
        parser.feed(path.read_text(encoding="utf-8"))
        text = " ".join(parser.parts)
        pages.append({"title": parser.title.strip(), "url": f"{root}/pages/{path.name}", "snippet": text[:160],
                      "text": text.lower()})
    return pages


class _WebHandler(_Handler):
    def do_GET(self) -> None:
        owner: FixtureWebServer = self.server_owner
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        owner.count(url.path)
        if url.path == "/search":
            if query.get("format") != "json":
                return self._send(403, b"Forbidden", "text/plain")
            hits = owner.search(query.get("q", ""))
            return self._json(200, {"query": query.get("q", ""),
                                    "results": [{"title": h["title"], "url": h["url"], "content": h["snippet"],
                                                 "engine": "fixture"} for h in hits]})
        if url.path == "/brave/res/v1/web/search":
            if self.headers.get("X-Subscription-Token") != owner.api_key:
                return self._json(401, {"error": "bad token"})
            hits = owner.search(query.get("q", ""))[: int(query.get("count", 10))]
            return self._json(200, {"web": {"results": [{"title": h["title"], "url": h["url"],
                                                         "description": h["snippet"]} for h in hits]}})
        if url.path.startswith("/pages/"):
            page = WEB_PAGES / Path(url.path).name
            if page.is_file():
                return self._send(200, page.read_bytes(), "text/html; charset=utf-8")
            return self._send(404, b"<html><body>Not found</body></html>", "text/html")
        if url.path == "/redirect":
            return self._send(302, b"", "text/plain", {"Location": "/pages/harbor-lighthouse.html"})
        if url.path == "/flaky":
            with owner.lock:
                owner.flaky_left -= 1
                fail = owner.flaky_left >= 0
            if fail:
                return self._send(503, b"try later", "text/plain")
            return self._send(200, b"steady now", "text/plain; charset=utf-8")
        if url.path == "/always-503":
            return self._send(503, b"down", "text/plain")
        if url.path == "/doc.pdf":
            pdf = next((FIXTURES / "gaia_mini" / "2023" / "validation").glob("*.pdf"))
            return self._send(200, pdf.read_bytes(), "application/pdf")
        if url.path == "/blob.bin":
            return self._send(200, bytes(range(256)) * 4, "application/octet-stream")
        if url.path == "/notes.txt":
            return self._send(200, ("line of notes\n" * 4000).encode(), "text/plain; charset=utf-8")
        self._send(404, b"<html><body>Not found</body></html>", "text/html")

    def do_POST(self) -> None:
        owner: FixtureWebServer = self.server_owner
        url = urlparse(self.path)
        owner.count(url.path)
        raw = self._body()
        if url.path == "/serper/search":
            if self.headers.get("X-API-KEY") != owner.api_key:
                return self._json(403, {"message": "Unauthorized"})
            body = json.loads(raw or b"{}")
            hits = owner.search(body.get("q", ""))[: int(body.get("num", 10))]
            return self._json(200, {"searchParameters": {"q": body.get("q")},
                                    "organic": [{"title": h["title"], "link": h["url"], "snippet": h["snippet"],
                                                 "position": i + 1} for i, h in enumerate(hits)]})
        if url.path == "/tavily/search":
            if self.headers.get("Authorization") != f"Bearer {owner.api_key}":
                return self._json(401, {"detail": "bad key"})
            body = json.loads(raw or b"{}")
            hits = owner.search(body.get("query", ""))[: int(body.get("max_results", 5))]
            return self._json(200, {"query": body.get("query"),
                                    "results": [{"title": h["title"], "url": h["url"], "content": h["snippet"],
                                                 "score": 0.9} for h in hits]})
        if url.path == "/v1/audio/transcriptions":
            if b'name="file"' not in raw or b'name="model"' not in raw:
                return self._json(400, {"error": "multipart with file and model expected"})
            return self._json(200, {"text": owner.transcript})
        self._json(404, {"error": f"no route {url.path}"})


class FixtureWebServer(_Server):
    """Fixture pages plus search APIs. Provider base URLs: ``root`` (SearxNG), ``root + '/serper'``,
    ``root + '/tavily'``, ``root + '/brave'``; transcription base URL ``root + '/v1'``."""

    handler_class = _WebHandler

    def __init__(self, api_key: str = "fixture-key", flaky_failures: int = 2,
                 transcript: str = "The meeting moved to Thursday.") -> None:
        super().__init__()
        self.api_key, self.flaky_left, self.transcript = api_key, flaky_failures, transcript
        self.hits: dict[str, int] = {}
        self._index: list[dict[str, str]] | None = None

    def count(self, path: str) -> None:
        with self.lock:
            self.hits[path] = self.hits.get(path, 0) + 1

    def search(self, q: str) -> list[dict[str, str]]:
        if self._index is None:
            self._index = _page_index(self.root)
        terms = [t for t in re.findall(r"[a-z0-9]+", q.lower()) if len(t) > 2]
        scored = [(sum(t in p["text"] or t in p["title"].lower() for t in terms), p) for p in self._index]
        return [p for score, p in sorted(scored, key=lambda sp: -sp[0]) if score > 0]

    def env(self, provider: str = "searxng") -> dict[str, str]:
        """Environment variables that point ``provider`` at this server."""
        env = {"AWORLD_SEARCH_PROVIDER": provider}
        if provider == "searxng":
            env["AWORLD_SEARXNG_URL"] = self.root
        elif provider == "serper":
            env.update(SERPER_API_KEY=self.api_key, AWORLD_SERPER_URL=f"{self.root}/serper")
        elif provider == "tavily":
            env.update(TAVILY_API_KEY=self.api_key, AWORLD_TAVILY_URL=f"{self.root}/tavily")
        elif provider == "brave":
            env.update(BRAVE_API_KEY=self.api_key, AWORLD_BRAVE_URL=f"{self.root}/brave")
        return env
