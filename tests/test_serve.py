"""The HTTP service on the tiny model: every endpoint, bad inputs, concurrency, crash safety, schema."""

import base64
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from fastapi.testclient import TestClient

from searchr3.serve import ServeConfig, Service, create_app
from searchr3.service_process import ServiceProcess, free_port

DOCS = [
    {"_id": "d1", "title": "Aspirin", "text": "Aspirin inhibits platelet aggregation and thins the blood."},
    {"_id": "d2", "title": "Paris", "text": "Paris is the capital and largest city of France."},
    {"_id": "d3", "title": "", "text": "Photosynthesis turns light, water and carbon dioxide into sugar."},
    {"_id": "d4", "title": "Volcanoes", "text": "Magma rises through the crust and erupts as lava."},
]
LIMITS = ServeConfig(max_batch=4, max_chars=300, max_k=5, snapshot_every=3)


@pytest.fixture
def service(tiny, tmp_path):
    svc = Service(tiny, tmp_path / "index", LIMITS)
    yield svc
    svc.close()


@pytest.fixture
def client(service):
    with TestClient(create_app(service), base_url="http://localhost") as c:
        yield c


def error_of(response, status):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["message"], body
    return body["error"]


def test_health_and_models(client, tiny):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["model"] == tiny.name and health["dim"] == tiny.dim
    assert health["documents"] == 0
    models = client.get("/v1/models").json()
    assert models["object"] == "list" and [m["id"] for m in models["data"]] == [tiny.name]


def test_embeddings_match_the_library(client, tiny):
    texts = ["does aspirin thin the blood?", "capital of France"]
    body = client.post("/v1/embeddings", json={"input": texts, "model": tiny.name}).json()
    assert body["object"] == "list" and body["model"] == tiny.name
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert body["usage"]["prompt_tokens"] > 0
    got = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
    np.testing.assert_allclose(got, tiny.embed_queries(texts), atol=1e-6)

    one = client.post("/v1/embeddings", json={"input": texts[0], "input_type": "document"}).json()
    np.testing.assert_allclose(one["data"][0]["embedding"], tiny.embed_documents(texts[:1])[0], atol=1e-6)

    packed = client.post("/v1/embeddings", json={"input": texts, "encoding_format": "base64"}).json()
    decoded = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in packed["data"]])
    np.testing.assert_array_equal(decoded, got)


def test_the_openai_client_works(service, tiny):
    import openai

    with TestClient(create_app(service), base_url="http://localhost/v1") as http:
        client = openai.OpenAI(base_url="http://localhost/v1", api_key="-", http_client=http)
        texts = ["hello world", "second text"]
        response = client.embeddings.create(model=tiny.name, input=texts)  # the client asks for base64
        got = np.array([item.embedding for item in response.data], dtype=np.float32)
        np.testing.assert_array_equal(got, tiny.embed_queries(texts))
        assert response.usage.total_tokens > 0
        docs = client.embeddings.create(model=tiny.name, input=texts, encoding_format="float",
                                        extra_body={"input_type": "document"})
        np.testing.assert_allclose([d.embedding for d in docs.data], tiny.embed_documents(texts), atol=1e-6)
        with pytest.raises(openai.NotFoundError, match="not served here"):
            client.embeddings.create(model="text-embedding-3-small", input="x")


def test_reasoning_embeddings_return_traces(client, tiny):
    body = client.post("/v1/embeddings", json={"input": ["why is the sky blue?"], "reasoning": True}).json()
    item = body["data"][0]
    expected = tiny.reason(["why is the sky blue?"])[0]
    assert item["trace"] == expected.trace and item["forced"] == expected.forced
    np.testing.assert_allclose(item["embedding"], expected.vector, atol=1e-6)


