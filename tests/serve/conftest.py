"""Fixtures for the `ferry serve` end-to-end tests: a test model repository and real server
processes on free 127.0.0.1 ports.

The binary comes from the environment variable FERRY_BIN:

    FERRY_BIN=build/ferry python3 -m pytest tests/serve

Servers are started with --http-port 0; the port is read back from the JSON start line the
server prints on stderr. Their stderr goes to a file, so tests can read the access log.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models  # noqa: E402

FERRY = os.environ.get("FERRY_BIN")
START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 60

if not FERRY:
    pytest.skip("set FERRY_BIN to the ferry binary to run the serve tests",
                allow_module_level=True)


class Server:
    """A running `ferry serve` process."""

    def __init__(self, repo, args, env, log_path):
        self.repo = repo
        self.log_path = log_path
        self.log = open(log_path, "wb")
        full_env = dict(os.environ)
        for k in list(full_env):
            if k.startswith("FERRY_") and k != "FERRY_BIN":
                del full_env[k]  # only what the test asks for
        full_env.update(env or {})
        cmd = [FERRY, "serve", "--http-port", "0"]
        if repo is not None:
            cmd += ["--model-repository", str(repo)]
        self.proc = subprocess.Popen(cmd + [str(a) for a in args], stdout=subprocess.DEVNULL,
                                     stderr=self.log, env=full_env)
        self.port = None
        deadline = time.time() + START_TIMEOUT_S
        while time.time() < deadline:
            for line in self.lines():
                if line.get("event") == "start":
                    self.port = line["port"]
                    break
            if self.port or self.proc.poll() is not None:
                break
            time.sleep(0.02)
        if not self.port:
            self.kill()
            raise RuntimeError("ferry serve did not start:\n" + self.text())
        self.url = "http://127.0.0.1:%d" % self.port
        self.session = requests.Session()

    def text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def lines(self):
        """Every complete log line so far, parsed; a line that is not JSON fails the test. A
        last line without its newline is still being written (a reader can see part of a
        write(2) to a file) and waits for the next call."""
        out = []
        text = self.text()
        if not text.endswith("\n"):
            text = text[:text.rfind("\n") + 1]
        for raw in text.splitlines():
            if not raw.strip():
                continue
            try:
                out.append(json.loads(raw))
            except ValueError:
                raise AssertionError("log line is not JSON: %r" % raw)
        return out

    def get(self, path, **kw):
        kw.setdefault("timeout", 30)
        return self.session.get(self.url + path, **kw)

    def post(self, path, **kw):
        kw.setdefault("timeout", 30)
        return self.session.post(self.url + path, **kw)

    def stop(self, sig=signal.SIGTERM):
        """Sends SIG and returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("ferry serve did not stop within %ds" % STOP_TIMEOUT_S)
        self.session.close()
        self.log.close()
        return code

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="session")
def repo(tmp_path_factory):
    path = tmp_path_factory.mktemp("repository")
    weights = models.build(str(path))
    return {"path": path, "mlp_weights": weights}


@pytest.fixture
def start_server(tmp_path):
    """Factory: start_server(repo, *args, env=None) -> Server; every server is stopped (and
    must exit 0) at the end of the test."""
    servers = []

    def start(repo_path, *args, env=None):
        s = Server(repo_path, args, env, tmp_path / ("server%d.log" % len(servers)))
        servers.append(s)
        return s

    yield start
    for s in servers:
        if s.proc.poll() is None:
            code = s.stop()
            assert code == 0, "ferry serve exited with %d:\n%s" % (code, s.text()[-4000:])


@pytest.fixture(scope="module")
def server(repo, tmp_path_factory):
    """One server on the test repository, shared by a module's read-only tests."""
    s = Server(repo["path"], [], None, tmp_path_factory.mktemp("log") / "server.log")
    yield s
    code = s.stop()
    assert code == 0, "ferry serve exited with %d:\n%s" % (code, s.text()[-4000:])


@pytest.fixture
def copy_repo(repo, tmp_path):
    """A private copy of the test repository, for tests that change it."""
    def make(*names):
        dst = tmp_path / "repo"
        dst.mkdir(exist_ok=True)
        for name in names:
            shutil.copytree(str(repo["path"] / name), str(dst / name))
        return dst
    return make
