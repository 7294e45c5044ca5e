"""Run `searchr3 serve` in a child process and wait until it answers.

For integration tests and load tests of a system built on the service: the server runs as the
CLI runs it, in its own interpreter, so a `kill -9` or a restart is a real one.

>>> with ServiceProcess("searchr3-smollm2-135m-sft", "runs/ix") as service:   # doctest: +SKIP
...     requests.post(f"{service.url}/v1/search", json={"query": "aspirin", "k": 5})
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the service is local: never via a proxy


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ServiceProcess:
    """`searchr3 serve` in a child process, started and ready (GET /health answers 200).

    Args:
        model: a registered model name or folder.
        index: the index folder (created if missing).
        port: default: a free one.
        max_length: tokens of text per input; default: the model's setting.
        config: a serve config file (`serve:` and `hybrid:` sections).
        wait: wait until the server answers; False returns at once (a test of a start that should fail).
        env: the child's environment; default: this process's.
        timeout: seconds to wait for the first healthy answer (loading a model takes a while).
        log_level: the server's log level.
    """

    def __init__(self, model: str | os.PathLike, index: str | os.PathLike, *, port: int | None = None,
                 host: str = "127.0.0.1", max_length: int | None = None, env: dict[str, str] | None = None,
                 timeout: float = 300.0, log_level: str = "warning", dtype: str | None = None,
                 config: str | os.PathLike | None = None, wait: bool = True):
        self.port = port or free_port(host)
        self.url = f"http://{host}:{self.port}"
        self.command = [sys.executable, "-m", "searchr3.cli", "serve", "--model", str(model), "--index",
                        str(Path(index)), "--host", host, "--port", str(self.port), "--log-level", log_level]
        if max_length is not None:
            self.command += ["--max-length", str(max_length)]
        if dtype is not None:
            self.command += ["--dtype", dtype]
        if config is not None:
            self.command += ["--config", str(config)]
        self._log = tempfile.TemporaryFile()  # a file, not a pipe: a chatty server cannot block on it
        self.process = subprocess.Popen(self.command, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        if wait:
            self._wait_healthy(timeout)

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}: "
                                   f"{' '.join(self.command)}\n{self.output()[-4000:]}")
            if self.health() is not None:
                return
            time.sleep(0.25)
        self.kill()
        raise RuntimeError(f"the server did not answer /health within {timeout:.0f} s\n{self.output()[-4000:]}")

    def health(self) -> dict | None:
        """The /health answer, or None while the server does not answer."""
        try:
            with _NO_PROXY.open(f"{self.url}/health", timeout=1) as response:
                return json.loads(response.read()) if response.status == 200 else None
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None

    def output(self) -> str:
        """Everything the server printed so far."""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def stop(self, timeout: float = 30.0, sig: int = signal.SIGTERM) -> int:
        """A clean shutdown (SIGTERM, or `sig`: SIGINT is Ctrl-C); the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def kill(self) -> None:
        """A crash (SIGKILL): nothing is flushed or closed."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def __enter__(self) -> "ServiceProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        self._log.close()
