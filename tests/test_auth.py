"""The service's API key: which routes it guards, how a refusal looks, the CLI's key and the warning."""

import os

import httpx
import numpy as np
import openai
import pytest
from fastapi.testclient import TestClient

from searchr3.cli import build_parser, serve_config
from searchr3.serve import ServeConfig, Service, create_app, exposure_warning
from searchr3.service_process import ServiceProcess

KEY = "s3cret-key"
DOC = {"_id": "d1", "title": "Aspirin", "text": "Aspirin inhibits platelet aggregation."}
# Every protected route with a request it answers 200 once the key is right (d1 exists).
ROUTES = [
    ("POST", "/v1/embeddings", {"input": ["hello"]}),
    ("POST", "/v1/search", {"query": "blood", "k": 1}),
    ("POST", "/v1/documents", {"documents": [DOC]}),
    ("GET", "/v1/documents/d1", None),
    ("GET", "/v1/models", None),
    ("DELETE", "/v1/documents/d1", None),
]
PUBLIC = ["/health", "/", "/static/app.js", "/static/style.css", "/openapi.json", "/docs"]


def serve(tiny, tmp_path, key):
    service = Service(tiny, tmp_path / "index", ServeConfig(max_batch=4, max_chars=300, api_key=key))
    service.store.upsert(["d1"], tiny.embed_documents([DOC["text"]]), [{"title": DOC["title"], "text": DOC["text"]}])
    return service


@pytest.fixture
def keyed(tiny, tmp_path):
    service = serve(tiny, tmp_path, KEY)
    with TestClient(create_app(service), base_url="http://localhost") as client:
        yield client
    service.close()


def refusal(response, code):
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {"error": {"message": response.json()["error"]["message"],
                                         "type": "invalid_request_error", "param": None, "code": code}}
    return response.json()["error"]["message"]


def test_without_a_key_configured_every_route_is_open(tiny, tmp_path):
    service = serve(tiny, tmp_path, None)
    with TestClient(create_app(service), base_url="http://localhost") as client:
        for method, path, body in ROUTES:
            assert client.request(method, path, json=body).status_code == 200, path
        assert "securitySchemes" not in client.get("/openapi.json").json()["components"]
    service.close()


@pytest.mark.parametrize("method,path,body", ROUTES)
def test_a_protected_route_needs_the_right_bearer_key(keyed, method, path, body):
    assert "Authorization" in refusal(keyed.request(method, path, json=body), "missing_api_key")
    assert refusal(keyed.request(method, path, json=body, headers={"Authorization": "Bearer wrong"}),
                   "invalid_api_key") == "invalid API key"
    assert refusal(keyed.request(method, path, json=body, headers={"Authorization": f"Bearer {KEY}x"}),
                   "invalid_api_key") == "invalid API key"  # a right prefix is still wrong
    assert refusal(keyed.request(method, path, json=body, headers={"Authorization": "Bearer "}), "invalid_api_key")
    for wrong_scheme in [f"Basic {KEY}", f"Token {KEY}", KEY]:
        assert "Bearer scheme" in refusal(
            keyed.request(method, path, json=body, headers={"Authorization": wrong_scheme}), "invalid_api_key")
    right = keyed.request(method, path, json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert right.status_code == 200, right.text


def test_the_scheme_is_case_insensitive(keyed):
    assert keyed.get("/v1/models", headers={"Authorization": f"bearer {KEY}"}).status_code == 200


def test_health_page_static_files_and_docs_stay_open(keyed):
    for path in PUBLIC:
        assert keyed.get(path).status_code == 200, path
    assert keyed.get("/health").json()["documents"] == 1


def test_refusal_comes_before_parsing_or_routing(keyed):
    refusal(keyed.post("/v1/search", content=b"not json", headers={"content-type": "application/json"}),
            "missing_api_key")
    refusal(keyed.get("/v1/no-such-route"), "missing_api_key")  # routes added later are guarded too
    refusal(keyed.get("/static-not-really"), "missing_api_key")
    assert keyed.get("/v1/no-such-route", headers={"Authorization": f"Bearer {KEY}"}).status_code == 404


def test_openapi_declares_the_bearer_scheme_on_protected_routes(keyed):
    spec = keyed.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"] == {"bearer": {"type": "http", "scheme": "bearer"}}
    for method, path, _ in ROUTES:
        operation = spec["paths"][path.replace("d1", "{doc_id}")][method.lower()]
        assert operation["security"] == [{"bearer": []}] and "401" in operation["responses"], path
    assert "security" not in spec["paths"]["/health"]["get"]


def test_the_key_comes_from_the_flag_else_the_environment(monkeypatch):
    parse = build_parser().parse_args
    monkeypatch.delenv("SEARCHR3_API_KEY", raising=False)
    assert serve_config(parse(["serve", "--index", "ix"])).api_key is None
    monkeypatch.setenv("SEARCHR3_API_KEY", "from-env")
    assert serve_config(parse(["serve", "--index", "ix"])).api_key == "from-env"
    assert serve_config(parse(["serve", "--index", "ix", "--api-key", "from-flag"])).api_key == "from-flag"


@pytest.mark.parametrize("host,warns", [("127.0.0.1", False), ("127.0.0.2", False), ("localhost", False),
                                        ("::1", False), ("[::1]", False), ("0.0.0.0", True), ("::", True),
                                        ("192.168.1.20", True), ("myhost.example", True)])
def test_exposure_warning_on_non_loopback_hosts_without_a_key(host, warns):
    assert (exposure_warning(host, None) is not None) == warns
    assert exposure_warning(host, KEY) is None


def test_the_openai_client_needs_the_key(tiny_folder, tmp_path):
    """A real `searchr3 serve` child with $SEARCHR3_API_KEY, called by the official client."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "SEARCHR3_API_KEY": KEY}
    with ServiceProcess(tiny_folder, tmp_path / "index", max_length=48, env=env, timeout=120) as server:
        assert "API key required" in server.output() and "without an API key" not in server.output()
        with httpx.Client(trust_env=False) as http:
            def client(key):
                return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, http_client=http, max_retries=0)

            with pytest.raises(openai.AuthenticationError, match="invalid API key"):
                client("wrong").embeddings.create(model=str(tiny_folder), input="hello")
            response = client(KEY).embeddings.create(model=str(tiny_folder), input=["hello", "world"])
            vectors = np.array([item.embedding for item in response.data])
            assert vectors.shape[0] == 2 and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
            assert http.get(f"{server.url}/health").status_code == 200


def test_serving_beyond_loopback_without_a_key_warns(tiny_folder, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SEARCHR3_API_KEY"} | {"HF_HUB_OFFLINE": "1"}
    with ServiceProcess(tiny_folder, tmp_path / "index", host="0.0.0.0", max_length=48, env=env,
                        timeout=120) as server:
        assert "serving on 0.0.0.0, which is not a loopback address, without an API key" in server.output()
