"""HTTP service: OpenAI-compatible embeddings, search and document upserts over one live index.

One model and one index serve every client. Requests run in FastAPI's thread pool; their model
work goes to one model thread (`microbatch`), which gathers concurrent requests of one kind for a
few milliseconds (`batch_wait_ms`) and runs them as one batch, so eight clients get more than one
client's throughput; a batched vector equals a lone request's up to float rounding. The index
sits behind one lock, so writes are serialised and no request sees a half-applied write. Writes go
through `DurableIndex`: an acknowledged upsert or delete is a committed SQLite transaction, so it
survives `kill -9`, and a write that could not commit is answered with an error (507 when the
disk is full) and never applied.

Errors always come back as JSON in OpenAI's shape, `{"error": {"message", "type", "param",
"code"}}`: 401 for a missing or wrong API key, 404 for an unknown model or document, 413 when a
request exceeds the configured batch or text limits, 422 for malformed JSON, wrong types and
out-of-range values.

With an API key configured, every route but the public ones needs `Authorization: Bearer KEY`
(`auth.py`: one ASGI middleware, run before any body is read).
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoints' annotations at
# run time, and the request bodies are classes built per config inside `create_app`.
import base64
import logging
import sys
import threading
import time
import uuid
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from pathlib import Path
from typing import Annotated, Literal

from ._extras import require

require("serve", "fastapi")  # before the imports below: a missing extra is named, not a bare ImportError
require("serve", "uvicorn")

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from ._version import __version__
from .hybrid import HybridConfig
from .index import KINDS
from .durable import DurableIndex
from .lexical import BM25Index
from .modeling import SearchR3
from .store import StoreError, StoreFullError
from .prompts import document_text
from .api_schemas import (DeleteResponse, DocumentOut, DocumentsResponse, EmbeddingData, EmbeddingResponse,
                          ErrorResponse, HealthResponse, ModelCard, ModelList, SearchHit, SearchResponse, Usage,
                          error_response)
from .auth import BearerAuth, document_auth, exposure_warning
from .guards import BodyLimit, HostGuard, allowed_hosts
from .microbatch import MicroBatcher
from .search import lexical_index, rank

log = logging.getLogger(__name__)


@dataclass
class ServeConfig:
    """Service limits and storage options (the `serve:` section of configs/serve.yaml)."""

    max_batch: int = field(default=64, metadata={"ge": 1})  # texts per /v1/embeddings, documents per /v1/documents
    max_chars: int = field(default=20_000, metadata={"ge": 1})  # characters per text (longer: rejected, not cut)
    max_k: int = field(default=100, metadata={"ge": 1})  # hits per search
    # A new index: flat (exact), hnsw (approximate), or auto (flat until index.HNSW_FROM documents, then hnsw).
    index_kind: str = field(default="auto", metadata={"choices": KINDS})
    snapshot_every: int = field(default=1000, metadata={"ge": 1})  # writes between FAISS snapshots (derived state)
    # Clients must send `Authorization: Bearer <api_key>`; None: no check. Prefer
    # `--api-key` or $SEARCHR3_API_KEY to writing the key into a config file.
    api_key: str | None = None
    # Host names accepted besides IP addresses (guards.py); None: loopback names and the bound name; ["*"]: any.
    allowed_hosts: list[str] | None = None
    max_body_bytes: int = field(default=16 * 2**20, metadata={"ge": 1024})  # larger bodies: 413 before parsing
    # A text longer than the model keeps (its max_length tokens): "report" embeds the kept part and
    # says so per item in the response; "refuse" answers 413 and embeds nothing.
    overlong: str = field(default="report", metadata={"choices": ("report", "refuse")})
    # Concurrent embedding requests of one kind are gathered for up to this long and run as one batch
    # (0: only requests already waiting are gathered).
    batch_wait_ms: float = field(default=5.0, metadata={"ge": 0})
    batch_max_texts: int = field(default=64, metadata={"ge": 1})  # texts gathered into one model call


class ServiceError(Exception):
    """An error with an HTTP status, reported to the client as OpenAI-style JSON."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = status, message, kind, param, code


