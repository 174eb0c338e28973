"""``bamrec serve``: an HTTP candidate service, a thin layer over ``bamrec.retrieval.service``.

FastAPI (an ASGI app with request validation and OpenAPI docs at ``/docs``) served by uvicorn.
Endpoints:

- ``GET /``: the interest explorer page (``bamrec.serve.explorer``; ``/?user=ID`` opens a user), its
  script and style under ``/static/``.
- ``GET /health``: status and what is served (model, retrieval, sizes).
- ``POST /recommend``: ``{"user": id}`` or ``{"items": [ids...]}``, ``"k"`` (default 20),
  ``"exclude_history"`` (default false) -> ``{"items": [{"rank", "item", "score", "interest"}, ...]}``
  in the run's original ids, with the item metadata columns (``title``, ...) when the dataset has
  them; ``items`` is exactly the list ``bamrec recommend --json`` prints.
- ``POST /interests``: the same query -> ``{"interests": [[...D floats] x K], "history", "weights"
  [K][len(history)], "weights_kind", "cosine" [K][K], "top" [K][<=k]}``: the window the model read,
  what each interest draws from each of its items (attention or routing weights), the cosines
  between the interests and each interest's own top-k (``Candidates.explain``).
- ``POST /recommend/batch``, ``POST /interests/batch``: ``{"requests": [query, ...]}`` answered with one
  forward pass and one search -> ``{"results": [answer, ...]}`` in request order.

Every bad request gets a 4xx and ``{"error": "one line"}``: malformed JSON or fields 422, unknown
user or item 404, ``k`` out of range 422, a history, batch or body over the limits 413, no such
path 404, a wrong method 405. Nothing a
client sends stops the server; an unexpected failure is a 500 for that request only. Searches are
serialised by a lock (a faiss index's search parameters are per index, not per call).
"""

from __future__ import annotations

import errno
import socket
import threading
from typing import Any, Union

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from bamrec.errors import BamrecError, ConfigError, DataError, TooLargeError, UnknownIdError
from bamrec.retrieval.service import Candidates, Query
from bamrec.serve import explorer

Id = Union[int, str]
MAX_BODY_BYTES = 4 << 20  # 4 MiB: far above the largest allowed batch of histories


class QueryBody(BaseModel):
    """One query: a known user or an ad-hoc history (oldest first)."""

    model_config = ConfigDict(extra="forbid")
    user: Id | None = Field(default=None, description="original user id of the run's dataset")
    items: list[Id] | None = Field(default=None, description="ad-hoc history of original item ids, oldest first")
    k: int = Field(default=20, description="number of items to return")
    exclude_history: bool = Field(default=False, description="never return items of the history")

    def query(self) -> Query:
        return Query(user=self.user, items=self.items, k=self.k, exclude_history=self.exclude_history)


class BatchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    requests: list[QueryBody]


class Item(BaseModel):
    """A recommended item; the dataset's item metadata columns (title, ...) follow when it has some."""

    model_config = ConfigDict(extra="allow")
    rank: int
    item: Id
    score: float
    interest: int


class RecommendAnswer(BaseModel):
    items: list[Item]


class HistoryItem(BaseModel):
    """An item of the history the model read; its metadata columns follow when the dataset has some."""

    model_config = ConfigDict(extra="allow")
    item: Id


class InterestsAnswer(BaseModel):
    interests: list[list[float]] = Field(description="the K interest vectors [K][D]")
    history: list[HistoryItem] = Field(description="the window the model read: the last seq_len items, oldest first")
    history_length: int = Field(description="the whole history's length (the window holds at most seq_len)")
    weights_kind: str | None = Field(description="attention (ComiRec-SA, REMI), routing (MIND, ComiRec-DR), "
                                     "mean (single), or null for a model without per-interest weights")
    weights: list[list[float]] | None = Field(description="[K][len(history)]: what each interest draws from "
                                              "each history item")
    cosine: list[list[float]] = Field(description="[K][K] cosine similarity between the interest vectors")
    top: list[list[Item]] = Field(description="[K][<=k] each interest's own best items by m_k . e_i "
                                  "(k and exclude_history apply)")


class BatchRecommendAnswer(BaseModel):
    results: list[RecommendAnswer]


class BatchInterestsAnswer(BaseModel):
    results: list[InterestsAnswer]


