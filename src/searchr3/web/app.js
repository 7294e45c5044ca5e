// The search page's behaviour: calls the service's own API (/v1/search, /v1/documents).
// Every text from the server or the user goes into the page as text (textContent), never as
// markup, so a document holding "<script>" shows those characters and runs nothing.
"use strict";

const KEY_STORE = "searchr3.apiKey";
const SNIPPET_CHARS = 280;
const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function storedKey() {
  try {
    return localStorage.getItem(KEY_STORE) || "";
  } catch (e) { // storage disabled: the key lives until the page closes
    return $("api-key").value;
  }
}

// One call to the API; an error response becomes an ApiError carrying the server's message.
async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const key = storedKey();
  if (key) headers["Authorization"] = "Bearer " + key;
  let response;
  try {
    response = await fetch(path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body)});
  } catch (e) {
    throw new ApiError(0, "cannot reach the server (" + e.message + ")");
  }
  let data = null;
  try {
    data = await response.json();
  } catch (e) { /* not JSON: the status line says what happened */ }
  if (!response.ok) {
    if (response.status === 401) showKeyForm(true);
    const message = data && data.error && data.error.message ? data.error.message
      : `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, message);
  }
  return data;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function show(node, text) {
  node.textContent = text;
  node.hidden = !text;
}

function showKeyForm(refused) {
  $("auth").hidden = false;
  $("auth-note").textContent = refused && storedKey()
    ? "The server refused this key. Enter the right one; it is kept in this browser's local storage."
    : "This server needs an API key. It is kept in this browser's local storage.";
}

async function refreshServer() {
  try {
    const health = await api("GET", "/health");
    $("server").textContent = `${health.model} · ${health.documents} documents · dimension ${health.dim}`;
  } catch (e) {
    $("server").textContent = "server unavailable: " + e.message;
  }
}

function snippet(text) {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > SNIPPET_CHARS ? flat.slice(0, SNIPPET_CHARS).trimEnd() + "…" : flat;
}

function renderHit(hit) {
  const item = el("li", "hit");
  const head = el("div", "hit-head");
  head.append(el("span", hit.title ? "title" : "title untitled", hit.title || "(no title)"),
              el("span", "score", hit.score.toFixed(4)));
  item.append(head, el("div", "id", hit.id), el("p", "snippet", snippet(hit.text)));
  return item;
}

function renderTrace(result) {
  const box = $("trace");
  if (result.trace === null || result.trace === undefined) {
    box.hidden = true;
    return;
  }
  $("trace-text").textContent = result.trace || "(the model wrote no analysis)";
  $("trace-note").textContent = result.forced
    ? "The model did not end its analysis within its budget; the embed token was appended."
    : "";
  box.hidden = false;
}

async function search(event) {
  event.preventDefault();
  const body = {query: $("query").value, k: Number($("k").value) || 10, reasoning: $("reasoning").checked};
  if ($("hybrid").checked) body.hybrid = true;
  show($("error"), "");
  $("search-button").disabled = true;
  $("status").textContent = body.reasoning ? "Reasoning, then searching…" : "Searching…";
  const started = performance.now();
  try {
    const result = await api("POST", "/v1/search", body);
    renderTrace(result);
    $("results").replaceChildren(...result.hits.map(renderHit));
    const mode = [body.reasoning && "reasoning", body.hybrid && "hybrid"].filter(Boolean).join(", ");
    const seconds = ((performance.now() - started) / 1000).toFixed(2);
    $("status").textContent = `${result.hits.length} results for “${result.query}”` +
      (mode ? ` (${mode})` : "") + ` in ${seconds} s`;
  } catch (e) {
    $("status").textContent = "";
    $("trace").hidden = true;
    $("results").replaceChildren();
    show($("error"), e.message);
  } finally {
    $("search-button").disabled = false;
  }
}

async function addDocument(event) {
  event.preventDefault();
  const doc = {_id: $("doc-id").value, title: $("doc-title").value, text: $("doc-text").value};
  show($("doc-error"), "");
  $("doc-status").textContent = "Adding…";
  $("doc-button").disabled = true;
  try {
    const result = await api("POST", "/v1/documents", {documents: [doc]});
    $("doc-status").textContent = `Added “${doc._id}”; the index holds ${result.count} documents.`;
    $("doc-form").reset();
    refreshServer();
  } catch (e) {
    $("doc-status").textContent = "";
    show($("doc-error"), e.message);
  } finally {
    $("doc-button").disabled = false;
  }
}

function saveKey(event) {
  event.preventDefault();
  const key = $("api-key").value.trim();
  try {
    if (key) localStorage.setItem(KEY_STORE, key);
    else localStorage.removeItem(KEY_STORE);
  } catch (e) { /* storage disabled: storedKey() reads the field */ }
  $("auth-note").textContent = key ? "Key saved in this browser." : "No key saved.";
}

function forgetKey() {
  try {
    localStorage.removeItem(KEY_STORE);
  } catch (e) { /* nothing stored */ }
  $("api-key").value = "";
  $("auth-note").textContent = "Key forgotten.";
}

async function start() {
  $("search-form").addEventListener("submit", search);
  $("doc-form").addEventListener("submit", addDocument);
  $("key-form").addEventListener("submit", saveKey);
  $("forget-key").addEventListener("click", forgetKey);
  $("api-key").value = storedKey();
  if (storedKey()) $("auth").hidden = false;
  await refreshServer();
  try { // a cheap protected call: shows the key field when the server needs one (api() does it on 401)
    await api("GET", "/v1/models");
  } catch (e) {
    if (e.status !== 401) $("server").textContent += " · " + e.message;
  }
  $("query").focus();
}

document.addEventListener("DOMContentLoaded", start);