# ---------------------------------------------------------------------------- schemas
def _whole(value):
    """JSON Schema counts 4.0 as an integer, so it is one; "4", true and 4.5 stay errors (strict)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


WholeNumber = Annotated[int, BeforeValidator(_whole)]


def request_models(config: ServeConfig, dim: int) -> SimpleNamespace:
    """Request bodies with the configured limits in their schema, so clients (and schema-driven
    test tools) see them. Breaking a size limit is answered 413, any other violation 422."""
    Text = Annotated[str, Field(min_length=1, max_length=config.max_chars)]
    # Any characters, but no "." or ".." path segment: HTTP clients collapse those in
    # /v1/documents/{id}, so such a document could be written but never read or deleted.
    Id = Annotated[str, Field(min_length=1, max_length=512, pattern=r"^(?!(?:.*/)?\.\.?(?:/|$)).+$")]

    class Strict(BaseModel):  # unknown fields and loose types ("3" or true for an integer) are errors
        model_config = ConfigDict(extra="forbid", strict=True)

    class EmbeddingRequest(Strict):
        input: Text | Annotated[list[Text], Field(min_length=1, max_length=config.max_batch)] = Field(
            description="one text or a list of texts")
        model: str | None = Field(None, description="the served model's name (optional; another name is a 404)")
        input_type: Literal["query", "document"] = Field(
            "query", description="query: the query template; document: one forward pass, never reasoning")
        reasoning: bool = Field(False, description="reason about each query before embedding it; documents "
                                "never reason (one forward pass), so it is ignored for them")
        encoding_format: Literal["float", "base64"] = Field(
            "float", description="float: lists of numbers; base64: little-endian float32 bytes")
        dimensions: Annotated[int, Field(ge=dim, le=dim), BeforeValidator(_whole)] | None = Field(
            None, description="the model's dimension (vectors are never shortened)")
        user: str | None = None

    class SearchRequest(Strict):
        query: Text
        k: WholeNumber = Field(min(10, config.max_k), ge=1, le=config.max_k, description="hits to return")
        reasoning: bool = Field(False, description="reason about the query before embedding it")
        hybrid: bool = Field(False, description="fuse the dense ranking with BM25 over the stored documents "
                             "(how: the service's `hybrid:` config); scores are then fused scores")

    class DocumentIn(Strict):
        model_config = ConfigDict(extra="forbid", strict=True, regex_engine="python-re")  # the id pattern: look-ahead

        id: Id = Field(alias="_id")
        title: Annotated[str, Field(max_length=config.max_chars)] = ""
        text: Text

    class DocumentsRequest(Strict):
        documents: Annotated[list[DocumentIn], Field(min_length=1, max_length=config.max_batch)]

    return SimpleNamespace(embedding=EmbeddingRequest, search=SearchRequest, documents=DocumentsRequest)


def _errors(*codes: int) -> dict:
    return {code: {"model": ErrorResponse} for code in codes}


@contextmanager
def store_errors():
    """A write the store refused was not applied: say so (507 for a full disk), never 500."""
    try:
        yield
    except StoreFullError as e:
        log.error("write refused: %s", e)
        raise ServiceError(507, "the index's disk is full: the write was not applied; reads still work, and "
                           "writes work again once space is freed", "server_error", code="insufficient_storage") from e
    except StoreError as e:
        log.error("write refused: %s", e)
        raise ServiceError(503, "the index could not be written: the write was not applied", "server_error",
                           code="storage_error") from e


# ---------------------------------------------------------------------------- service
class Service:
    """The model (behind its micro-batching thread), the live index and the lock that serialises its use.

    Hybrid search's BM25 side is built from the documents the index stores, so it recovers
    from a crash with them (the database holds the documents, not only the vectors). bm25s
    indexes cannot change, so a write drops the BM25 index and the next hybrid search rebuilds
    it from the stored documents, under the same lock: a search never sees BM25 out of step with
    the vectors, and writes cost nothing extra when nobody asks for hybrid. A rebuild takes
    seconds (6 s for wiki-known-item's 10,033 articles on a busy 2-core machine): acceptable at
    the sizes one process serves; a write-heavy service with a large index would want an
    updatable lexical index instead.
    """

    def __init__(self, model: SearchR3, index_dir: str | Path, config: ServeConfig | None = None,
                 hybrid: HybridConfig | None = None):
        self.model, self.config = model, config or ServeConfig()
        self.hybrid = hybrid or HybridConfig()
        self.lock = threading.Lock()  # the index; the model and tokenizer belong to the batcher's thread
        self.batcher = MicroBatcher(model, self.config.batch_wait_ms, self.config.batch_max_texts)
        self.store = DurableIndex.open(index_dir, model.name, model.dim, self.config.index_kind,
                                       self.config.snapshot_every, fingerprint=model.weights_fingerprint)
        self._lexical: BM25Index | None = None  # BM25 over the stored documents; None: rebuild at next use
        self.closed = False
        self.started = time.time()

    def lexical(self) -> BM25Index:
        """BM25 over the index's current documents (call with the lock held)."""
        if self._lexical is None:
            self._lexical = lexical_index(self.store.index)
        return self._lexical

    def check_model(self, name: str | None) -> None:
        """Accept no name, the served name, or (for a model loaded from a folder) the folder's name."""
        if name is not None and name not in (self.model.name, Path(self.model.name).name):
            raise ServiceError(404, f"model {name!r} is not served here; this service runs {self.model.name!r}",
                               param="model", code="model_not_found")

    def cut_texts(self, texts: list[str], kind: str, param: str) -> list[bool]:
        """Which texts are longer than the model keeps; with `overlong: refuse`, a 413 naming the first."""
        build = self.model.prompts.document if kind == "document" else self.model.prompts.query
        cut = [build(text).truncated for text in texts]
        if any(cut) and self.config.overlong == "refuse":
            limit = self.model.prompts.max_length if kind == "document" else self.model.prompts.query_max_length
            where = f"{param}.{cut.index(True)}" if len(texts) > 1 else param
            raise ServiceError(413, f"{where}: longer than the {limit} tokens the model reads; shorten it or split "
                               "it (the service is configured to refuse rather than cut: serve.overlong)",
                               param=where, code="input_too_long_for_model")
        return cut

    def token_count(self, texts: list[str]) -> int:
        return sum(len(ids) for ids in self.model.tokenizer(texts, add_special_tokens=False)["input_ids"])

    # Each method takes a body validated by the models of `request_models(self.config)`.
    def embeddings(self, req) -> EmbeddingResponse:
        self.check_model(req.model)
        texts = [req.input] if isinstance(req.input, str) else list(req.input)
        cut, tokens = self.batcher.call(lambda: (self.cut_texts(texts, req.input_type, "input"),
                                                 self.token_count(texts)))
        traces = None
        if req.input_type == "document":
            vectors = self.batcher.run("document", texts)
        elif req.reasoning:
            traces = self.batcher.run("reasoning", texts)
            vectors = self.model.stack(traces)
        else:
            vectors = self.batcher.run("query", texts)
        data = []
        for i, vector in enumerate(vectors):
            embedding = (base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
                         if req.encoding_format == "base64" else vector.tolist())
            data.append(EmbeddingData(index=i, embedding=embedding, truncated=cut[i],
                                      trace=traces[i].trace if traces else None,
                                      forced=traces[i].forced if traces else None))
        return EmbeddingResponse(data=data, model=self.model.name, usage=Usage(prompt_tokens=tokens,
                                                                                total_tokens=tokens))

    def search(self, req) -> SearchResponse:
        cut = self.batcher.call(lambda: self.cut_texts([req.query], "query", "query"))[0]
        traces = self.batcher.run("reasoning", [req.query]) if req.reasoning else None
        vectors = self.model.stack(traces) if traces else self.batcher.run("query", [req.query])
        with self.lock:
            index = self.store.index
            index.check_model(self.model.name, self.model.dim, self.model.weights_fingerprint)
            result = rank(index, [req.query], vectors, k=req.k, traces=traces, hybrid=req.hybrid,
                          hybrid_config=self.hybrid, lexical=self.lexical() if req.hybrid else None)[0]
        hits = [SearchHit(id=h.id, score=h.score, title=h.title, text=h.text) for h in result.hits]
        return SearchResponse(query=req.query, model=self.model.name, hits=hits, truncated=cut, trace=result.trace,
                              forced=result.forced)

    def upsert(self, req) -> DocumentsResponse:
        # An id given twice in one request: the later document wins, as if sent one after another.
        docs = list({d.id: d for d in req.documents}.values())
        ids = [d.id for d in docs]
        texts = [document_text(d.title, d.text) for d in docs]
        cut = self.batcher.call(lambda: self.cut_texts(texts, "document", "documents"))
        vectors = self.batcher.run("document", texts)
        with self.lock:
            self._lexical = None  # before the write: even a failed one may have changed the index
            with store_errors():
                self.store.upsert(ids, vectors, [{"title": d.title, "text": d.text} for d in docs])
            count = len(self.store)
        return DocumentsResponse(upserted=len(ids), ids=ids, count=count,
                                 truncated=[i for i, c in zip(ids, cut) if c])

    def get(self, doc_id: str) -> DocumentOut:
        with self.lock:
            if doc_id not in self.store.index:
                raise ServiceError(404, f"no document with _id {doc_id!r}", param="id", code="document_not_found")
            doc = self.store.index.documents.get(doc_id, {})
        return DocumentOut(id=doc_id, title=doc.get("title", ""), text=doc.get("text", ""))

    def delete(self, doc_id: str) -> DeleteResponse:
        with self.lock:
            self._lexical = None
            with store_errors():
                deleted = self.store.delete([doc_id])
            if not deleted:
                raise ServiceError(404, f"no document with _id {doc_id!r}", param="id", code="document_not_found")
            count = len(self.store)
        return DeleteResponse(deleted=doc_id, count=count)

    def health(self) -> HealthResponse:
        return HealthResponse(model=self.model.name, dim=self.model.dim, documents=len(self.store),
                              uptime_seconds=round(time.time() - self.started, 3))

    def close(self) -> None:
        """Stop the model thread, then snapshot and release the index (once; later calls do nothing)."""
        self.batcher.close()
        with self.lock:
            if not self.closed:
                self.closed = True
                self.store.close()


# ---------------------------------------------------------------------------- the search page
WEB_DIR = Path(__file__).parent / "web"  # the search page: plain HTML, JS and CSS (package data)
# The page loads its own files only: no inline script, no other origin, no framing.
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; base-uri 'none'; "
                                           "form-action 'self'; frame-ancestors 'none'",
                "X-Content-Type-Options": "nosniff"}