def test_documents_search_get_delete(client, tiny):
    response = client.post("/v1/documents", json={"documents": DOCS[:3]})
    assert response.status_code == 200, response.text
    assert response.json() == {"upserted": 3, "ids": ["d1", "d2", "d3"], "count": 3, "truncated": []}
    assert client.get("/health").json()["documents"] == 3

    doc = client.get("/v1/documents/d1").json()
    assert doc == {"_id": "d1", "title": "Aspirin", "text": DOCS[0]["text"]}

    # Searching with a document's exact text as the query ranks that document against the library's own scores.
    hits = client.post("/v1/search", json={"query": "blood thinning", "k": 3}).json()
    assert len(hits["hits"]) == 3 and hits["trace"] is None
    scores = tiny.embed_queries(["blood thinning"]) @ tiny.embed_documents(
        [f"{d['title']}\n{d['text']}" if d["title"] else d["text"] for d in DOCS[:3]]).T
    assert [h["id"] for h in hits["hits"]] == [DOCS[i]["_id"] for i in np.argsort(-scores[0])]
    np.testing.assert_allclose([h["score"] for h in hits["hits"]], np.sort(scores[0])[::-1], atol=1e-5)

    reasoned = client.post("/v1/search", json={"query": "blood thinning", "k": 2, "reasoning": True}).json()
    assert isinstance(reasoned["trace"], str) and isinstance(reasoned["forced"], bool)
    assert len(reasoned["hits"]) == 2

    # An id twice in one request: the later one wins, as if sent one after another.
    twice = client.post("/v1/documents", json={"documents": [{"_id": "d9", "text": "first"},
                                                              {"_id": "d9", "text": "second"}]}).json()
    assert twice["ids"] == ["d9"] and client.get("/v1/documents/d9").json()["text"] == "second"
    client.delete("/v1/documents/d9")

    # Upsert replaces: same id, new text.
    client.post("/v1/documents", json={"documents": [{"_id": "d1", "text": "Replaced text."}]})
    assert client.get("/v1/documents/d1").json()["text"] == "Replaced text."
    assert client.get("/health").json()["documents"] == 3

    assert client.delete("/v1/documents/d2").json() == {"deleted": "d2", "count": 2}
    error_of(client.delete("/v1/documents/d2"), 404)
    error_of(client.get("/v1/documents/d2"), 404)
    assert "d2" not in [h["id"] for h in client.post("/v1/search", json={"query": "France", "k": 5}).json()["hits"]]


def test_ids_with_slashes_and_spaces_round_trip(client):
    ids = ["PMID/123", "a b ü", "x/..y", ".hidden"]  # four: LIMITS.max_batch
    response = client.post("/v1/documents", json={"documents": [{"_id": i, "text": f"text {n}"}
                                                                 for n, i in enumerate(ids)]})
    assert response.status_code == 200, response.text
    for n, doc_id in enumerate(ids):
        quoted = httpx.URL("http://x/").copy_with(path="/v1/documents/" + doc_id).raw_path.decode()
        response = client.get(quoted)
        assert response.status_code == 200 and response.json()["text"] == f"text {n}", (doc_id, response.text)
    assert client.delete("/v1/documents/PMID/123").json()["deleted"] == "PMID/123"
    assert client.get("/health").json()["documents"] == 3
    for bad in ["..", "../x", "a/./b", "a/.."]:  # unreachable by URL: refused up front
        error_of(client.post("/v1/documents", json={"documents": [{"_id": bad, "text": "t"}]}), 422)


def test_search_on_an_empty_index_returns_no_hits(client):
    response = client.post("/v1/search", json={"query": "anything"})
    assert response.status_code == 200, response.text
    assert response.json()["hits"] == []
    assert client.post("/v1/search", json={"query": "x", "k": 3.0}).status_code == 200  # JSON's integer 3.0


