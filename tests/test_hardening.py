"""The service against hostile or odd requests: foreign Host headers, huge bodies, internal errors, long texts."""

import logging

import pytest
from fastapi.testclient import TestClient

from searchr3.serve import ServeConfig, Service, create_app
from searchr3.store import StoreError, StoreFullError

DOC = {"_id": "d1", "title": "Paris", "text": "Paris is the capital of France."}


@pytest.fixture
def make(tiny, tmp_path):
    services = []

    def build(host=None, base_url="http://localhost", **config):
        service = Service(tiny, tmp_path / f"index{len(services)}", ServeConfig(max_batch=4, max_chars=2000, **config))
        services.append(service)
        return TestClient(create_app(service, host), base_url=base_url)

    yield build
    for service in services:
        service.close()


@pytest.mark.parametrize("host,allowed", [
    ("localhost", True), ("localhost:8000", True), ("127.0.0.1:8000", True), ("[::1]:8000", True),
    ("192.168.1.20:8000", True), ("[fe80::1]", True),  # an IP address: a rebinding page cannot send one
    ("evil.example", False), ("evil.example:8000", False), ("localhost.evil.example", False),
    ("127.0.0.1.nip.io", False), ("", False), ("local host", False),
])
def test_only_loopback_names_and_addresses_are_served_by_default(make, host, allowed):
    client = make()
    for method, path, body in [("GET", "/health", None), ("POST", "/v1/documents", {"documents": [DOC]}),
                               ("GET", "/", None)]:
        response = client.request(method, path, json=body, headers={"host": host})
        if allowed:
            assert response.status_code == 200, (path, response.text)
        else:
            assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_host", path
    assert client.get("/health").json()["documents"] == (1 if allowed else 0)  # a refused write is not applied


def test_the_bound_address_and_configured_names_are_accepted(make):
    assert make(host="search.lan").get("/health", headers={"host": "search.lan:8000"}).status_code == 200
    assert make(host="0.0.0.0").get("/health", headers={"host": "other.lan"}).status_code == 400
    named = make(allowed_hosts=["search.internal"])
    assert named.get("/health", headers={"host": "search.internal:8000"}).status_code == 200
    assert named.get("/health", headers={"host": "localhost"}).status_code == 400  # the list replaces the default
    assert named.get("/health", headers={"host": "127.0.0.1"}).status_code == 200  # addresses stay accepted
    assert make(allowed_hosts=["*"]).get("/health", headers={"host": "anything"}).status_code == 200


def test_a_body_over_the_limit_is_refused_before_parsing(make, monkeypatch):
    client = make(max_body_bytes=2048)
    big = b'{"documents": [' + b" " * 4096 + b"]}"
    response = client.post("/v1/documents", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["error"]["code"] == "body_too_large"

    def chunks():  # no Content-Length: the limit is counted as the body arrives
        yield b'{"documents": ['
        for _ in range(10):
            yield b" " * 512
        yield b"]}"

    parsed = []
    monkeypatch.setattr("json.loads", lambda *a, **k: parsed.append(1))  # parsing it would be a failure
    response = client.post("/v1/documents", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413 and not parsed
    monkeypatch.undo()
    small = client.post("/v1/documents", json={"documents": [DOC]})
    assert small.status_code == 200, small.text


def test_an_internal_error_answers_a_generic_500_with_a_request_id(make, tiny, caplog):
    client = TestClient(make().app, base_url="http://localhost", raise_server_exceptions=False)
    service = client.app.state.service

    def broken(*args, **kwargs):
        raise RuntimeError("/secret/path/model.safetensors exploded")

    service.model.embed_queries, real = broken, service.model.embed_queries
    try:
        with caplog.at_level(logging.ERROR):
            response = client.post("/v1/search", json={"query": "x"})
    finally:
        service.model.embed_queries = real
    assert response.status_code == 500
    error = response.json()["error"]
    request_id = response.headers["x-request-id"]
    assert error["code"] == "internal_error" and request_id in error["message"]
    assert "secret" not in response.text and "RuntimeError" not in response.text
    assert request_id in caplog.text and "/secret/path/model.safetensors exploded" in caplog.text


@pytest.mark.parametrize("error,status,code", [(StoreFullError("disk full"), 507, "insufficient_storage"),
                                               (StoreError("I/O error"), 503, "storage_error")])
def test_a_write_the_store_refused_is_reported_and_not_applied(make, error, status, code):
    client = make()
    store = client.app.state.service.store.store

    def refuse(*args, **kwargs):
        raise error

    real, store.upsert = store.upsert, refuse
    response = client.post("/v1/documents", json={"documents": [DOC]})
    store.upsert = real
    assert response.status_code == status and response.json()["error"]["code"] == code
    assert "disk full" not in response.json()["error"]["message"] or status == 507
    assert client.get("/health").json()["documents"] == 0
    assert client.get("/v1/documents/d1").status_code == 404
    assert client.post("/v1/search", json={"query": "Paris"}).status_code == 200  # reads keep working
    assert client.post("/v1/documents", json={"documents": [DOC]}).status_code == 200  # and writes come back


def test_texts_longer_than_the_model_reads_are_reported_or_refused(make, tiny):
    long_text = "word " * (tiny.prompts.max_length + 20)
    short = "a short text"
    client = make()
    body = client.post("/v1/embeddings", json={"input": [short, long_text], "input_type": "document"}).json()
    assert [d["truncated"] for d in body["data"]] == [False, True]
    long_query = "word " * (tiny.prompts.query_max_length + 20)
    assert client.post("/v1/search", json={"query": long_query}).json()["truncated"] is True
    assert client.post("/v1/search", json={"query": short}).json()["truncated"] is False
    written = client.post("/v1/documents", json={"documents": [DOC, {"_id": "long", "text": long_text}]}).json()
    assert written["truncated"] == ["long"] and written["count"] == 2

    strict = make(overlong="refuse")
    for path, body, param in [("/v1/embeddings", {"input": [short, long_text], "input_type": "document"}, "input.1"),
                              ("/v1/search", {"query": long_query}, "query"),
                              ("/v1/documents", {"documents": [DOC, {"_id": "long", "text": long_text}]},
                               "documents.1")]:
        response = strict.post(path, json=body)
        assert response.status_code == 413, response.text
        assert response.json()["error"]["code"] == "input_too_long_for_model"
        assert response.json()["error"]["param"] == param
    assert strict.get("/health").json()["documents"] == 0  # the refused upsert wrote nothing