SIZE_ERRORS = ("too_long", "string_too_long")  # pydantic's error types for max_length on lists / strings


def _describe(errors: list) -> tuple[str, str | None]:
    """One readable line from pydantic's error list, and the parameter it concerns.

    For a union (`input`: a string or a list of strings) pydantic reports one error per
    branch; the deepest one says most (`input.0` is empty, rather than "not a string").
    """
    if not errors:
        return "invalid request", None
    first = max(errors, key=lambda e: len(e.get("loc", ())))
    loc = list(first.get("loc", ()))
    if loc and loc[0] in ("body", "query", "path", "header", "cookie"):
        loc = loc[1:]
    where = ".".join(str(x) for x in loc if not (isinstance(x, str) and ("[" in x or x.startswith("constrained"))))
    message = first.get("msg", "invalid request")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return (f"{where}: {message}{more}" if where else f"{message}{more}"), (where or None)


def create_app(service: Service, host: str | None = None) -> FastAPI:
    """Build the FastAPI app around a `Service` (tests use it in-process; `serve` runs it).

    `host` is the address the server binds; with no `allowed_hosts` configured, it and the loopback
    names are the Host headers accepted.
    """
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        # Shutdown, for SIGINT and SIGTERM alike: uvicorn re-raises the signal once it has
        # stopped serving, and a re-raised SIGTERM ends the process before any `finally` runs.
        service.close()

    app = FastAPI(title="searchr3", version=__version__, lifespan=lifespan,
                  description="Reasoning embeddings: OpenAI-compatible embeddings, search, document upserts.")
    app.state.service = service
    # The last added runs first: Host header, then the API key, then the body's size.
    app.add_middleware(BodyLimit, max_bytes=service.config.max_body_bytes)
    if service.config.api_key:
        app.add_middleware(BearerAuth, key=service.config.api_key)
        document_auth(app)
    app.add_middleware(HostGuard, hosts=allowed_hosts(service.config.allowed_hosts, host))

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError):
        return error_response(exc.status, exc.message, exc.kind, exc.param, exc.code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        too_large = [e for e in errors if e.get("type") in SIZE_ERRORS]
        if too_large:  # over max_batch or max_chars: the request is too large, not malformed
            message, param = _describe(too_large)
            code = "too_many_inputs" if too_large[0]["type"] == "too_long" else "input_too_long"
            return error_response(413, message, "invalid_request_error", param, code)
        message, param = _describe(errors)
        return error_response(422, message, "invalid_request_error", param)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        return error_response(exc.status_code, str(exc.detail), "invalid_request_error")

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception):  # a bug must not take the service down
        # The details (paths, internals) go to the log under an id the client can quote, not to the client.
        request_id = uuid.uuid4().hex[:16]
        log.error("request %s (%s %s) failed", request_id, request.method, request.url.path, exc_info=exc)
        return error_response(500, f"internal error (request id {request_id}); the server log has the details",
                              "server_error", code="internal_error", headers={"X-Request-Id": request_id})

    bodies = request_models(service.config, service.model.dim)
    EmbeddingRequest, SearchRequest, DocumentsRequest = bodies.embedding, bodies.search, bodies.documents

    @app.post("/v1/embeddings", response_model=EmbeddingResponse, responses=_errors(404, 413, 422))
    def embeddings(req: EmbeddingRequest) -> EmbeddingResponse:
        """Embed texts as queries (optionally reasoning first) or as documents."""
        return service.embeddings(req)

    @app.post("/v1/search", response_model=SearchResponse, responses=_errors(413, 422))
    def search(req: SearchRequest) -> SearchResponse:
        """Rank the index's documents for one query; with reasoning the trace comes back too."""
        return service.search(req)

    @app.post("/v1/documents", response_model=DocumentsResponse, responses=_errors(413, 422))
    def upsert(req: DocumentsRequest) -> DocumentsResponse:
        """Add or replace documents; committed to the index database when the response arrives."""
        return service.upsert(req)

    @app.get("/v1/documents/{doc_id:path}", response_model=DocumentOut, responses=_errors(404, 422),
             response_model_by_alias=True)
    def get_document(doc_id: str) -> DocumentOut:
        """Return a stored document's title and text."""
        return service.get(doc_id)

    @app.delete("/v1/documents/{doc_id:path}", response_model=DeleteResponse, responses=_errors(404, 422))
    def delete_document(doc_id: str) -> DeleteResponse:
        """Remove a document; durable when the response arrives."""
        return service.delete(doc_id)

    @app.get("/health", response_model=HealthResponse)
    def health() -> HealthResponse:
        return service.health()

    @app.get("/v1/models", response_model=ModelList)
    def models() -> ModelList:
        """The one model this service runs (OpenAI's list shape)."""
        return ModelList(data=[ModelCard(id=service.model.name, created=int(service.started))])

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        """The search page; its script calls the API above from the browser."""
        return FileResponse(WEB_DIR / "index.html", headers=PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    return app


def run(service: Service, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Serve until interrupted, then snapshot the index."""
    import uvicorn

    warning = exposure_warning(host, service.config.api_key)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    try:
        uvicorn.run(create_app(service, host), host=host, port=port, log_level=log_level, workers=1)
    finally:
        service.close()  # already closed by the app's shutdown, unless uvicorn failed to start
