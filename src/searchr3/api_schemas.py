"""The service's response bodies (OpenAI-shaped where OpenAI has an equivalent), as pydantic models.

Kept apart from serve.py so the wire format can be read in one place; requests depend on the
service's limits and are built by `serve.request_models`.
"""

from typing import Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class EmbeddingData(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str
    truncated: bool = Field(False, description="the text was longer than the model reads; its end was cut")
    trace: str | None = Field(None, description="the reasoning trace (reasoning only)")
    forced: bool | None = Field(None, description="whether the embed token had to be appended (reasoning only)")


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingData]
    model: str
    usage: Usage


class SearchHit(BaseModel):
    id: str
    score: float
    title: str
    text: str


class SearchResponse(BaseModel):
    query: str
    model: str
    hits: list[SearchHit]
    truncated: bool = Field(False, description="the query was longer than the model reads; its end was cut")
    trace: str | None = None
    forced: bool | None = None


class DocumentsResponse(BaseModel):
    upserted: int
    ids: list[str]
    count: int = Field(description="documents in the index after the upsert")
    truncated: list[str] = Field(default_factory=list, description="ids whose text the model read only in part")


class DocumentOut(BaseModel):
    id: str = Field(serialization_alias="_id")
    title: str
    text: str


class DeleteResponse(BaseModel):
    deleted: str
    count: int


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"
    model: str
    dim: int
    documents: int
    uptime_seconds: float


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "searchr3"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def error_response(status: int, message: str, kind: str, param: str | None = None,
                   code: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    """An error in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`."""
    body = ErrorResponse(error=ErrorDetail(message=message, type=kind, param=param, code=code))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)
