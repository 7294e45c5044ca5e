"""Fault injection against the service and its index folder: kill -9, damaged files, a full disk, two servers.

Each case counts writes acknowledged, lost (acknowledged, then missing) and phantom (refused, then
present); the target is zero of the last two everywhere. With $SEARCHR3_FAULT_REPORT set, the
counts are written there as JSON (the closing notes' fault matrix).
"""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest

from searchr3.serve import Service
from searchr3.service_process import ServiceProcess
from searchr3.store import DATABASE, IndexStore, StoreError

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}
RESULTS: list[dict] = []


@pytest.fixture(scope="module", autouse=True)
def fault_report():
    yield
    path = os.environ.get("SEARCHR3_FAULT_REPORT")
    if path:
        with open(path, "a") as f:
            for row in RESULTS:
                f.write(json.dumps(row) + "\n")


def record(case: str, **counts) -> None:
    RESULTS.append({"case": case, **counts})
    assert counts.get("lost", 0) == 0 and counts.get("phantom", 0) == 0, (case, counts)


def start(tiny_folder, index, **kw) -> ServiceProcess:
    return ServiceProcess(tiny_folder, index, max_length=48, env=ENV, timeout=180, **kw)


def serve_config(tmp_path, **serve) -> str:
    path = tmp_path / "serve.yaml"
    path.write_text("serve:\n" + "".join(f"  {k}: {v}\n" for k, v in serve.items()))
    return str(path)


def doc(doc_id: str) -> dict:
    return {"_id": doc_id, "title": f"Note {doc_id}", "text": f"the text of note {doc_id} about topic {hash(doc_id) % 7}"}


def audit(url: str, acked: dict, refused: set, unknown: set) -> tuple[int, int]:
    """(lost, phantom): acknowledged writes not in their acknowledged state, refused writes present."""
    lost = phantom = 0
    with httpx.Client(timeout=60) as http:
        for doc_id, text in acked.items():
            response = http.get(f"{url}/v1/documents/{doc_id}")
            if doc_id in unknown:
                continue  # a later request on the same id was cut by the crash: either state is right
            if text is None:
                lost += response.status_code != 404
            else:
                lost += response.status_code != 200 or response.json()["text"] != text
        for doc_id in refused - set(acked):
            phantom += http.get(f"{url}/v1/documents/{doc_id}").status_code == 200
    return lost, phantom


def test_kill_9_at_random_points_loses_no_acknowledged_write(tiny_folder, tmp_path):
    rng = random.Random(7)
    index = tmp_path / "index"
    config = serve_config(tmp_path, snapshot_every=2)  # snapshots run every other write: kills land in them too
    acked: dict[str, str | None] = {}  # id -> text of its last acknowledged upsert, None after an acknowledged delete
    refused, unknown = set(), set()
    rounds = 6
    for r in range(rounds):
        server = start(tiny_folder, index, config=config)
        lost, phantom = audit(server.url, acked, refused, unknown)
        assert (lost, phantom) == (0, 0), r
        done = threading.Event()

        def writer(rng=random.Random(r)):
            with httpx.Client(timeout=60) as http:
                n = 0
                while not done.is_set():
                    if n % 4 == 3 and any(v is not None for v in acked.values()):
                        victim = rng.choice(sorted(k for k, v in acked.items() if v is not None))
                        request = ("DELETE", f"{server.url}/v1/documents/{victim}", None, victim, None)
                    else:
                        d = doc(f"r{r}-{n}")
                        request = ("POST", f"{server.url}/v1/documents", {"documents": [d]}, d["_id"], d["text"])
                    method, url, body, doc_id, text = request
                    try:
                        response = http.request(method, url, json=body)
                    except httpx.HTTPError:
                        unknown.add(doc_id)
                        return
                    if response.status_code == 200:
                        acked[doc_id] = text
                    else:
                        refused.add(doc_id)
                    n += 1

        thread = threading.Thread(target=writer)
        thread.start()
        time.sleep(rng.uniform(0.3, 2.5))
        server.kill()
        done.set()
        thread.join()
    with start(tiny_folder, index, config=config) as server:
        lost, phantom = audit(server.url, acked, refused, unknown)
        count = server.health()["documents"]
    assert count >= sum(v is not None for k, v in acked.items() if k not in unknown)
    assert subprocess.run([sys.executable, "-m", "searchr3.cli", "index", "check", str(index)], env=ENV).returncode == 0
    record("kill -9 during writes and snapshots", rounds=rounds, acknowledged=len(acked), lost=lost,
           phantom=phantom, refused=len(refused), cut_by_kill=len(unknown))