@pytest.mark.parametrize("path,body,status,param", [
    ("/v1/embeddings", {"input": ["a"] * 5}, 413, "input"),  # over max_batch
    ("/v1/embeddings", {"input": "x" * 301}, 413, "input"),  # over max_chars
    ("/v1/embeddings", {"input": 5}, 422, None),
    ("/v1/embeddings", {"input": []}, 422, "input"),
    ("/v1/embeddings", {"input": [""]}, 422, None),
    ("/v1/embeddings", {"input": ["a", None]}, 422, None),
    ("/v1/embeddings", {}, 422, "input"),
    ("/v1/embeddings", {"input": "a", "input_type": "passage"}, 422, "input_type"),
    ("/v1/embeddings", {"input": "a", "dimensions": 3}, 422, "dimensions"),
    ("/v1/embeddings", {"input": "a", "model": "gpt-4"}, 404, "model"),
    ("/v1/embeddings", {"input": "a", "reasoning": "very"}, 422, "reasoning"),
    ("/v1/search", {"query": "a", "k": 6}, 422, "k"),  # over max_k
    ("/v1/search", {"query": "a", "k": 0}, 422, "k"),
    ("/v1/search", {"query": ""}, 422, "query"),
    ("/v1/search", {"query": ["a"]}, 422, "query"),
    ("/v1/search", {"query": "q" * 301}, 413, "query"),
    ("/v1/documents", {"documents": [{"text": "no id"}]}, 422, None),
    ("/v1/documents", {"documents": [{"_id": "a"}]}, 422, None),
    ("/v1/documents", {"documents": [{"_id": "a", "text": 3}]}, 422, None),
    ("/v1/documents", {"documents": []}, 422, "documents"),
    ("/v1/documents", {"documents": [{"_id": str(i), "text": "t"} for i in range(5)]}, 413, "documents"),
    ("/v1/documents", {"documents": [{"_id": "a", "text": "t" * 301}]}, 413, "documents"),
    ("/v1/documents", [1, 2], 422, None),
    # strict: unknown fields and loose types are refused, not ignored or coerced
    ("/v1/search", {"query": "a", "top_k": 3}, 422, "top_k"),
    ("/v1/search", {"query": "a", "k": "3"}, 422, "k"),
    ("/v1/search", {"query": "a", "k": True}, 422, "k"),
    ("/v1/search", {"query": "a", "k": 3.5}, 422, "k"),
    ("/v1/embeddings", {"input": "a", "reasoning": 1}, 422, "reasoning"),
    ("/v1/embeddings", {"input": "a", "extra": None}, 422, "extra"),
    ("/v1/documents", {"documents": [{"_id": "a", "text": "t", "url": "x"}]}, 422, "documents.0.url"),
    ("/v1/documents", {"documents": [{"id": "a", "text": "t"}]}, 422, "documents.0"),
    ("/v1/documents", {"documents": [{"_id": "a", "text": "t"}], "upsert": True}, 422, "upsert"),
])
def test_bad_input_is_a_clear_4xx(client, path, body, status, param):
    error = error_of(client.post(path, json=body), status)
    if param is not None:
        assert error["param"] is not None and error["param"].startswith(param), error
    assert client.get("/health").json()["documents"] == 0  # nothing was written


@pytest.mark.parametrize("body,param", [
    (rb'{"documents": [{"_id": "a", "text": "bad \ud800 text"}]}', "documents.0.text"),
    (rb'{"documents": [{"_id": "\udfff", "text": "t"}]}', "documents.0._id"),
    (rb'{"documents": [{"_id": "a", "title": "\ud83d", "text": "t"}]}', "documents.0.title"),
])
def test_a_lone_surrogate_is_refused_not_stored(client, body, param):
    error = error_of(client.post("/v1/documents", content=body, headers={"content-type": "application/json"}), 422)
    assert error["param"] == param and "unicode" in error["message"]
    assert client.get("/health").json()["documents"] == 0


def test_malformed_json_and_unknown_routes(client):
    error_of(client.post("/v1/embeddings", content=b'{"input": ["a"', headers={"content-type": "application/json"}),
             422)
    error_of(client.post("/v1/search", content=b"not json", headers={"content-type": "application/json"}), 422)
    error_of(client.get("/v1/nothing"), 404)
    error_of(client.get("/v1/embeddings"), 405)