def _status(error: BamrecError) -> int:
    if isinstance(error, UnknownIdError):
        return 404
    if isinstance(error, TooLargeError):
        return 413
    if isinstance(error, (ConfigError, DataError)):
        return 422
    return 400


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _validation_message(error: RequestValidationError) -> str:
    problems = []
    for item in error.errors()[:3]:
        if item.get("type") == "json_invalid":
            # pydantic puts the character offset where a field name would be: ("body", 12)
            offset = next((part for part in item.get("loc", ()) if isinstance(part, int)), None)
            reason = (item.get("ctx") or {}).get("error") or item.get("msg", "invalid")
            at = f" at character {offset}" if offset is not None else ""
            problems.append(f"the body is not valid JSON ({reason}{at})")
            continue
        where = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
        problems.append(f"{where or 'body'}: {item.get('msg', 'invalid')}")
    return _one_line("malformed request: " + "; ".join(problems))


class BodyLimit:
    """ASGI middleware: reads a request's body (at most ``limit`` bytes) before the app sees it, so a
    body over the limit is a 413 ``{"error": ...}`` whether or not it says its length (chunked uploads
    do not). The server (h11) has already refused a Content-Length that is not a number."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        too_large = JSONResponse({"error": f"request body larger than {self.limit} bytes"}, status_code=413)
        if length.isdigit() and int(length) > self.limit:  # refused before a byte of it is read
            await too_large(scope, receive, send)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.limit:
                await too_large(scope, receive, send)
                return
        body = b"".join(chunks)
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return await receive()  # after the body: disconnect notices come from the server
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def create_app(candidates: Candidates, info: dict[str, Any] | None = None) -> FastAPI:
    """The FastAPI app answering queries with ``candidates``; ``info`` is shown by ``/health``."""
    app = FastAPI(title="bamrec candidate service", version="1",
                  description="Multi-interest candidate generation (bamrec). Ids are the run's original ids.")
    lock = threading.Lock()
    health = {"status": "ok", **(info or {})}

    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        # Starlette's own refusals (no such path, wrong method) in the one error shape, not {"detail"}.
        reason = {404: f"no endpoint {request.url.path}; see /docs",
                  405: f"{request.method} is not allowed on {request.url.path}"}.get(error.status_code)
        return JSONResponse({"error": reason or _one_line(error.detail)}, status_code=error.status_code,
                            headers=getattr(error, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def malformed(_request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": _validation_message(error)}, status_code=422)

    @app.exception_handler(BamrecError)
    async def refused(_request: Request, error: BamrecError) -> JSONResponse:
        return JSONResponse({"error": _one_line(error)}, status_code=_status(error))

    @app.exception_handler(Exception)
    async def failed(_request: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"error": _one_line(f"internal error: {type(error).__name__}: {error}")}, status_code=500)

    @app.get("/health")
    def get_health() -> dict[str, Any]:
        return health

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def get_explorer(request: Request) -> HTMLResponse:
        """The interest explorer page; ``/?user=ID`` (or ``?items=1,2,3``) opens that query."""
        page = explorer.render_page(candidates, health, request.query_params, lock)
        return HTMLResponse(page, headers=explorer.HEADERS)

    app.mount("/static", StaticFiles(directory=explorer.STATIC_DIR), name="static")

    def recommend(queries: list[Query]) -> list[dict[str, Any]]:
        with lock:
            lists = candidates.recommend(queries)
        return [{"items": [r.as_dict() for r in recs]} for recs in lists]

    def interests(queries: list[Query]) -> list[dict[str, Any]]:
        with lock:
            return candidates.explain(queries)

    @app.post("/recommend", response_model=RecommendAnswer)
    def post_recommend(body: QueryBody) -> dict[str, Any]:
        """Top-k items of one user or history."""
        return recommend([body.query()])[0]

    @app.post("/recommend/batch", response_model=BatchRecommendAnswer)
    def post_recommend_batch(body: BatchBody) -> dict[str, Any]:
        """Top-k items of several queries, answered together."""
        return {"results": recommend([q.query() for q in body.requests])}

    @app.post("/interests", response_model=InterestsAnswer)
    def post_interests(body: QueryBody) -> dict[str, Any]:
        """The K interest vectors of one user or history, the weights each puts on the history items, their
        cosines and each interest's own top-k."""
        return interests([body.query()])[0]

    @app.post("/interests/batch", response_model=BatchInterestsAnswer)
    def post_interests_batch(body: BatchBody) -> dict[str, Any]:
        return {"results": interests([q.query() for q in body.requests])}

    return app


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (0: a free port), or a ConfigError in one line
    when the port is taken or the address cannot be used; bound before anything says it is serving."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise ConfigError(f"--host {host}: not an address of this machine ({exc.strerror})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: no wait after a restart
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"port {port} on {host} is in use by another process: stop it or pass "
                              "--port with another port (--port 0 picks a free one)") from None
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


def serve(app: FastAPI, sock: socket.socket, log_level: str = "warning") -> None:
    """Run ``app`` with uvicorn on the bound ``sock`` until interrupted."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, access_log=False))
    server.run(sockets=[sock])
