"""The search page in a real headless Chromium against a live `searchr3 serve`.

The open service runs the released RL adapter: a random tiny model ends its analysis at once
(its trace is empty), and the RL adapter writes one. The key flow needs no trace and uses the
tiny model. The test saves a screenshot of the page in its temporary folder, or where
$SEARCHR3_SCREENSHOT says (`SEARCHR3_SCREENSHOT=benchmarks/results/search_page.png pytest
tests/test_page.py` refreshes the README's picture; a plain test run leaves tracked files alone).
"""

import os
import shutil
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from searchr3.service_process import ServiceProcess

CHROMIUM = next((p for p in (os.environ.get("SEARCHR3_CHROMIUM"), shutil.which("chromium"),
                             shutil.which("chromium-browser")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium executable found: install Debian's "
                                "chromium (apt-get install chromium; .ci/run does) or set $SEARCHR3_CHROMIUM")

MODEL = "searchr3-smollm2-135m-rl-v1"  # the sft adapters write no trace
KEY = "page-key-123"
DOCS = [
    {"_id": "aspirin", "title": "Aspirin",
     "text": "Aspirin irreversibly inhibits cyclooxygenase in platelets, which reduces platelet aggregation "
             "and thins the blood; low doses are used to prevent heart attacks and strokes."},
    {"_id": "paris", "title": "Paris", "text": "Paris is the capital and largest city of France, on the Seine."},
    {"_id": "photosynthesis", "title": "Photosynthesis",
     "text": "Plants turn light, water and carbon dioxide into sugar and oxygen in their chloroplasts."},
    {"_id": "volcano", "title": "Volcanoes", "text": "Magma rises through the crust and erupts as lava and ash."},
]
# A document whose every field is markup: the page must show these characters, not interpret them.
MARKUP = {"_id": "zebrafish-<i>1</i>", "title": "<b>Zebrafish</b> & <img src=x onerror=window.pwned=1>",
          "text": "<script>window.pwned=1</script>Zebrafish regrow their fins and heart muscle after injury."}


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "SEARCHR3_API_KEY"}
    return env | {"HF_HUB_OFFLINE": "1"} | extra


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-proxy-server"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1100, "height": 820})
    page = context.new_page()
    page.set_default_timeout(120_000)  # a reasoning search on a busy CPU takes seconds
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    context.close()
    assert errors == [], f"the page's script failed: {errors}"


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    with ServiceProcess(MODEL, tmp_path_factory.mktemp("page") / "index", env=clean_env(), timeout=300) as server:
        httpx.post(f"{server.url}/v1/documents", json={"documents": DOCS}, timeout=120).raise_for_status()
        yield server


def api_search(server, headers=None, **body) -> dict:
    response = httpx.post(f"{server.url}/v1/search", json=body, headers=headers, timeout=300)
    response.raise_for_status()
    return response.json()


def shown_hits(page) -> list[dict]:
    """The result list as the user sees it: id, title, score and snippet of each hit, in order."""
    return page.eval_on_selector_all("#results .hit", """items => items.map(li => ({
        id: li.querySelector('.id').textContent, title: li.querySelector('.title').textContent,
        score: li.querySelector('.score').textContent, snippet: li.querySelector('.snippet').textContent}))""")


def snippet(text: str, chars: int = 280) -> str:
    flat = " ".join(text.split())
    return flat[:chars].rstrip() + "…" if len(flat) > chars else flat


def expected_hits(result: dict) -> list[dict]:
    return [{"id": h["id"], "title": h["title"] or "(no title)", "score": f"{h['score']:.4f}",
             "snippet": snippet(h["text"])} for h in result["hits"]]


def run_search(page, query: str) -> None:
    page.fill("#query", query)
    with page.expect_response("**/v1/search"):
        page.click("#search-button")
    expect(page.locator("#search-button")).to_be_enabled()


@pytest.mark.integration
def test_search_reason_add_and_errors(page, service, tmp_path):
    page.goto(service.url)
    expect(page.locator("#server")).to_contain_text(f"{MODEL} · 4 documents")
    expect(page.locator("#auth")).to_be_hidden()  # this server needs no key

    run_search(page, "does aspirin thin the blood?")
    expect(page.locator("#results .hit")).to_have_count(4)
    assert shown_hits(page) == expected_hits(api_search(service, query="does aspirin thin the blood?", k=10))
    assert shown_hits(page)[0]["id"] == "aspirin"
    expect(page.locator("#trace")).to_be_hidden()
    expect(page.locator("#status")).to_contain_text("4 results for “does aspirin thin the blood?”")

    # Add a document through the form; it is stored as typed and found by a search.
    page.fill("#doc-id", MARKUP["_id"])
    page.fill("#doc-title", MARKUP["title"])
    page.fill("#doc-text", MARKUP["text"])
    page.click("#doc-button")
    expect(page.locator("#doc-status")).to_contain_text("the index holds 5 documents")
    expect(page.locator("#server")).to_contain_text("5 documents")
    stored = httpx.get(f"{service.url}/v1/documents/zebrafish-%3Ci%3E1%3C%2Fi%3E", timeout=30).json()
    assert stored == MARKUP
    run_search(page, "which animals regrow fins?")
    hits = shown_hits(page)
    assert hits == expected_hits(api_search(service, query="which animals regrow fins?", k=10))
    assert hits[0] == {"id": MARKUP["_id"], "title": MARKUP["title"], "score": hits[0]["score"],
                       "snippet": MARKUP["text"]}  # markup shown as its characters
    assert page.locator("#results b, #results i, #results img, #results script").count() == 0
    assert page.evaluate("window.pwned") is None

    # Reasoning on: the trace appears above the results and equals the service's own.
    page.check("#reasoning")
    run_search(page, "does aspirin thin the blood?")
    expected = api_search(service, query="does aspirin thin the blood?", k=10, reasoning=True)
    assert expected["trace"], "the RL adapter wrote no trace"
    expect(page.locator("#trace")).to_be_visible()
    expect(page.locator("#trace-text")).to_have_text(expected["trace"])
    assert shown_hits(page) == expected_hits(expected)
    trace_box, first_hit = page.locator("#trace").bounding_box(), page.locator("#results .hit").first.bounding_box()
    assert trace_box["y"] + trace_box["height"] <= first_hit["y"]
    expect(page.locator("#status")).to_contain_text("(reasoning)")
    screenshot = Path(os.environ.get("SEARCHR3_SCREENSHOT") or tmp_path / "search_page.png")
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(screenshot))
    assert screenshot.stat().st_size < 300_000

    # An error from the API reaches the user in words: an id no URL can address is refused.
    page.fill("#doc-id", "..")
    page.fill("#doc-text", "unreachable")
    page.click("#doc-button")
    refused = httpx.post(f"{service.url}/v1/documents", json={"documents": [{"_id": "..", "title": "",
                                                                               "text": "unreachable"}]}, timeout=30)
    assert refused.status_code == 422
    expect(page.locator("#doc-error")).to_have_text(refused.json()["error"]["message"])
    page.fill("#k", "1000")  # over the service's max_k
    run_search(page, "aspirin")
    expect(page.locator("#error")).to_contain_text("k: Input should be less than or equal to 100")
    expect(page.locator("#results .hit")).to_have_count(0)
    expect(page.locator("#trace")).to_be_hidden()