def test_concurrent_clients_get_single_client_results(service):
    """8 clients x 50 requests over loopback HTTP: no errors, every answer equals the lone client's."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            if server.started:
                break
            time.sleep(0.05)
        httpx.post(f"{base}/v1/documents", json={"documents": DOCS}).raise_for_status()
        queries = [f"query number {n} about {topic}" for n, topic in
                   enumerate(["blood", "France", "plants", "lava", "cities"])]
        requests = [("/v1/search", {"query": q, "k": 3}) for q in queries]
        requests += [("/v1/embeddings", {"input": [q]}) for q in queries]
        requests += [("/v1/search", {"query": queries[0], "k": 2, "reasoning": True})]

        def ask(http, i):
            path, body = requests[i % len(requests)]
            r = http.post(base + path, json=body, timeout=60)
            return i % len(requests), r.status_code, r.json()

        with httpx.Client() as http:
            expected = {i: ask(http, i)[2] for i in range(len(requests))}

        def client_run(c):
            with httpx.Client() as http:
                return [ask(http, c * 50 + j) for j in range(50)]

        with ThreadPoolExecutor(8) as pool:
            answers = [a for batch in pool.map(client_run, range(8)) for a in batch]
        assert len(answers) == 400
        assert all(status == 200 for _, status, _ in answers)
        for i, _, body in answers:
            assert body == expected[i]
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_acknowledged_writes_survive_kill_9(tiny_folder, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    index = tmp_path / "index"
    server = ServiceProcess(tiny_folder, index, max_length=48, env=env, timeout=120)
    base = server.url
    try:
        for doc in DOCS:  # one write per request: each committed to the database, none in a FAISS snapshot
            httpx.post(f"{base}/v1/documents", json={"documents": [doc]}, timeout=30).raise_for_status()
        httpx.delete(f"{base}/v1/documents/d3", timeout=30).raise_for_status()
        before = httpx.post(f"{base}/v1/search", json={"query": "capital city", "k": 5}, timeout=30).json()
    finally:
        server.kill()
    assert not (index / "faiss.json").exists()  # the writes were only in the database (and its WAL)

    with ServiceProcess(tiny_folder, index, port=server.port, max_length=48, env=env, timeout=120) as server:
        assert server.health()["documents"] == 3
        httpx.get(f"{base}/v1/documents/d4").raise_for_status()
        assert httpx.get(f"{base}/v1/documents/d3").status_code == 404
        after = httpx.post(f"{base}/v1/search", json={"query": "capital city", "k": 5}, timeout=30).json()
        assert after == before


def test_a_server_that_cannot_start_is_reported_with_its_output(tmp_path):
    with pytest.raises(RuntimeError, match="(?s)exited with [1-9].*no-such-model"):
        ServiceProcess(tmp_path / "no-such-model", tmp_path / "index", timeout=120)


def test_openapi_schema_lists_every_route_and_error(service):
    spec = create_app(service).openapi()
    assert set(spec["paths"]) == {"/v1/embeddings", "/v1/search", "/v1/documents", "/v1/documents/{doc_id}",
                                  "/health", "/v1/models"}
    for path, codes in [("/v1/embeddings", {"200", "404", "413", "422"}), ("/v1/search", {"200", "413", "422"}),
                        ("/v1/documents", {"200", "413", "422"})]:
        assert codes <= set(spec["paths"][path]["post"]["responses"])
    assert "/components/schemas/ErrorResponse" in json.dumps(spec["paths"]["/v1/search"]["post"]["responses"]["422"])


def test_generated_tests_are_derandomized():
    """conftest's hypothesis profile reaches the settings the schema test builds."""
    assert settings.default.derandomize and settings(max_examples=12).derandomize


def test_openapi_schema_matches_behaviour(service):
    """schemathesis sends requests generated from the schema (valid and not): no 500s, and every
    status code and response body is one the schema documents."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(service, host="testserver"))  # its Host
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 7
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            case.call_and_validate()

        check()