# ---------------------------------------------------------------------- damaged files at start
@pytest.fixture
def crashed_folder(tiny, tmp_path_factory):
    """An index folder as a crash leaves it (copied while the service holds it open), and its contents."""
    root = tmp_path_factory.mktemp("crash")
    service = Service(tiny, root / "live")
    docs = [doc(f"d{n}") for n in range(30)]
    texts = [f"{d['title']}\n{d['text']}" for d in docs]
    service.store.upsert([d["_id"] for d in docs], tiny.embed_documents(texts, show_progress=False),
                         [{"title": d["title"], "text": d["text"]} for d in docs])
    service.store.snapshot()
    service.store.delete(["d5"])  # a write after the snapshot: it is stale
    image = root / "image"
    shutil.copytree(root / "live", image)
    service.close()
    expected = {i: (service.store.index.documents[i], service.store.index.vectors([i])[0])
                for i in service.store.index.ids}
    return image, expected


FILES = ["index.db", "faiss.index", "faiss.json", "index.db-wal", "index.db-shm"]


@pytest.mark.parametrize("how", ["missing", "empty", "truncated", "flip-1", "flip-2", "flip-3", "flip-4"])
@pytest.mark.parametrize("name", FILES)
def test_a_start_with_a_damaged_file_recovers_everything_or_names_the_damage(tiny, crashed_folder, tmp_path,
                                                                            damage, name, how):
    image, expected = crashed_folder
    folder = tmp_path / "ix"
    shutil.copytree(image, folder)
    path = folder / name
    if path.is_file() and path.stat().st_size:
        damage(path, how, random.Random(f"{name}-{how}"))
    elif how == "empty":  # a crash image's WAL is empty (emptied before each write is acknowledged)
        path.write_bytes(b"")
    elif how == "missing":
        path.unlink(missing_ok=True)
    try:
        service = Service(tiny, folder)
    except StoreError as e:
        assert str(folder / DATABASE) in str(e) or str(folder) in str(e), e
        record(f"start with {name} {how}", outcome="refused, named", lost=0, phantom=0)
        return
    try:
        index = service.store.index
        lost = sum(1 for i, (fields, vector) in expected.items()
                   if i not in index or index.documents[i] != fields or not np.array_equal(index.vectors([i])[0], vector))
        phantom = len(set(index.ids) - set(expected))
    finally:
        service.close()
    record(f"start with {name} {how}", outcome="recovered", lost=lost, phantom=phantom)


def test_a_server_refuses_to_start_on_a_damaged_database_with_a_clear_message(tiny_folder, crashed_folder, tmp_path):
    image, _ = crashed_folder
    shutil.copytree(image, tmp_path / "ix")
    (tmp_path / "ix" / DATABASE).write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    server = start(tiny_folder, tmp_path / "ix", wait=False)
    assert server.process.wait(timeout=180) == 2
    output = server.output()
    assert "searchr3: error:" in output and "index.db" in output and "Traceback" not in output, output


# ---------------------------------------------------------------------- a full disk
class FullDisk:
    """A disk that can be filled and freed: a small tmpfs where the machine allows mounting one, else
    a file-size limit (RLIMIT_FSIZE) set on the server process, which fails its writes the same way."""

    def __init__(self, tmp_path):
        self.folder = tmp_path / "disk"
        self.folder.mkdir()
        self.tmpfs = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(self.folder)],
                                    capture_output=True).returncode == 0
        self.filler = self.folder / "filler"

    def fill(self, server: ServiceProcess) -> None:
        if not self.tmpfs:
            import resource

            resource.prlimit(server.process.pid, resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))
            return
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            while True:
                os.write(fd, b"\0" * 4096)  # unbuffered: the last partial block is written, nothing is left to flush
        except OSError:
            pass
        finally:
            os.close(fd)

    def free(self, server: ServiceProcess | None) -> None:
        if not self.tmpfs:
            import resource

            if server is not None:
                resource.prlimit(server.process.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)
            return
        self.filler.unlink(missing_ok=True)

    def close(self) -> None:
        if self.tmpfs:
            subprocess.run(["umount", "-l", str(self.folder)], capture_output=True)