@pytest.mark.integration
def test_hybrid_toggle_sends_hybrid(page, service):
    page.goto(service.url)
    page.check("#hybrid")
    page.fill("#query", "capital of France")
    with page.expect_request("**/v1/search") as request:
        page.click("#search-button")
    assert request.value.post_data_json == {"query": "capital of France", "k": 10, "reasoning": False,
                                            "hybrid": True}
    schema = httpx.get(f"{service.url}/openapi.json", timeout=30).json()["components"]["schemas"]
    if "hybrid" not in schema["SearchRequest"]["properties"]:
        pytest.skip("the service's /v1/search has no `hybrid` field yet (issue 18, part 6); the page sends it")
    expect(page.locator("#status")).to_contain_text("(hybrid)")
    assert shown_hits(page) == expected_hits(api_search(service, query="capital of France", k=10, hybrid=True))


def test_the_api_key_flow(page, tiny_folder, tmp_path):
    """Asked for a key, refused a wrong one, served with the right one, remembered after a reload."""
    with ServiceProcess(tiny_folder, tmp_path / "index", max_length=48, timeout=120,
                        env=clean_env(SEARCHR3_API_KEY=KEY)) as server:
        headers = {"Authorization": f"Bearer {KEY}"}
        httpx.post(f"{server.url}/v1/documents", json={"documents": DOCS}, headers=headers,
                   timeout=60).raise_for_status()
        page.goto(server.url)
        expect(page.locator("#auth")).to_be_visible()  # the page found out the server needs a key
        expect(page.locator("#auth-note")).to_contain_text("needs an API key")
        expect(page.locator("#error")).to_be_hidden()

        run_search(page, "blood")
        expect(page.locator("#error")).to_contain_text("missing API key")
        expect(page.locator("#results .hit")).to_have_count(0)

        page.fill("#api-key", "wrong-key")
        page.click("#key-form button[type=submit]")
        run_search(page, "blood")
        expect(page.locator("#error")).to_have_text("invalid API key")
        expect(page.locator("#auth-note")).to_contain_text("refused this key")

        page.fill("#api-key", KEY)
        page.click("#key-form button[type=submit]")
        run_search(page, "blood")
        expect(page.locator("#error")).to_be_hidden()
        assert shown_hits(page) == expected_hits(api_search(server, headers=headers, query="blood", k=10))

        page.reload()  # the key is remembered in this browser
        assert page.evaluate("localStorage.getItem('searchr3.apiKey')") == KEY
        expect(page.locator("#api-key")).to_have_value(KEY)
        run_search(page, "blood")
        expect(page.locator("#results .hit")).to_have_count(4)

        page.click("#forget-key")
        run_search(page, "blood")
        expect(page.locator("#error")).to_contain_text("missing API key")