def test_a_full_disk_refuses_writes_with_507_keeps_reads_and_recovers_without_restart(tiny_folder, tmp_path):
    disk = FullDisk(tmp_path)
    index = disk.folder / "index"
    acked, refused = {}, set()
    try:
        server = start(tiny_folder, index)
        url = server.url
        with httpx.Client(timeout=60) as http:
            for n in range(3):
                d = doc(f"before-{n}")
                assert http.post(f"{url}/v1/documents", json={"documents": [d]}).status_code == 200
                acked[d["_id"]] = d["text"]
            disk.fill(server)
            # A full disk is ENOSPC, which SQLite reports as SQLITE_FULL: 507. A file-size limit is EFBIG,
            # an I/O error to SQLite: 503. Either way the write is refused and not applied.
            refusal = (507, "insufficient_storage") if disk.tmpfs else (503, "storage_error")
            for n in range(4):
                d = doc(f"full-{n}")
                response = http.post(f"{url}/v1/documents", json={"documents": [d]})
                assert (response.status_code, response.json()["error"]["code"]) == refusal, response.text
                refused.add(d["_id"])
            assert http.post(f"{url}/v1/search", json={"query": "note", "k": 3}).status_code == 200
            assert http.get(f"{url}/v1/documents/before-0").status_code == 200
            assert http.get(f"{url}/v1/documents/full-0").status_code == 404
            assert http.delete(f"{url}/v1/documents/before-1").status_code == refusal[0]  # a delete is a write too
            disk.free(server)  # space is back: writes work again, without a restart
            d = doc("after")
            assert http.post(f"{url}/v1/documents", json={"documents": [d]}).status_code == 200
            acked[d["_id"]] = d["text"]
        server.kill()
        full_start = "not tried (no tmpfs: the file-size limit applies only once a server runs)"
        lost = phantom = 0
        if disk.tmpfs:  # start-up on a full disk: it serves reads and refuses writes, or refuses to start
            disk.fill(None)
            server = start(tiny_folder, index, wait=False)
            try:
                server._wait_healthy(180)
            except RuntimeError:
                output = server.output()
                assert "searchr3: error:" in output and str(index) in output and "Traceback" not in output, output
                full_start = "refused to start, naming the folder"
            else:
                lost, phantom = audit(server.url, acked, refused, set())
                response = httpx.post(f"{server.url}/v1/documents", json={"documents": [doc("x")]}, timeout=60)
                assert response.status_code == 507, response.text
                refused.add("x")
                server.stop()
                full_start = "served reads, refused writes"
            disk.free(None)
        with start(tiny_folder, index) as server:
            lost2, phantom2 = audit(server.url, acked, refused, set())
    finally:
        disk.close()
    record(f"full disk ({'tmpfs' if disk.tmpfs else 'RLIMIT_FSIZE'}), freed, restarted", acknowledged=len(acked),
           refused=len(refused) + 1, lost=lost + lost2, phantom=phantom + phantom2, full_start=full_start)


# ---------------------------------------------------------------------- processes and requests
def test_a_second_server_on_the_same_folder_is_refused(tiny_folder, tmp_path):
    with start(tiny_folder, tmp_path / "ix") as first:
        httpx.post(f"{first.url}/v1/documents", json={"documents": [doc("a")]}, timeout=60).raise_for_status()
        second = start(tiny_folder, tmp_path / "ix", wait=False)
        assert second.process.wait(timeout=180) == 2
        assert "in use by another process" in second.output()
        assert first.health()["documents"] == 1
    record("two servers on one folder", outcome="second refused", lost=0, phantom=0)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_shut_down_cleanly_with_a_final_snapshot(tiny_folder, tmp_path, sig):
    index = tmp_path / "ix"
    server = start(tiny_folder, index)
    with httpx.Client(timeout=60) as http:
        for n in range(3):
            http.post(f"{server.url}/v1/documents", json={"documents": [doc(f"d{n}")]}).raise_for_status()
        evil = http.get(f"{server.url}/health", headers={"host": "evil.example"})
        assert evil.status_code == 400 and evil.json()["error"]["code"] == "invalid_host"
    server.stop(sig=sig)
    assert "Traceback" not in server.output(), server.output()
    store = IndexStore(index / DATABASE, readonly=True)
    seq = store.meta()["seq"]
    store.close()
    assert json.loads((index / "faiss.json").read_text())["seq"] == seq  # the snapshot holds every write
