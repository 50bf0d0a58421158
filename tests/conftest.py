"""Shared fixtures and helpers for the twinlattice black-box tests.

Every test talks to a real `twinlattice` process over real HTTP (requests),
or runs the real `twinlattice validate` CLI. Nothing is mocked.

The binary is found through the env var TWINLATTICE_BIN, else
~/.cache/twinlattice/target/release/twinlattice.

Helpers defined here are imported by the test modules with
`from conftest import ...` (pytest puts this directory on sys.path).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import queue
import re
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterable

import pytest
import requests

# --------------------------------------------------------------------------
# Locations
# --------------------------------------------------------------------------

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
DATA_DIR = TESTS_DIR / "data"
SAMPLES_DIR = REPO_ROOT / "schemas" / "samples"

DEFAULT_BIN = Path("~/.cache/twinlattice/target/release/twinlattice").expanduser()
READY_TIMEOUT = float(os.environ.get("TWINLATTICE_READY_TIMEOUT", "30"))
STOP_TIMEOUT = float(os.environ.get("TWINLATTICE_STOP_TIMEOUT", "20"))
HTTP_TIMEOUT = float(os.environ.get("TWINLATTICE_HTTP_TIMEOUT", "30"))

# Both mount points of the AAS Part 2 API.
PREFIXES = ["", "/api/v3.0"]
PREFIX_IDS = ["root", "api-v3.0"]

AAS_REGISTRY_PROFILE = (
    "https://admin-shell.io/aas/API/3/0/AssetAdministrationShellRegistryServiceSpecification/SSP-001"
)
SUBMODEL_REGISTRY_PROFILE = (
    "https://admin-shell.io/aas/API/3/0/SubmodelRegistryServiceSpecification/SSP-001"
)

LISTEN_RE = re.compile(r"^twinlattice http listening on (http://([^\s:/]+|\[[^\]]+\]):(\d+))\s*$")
TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|\+00:00)$")


def binary_path() -> Path:
    env = os.environ.get("TWINLATTICE_BIN")
    return Path(env).expanduser() if env else DEFAULT_BIN


def require_binary() -> Path:
    path = binary_path()
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            f"twinlattice binary not found or not executable at {path} "
            "(build it, or point TWINLATTICE_BIN at it)",
            pytrace=False,
        )
    return path


# --------------------------------------------------------------------------
# HTTP client with a default timeout
# --------------------------------------------------------------------------


class Client(requests.Session):
    """A requests.Session whose requests time out by default."""

    def request(self, method, url, **kwargs):  # type: ignore[override]
        kwargs.setdefault("timeout", HTTP_TIMEOUT)
        return super().request(method, url, **kwargs)


# --------------------------------------------------------------------------
# The server process
# --------------------------------------------------------------------------


class Server:
    """One `twinlattice serve` process on a data dir.

    `base_url` is read from the stdout line
    `twinlattice http listening on http://127.0.0.1:PORT`; the server is
    only used after the line starting with `twinlattice ready`.
    `restart()` starts a new process on the same data dir (the port may
    change, so always read `base_url` after a restart).
    """

    def __init__(
        self,
        data_dir: Path,
        extra_args: Iterable[str] = (),
        env: dict[str, str] | None = None,
        port_args: Iterable[str] | None = None,
        host: str | None = "127.0.0.1",
    ):
        self.data_dir = Path(data_dir)
        self.extra_args = list(extra_args)
        self.env_overrides = dict(env or {})
        self.port_args = ["--port", "0"] if port_args is None else list(port_args)
        self.host = host
        self.proc: subprocess.Popen | None = None
        self.base_url: str | None = None
        self.port: int | None = None
        self.stdout_lines: list[str] = []
        self.generation = 0
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr_path: Path | None = None
        self._stderr_file = None
        self.client = Client()

    # -- lifecycle --------------------------------------------------------

    def command(self) -> list[str]:
        cmd = [str(require_binary()), "serve", "--data-dir", str(self.data_dir)]
        cmd += self.port_args
        if self.host is not None:
            cmd += ["--host", self.host]
        cmd += self.extra_args
        # Every server gets its own CoAP port too, so servers can run side
        # by side (the default 5683 would collide).
        if not any(a.startswith("--coap-port") for a in self.extra_args):
            cmd += ["--coap-port", "0"]
        if not any(a.startswith("--admin-port") for a in self.extra_args):
            cmd += ["--admin-port", "0"]
        # The embedded MQTT broker (started when no --mqtt-host is given)
        # gets a free port too.
        if not any(a.startswith(("--mqtt-host", "--mqtt-port", "--embedded-mqtt")) for a in self.extra_args):
            cmd += ["--mqtt-port", "0"]
        # The test peers that receive deliveries listen on 127.0.0.1, which
        # deliveries may reach only when allowed (a test that wants the
        # default passes its own `--delivery-allow=`).
        if (not any(a.startswith("--delivery-allow") for a in self.extra_args)
                and "TWINLATTICE_DELIVERY_ALLOW" not in self.env_overrides):
            cmd += ["--delivery-allow", "127.0.0.0/8"]
        return cmd

    def start(self) -> "Server":
        assert self.proc is None or self.proc.poll() is not None, "server already running"
        self.generation += 1
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_dir = Path(tempfile.mkdtemp(prefix="twinlattice-log-"))
        self._stderr_path = log_dir / f"stderr-{self.generation}.log"
        self._stderr_file = open(self._stderr_path, "wb")
        self.stdout_lines = []
        self._lines = queue.Queue()
        self.base_url = None
        self.port = None
        env = dict(os.environ)
        env.pop("LIA_AAS_RESTAPI_PORT_INTERN", None)
        env.update(self.env_overrides)
        self.proc = subprocess.Popen(
            self.command(),
            stdout=subprocess.PIPE,
            stderr=self._stderr_file,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=str(REPO_ROOT),
        )
        threading.Thread(target=self._pump, args=(self.proc, self._lines), daemon=True).start()
        self._wait_ready()
        return self

    @staticmethod
    def _pump(proc: subprocess.Popen, lines: "queue.Queue[str | None]") -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            lines.put(raw.decode("utf-8", "replace").rstrip("\r\n"))
        lines.put(None)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        ready = False
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=0.1)
            except queue.Empty:
                continue
            if line is None:
                break
            self.stdout_lines.append(line)
            m = LISTEN_RE.match(line.strip())
            if m and self.base_url is None:
                self.base_url = m.group(1)
                self.port = int(m.group(3))
            if line.startswith("twinlattice ready"):
                ready = True
                break
        if not ready or self.base_url is None:
            why = "exited" if self.proc and self.proc.poll() is not None else "timed out"
            self.kill()
            pytest.fail(
                f"twinlattice serve {why} before printing both the listening line and "
                f"the ready line (timeout {READY_TIMEOUT}s)\n"
                f"command: {' '.join(self.command())}\n"
                f"stdout:\n{os.linesep.join(self.stdout_lines)}\n"
                f"stderr (tail):\n{self.stderr_tail()}",
                pytrace=False,
            )
        # keep draining stdout so the pipe never fills up
        threading.Thread(target=self._drain, args=(self._lines,), daemon=True).start()

    def _drain(self, lines: "queue.Queue[str | None]") -> None:
        while True:
            line = lines.get()
            if line is None:
                return
            self.stdout_lines.append(line)

    def stderr_tail(self, n: int = 8000) -> str:
        if self._stderr_file:
            try:
                self._stderr_file.flush()
            except ValueError:
                pass
        if self._stderr_path and self._stderr_path.exists():
            return self._stderr_path.read_bytes()[-n:].decode("utf-8", "replace")
        return ""

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        """SIGTERM and wait (clean shutdown). Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self._close_log()
                pytest.fail(
                    f"twinlattice did not exit within {STOP_TIMEOUT}s of SIGTERM\n"
                    f"stderr (tail):\n{self.stderr_tail()}",
                    pytrace=False,
                )
        self._close_log()
        return self.proc.returncode

    def kill(self) -> int | None:
        """SIGKILL (a crash) and wait. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self._close_log()
        return self.proc.returncode

    def restart(self, clean: bool = True) -> "Server":
        if clean:
            self.stop()
        else:
            self.kill()
        self.client.close()
        self.client = Client()
        return self.start()

    def _close_log(self) -> None:
        if self._stderr_file:
            try:
                self._stderr_file.close()
            except Exception:
                pass

    # -- convenience ------------------------------------------------------

    def url(self, path: str, prefix: str = "") -> str:
        assert self.base_url, "server not started"
        return self.base_url + prefix + path


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------


class LatticeTarget:
    """The faces of a twinlattice application deployed on a wasmCloud lattice
    (`scripts/test-lattice.sh` deploys it and sets TWINLATTICE_TEST_LATTICE_URL,
    TWINLATTICE_TEST_LATTICE_TWINS_URL for the twin API's own port, and
    TWINLATTICE_TEST_LATTICE_NATS_URL for the lattice's NATS server, through
    which `twinlattice account create --lattice` reaches the twins component).
    Stands in for `Server` in the tests that only talk to the running
    service; those that start, stop or configure hosts are embedded-only."""

    def __init__(self, base_url: str, twins_url: str | None, nats_url: str | None = None):
        self.base_url = base_url.rstrip("/")
        self.twins_url = (twins_url or base_url).rstrip("/")
        self.nats_url = nats_url
        self.client = Client()
        self.stdout_lines: list[str] = []

    @property
    def running(self) -> bool:
        return True

    def url(self, path: str, prefix: str = "") -> str:
        return self.base_url + prefix + path

    def kill(self) -> None:
        self.client.close()


LATTICE_URL = os.environ.get("TWINLATTICE_TEST_LATTICE_URL")
SITE_B_URL = os.environ.get("TWINLATTICE_TEST_SITE_B_URL")


def pytest_collection_modifyitems(config, items):
    """On a lattice, tests marked `embedded` (they start, kill or configure
    host processes, or read a host's output) are deselected, not skipped:
    the lattice run is the embedded run's service-level subset, plus the
    tests marked `lattice`."""
    for item in items:
        if {"server_factory", "broker_factory"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.embedded)
    # Tests marked `lattice` (they redeploy the application or stop lattice
    # hosts) are the converse: deselected on the embedded host.
    # Tests marked `sites` need a lattice of two sites
    # (TWINLATTICE_TEST_SITE_B_URL); every other run deselects them.
    others = ["lattice" if not LATTICE_URL else "embedded"]
    if not SITE_B_URL:
        others.append("sites")
    kept = [i for i in items if not any(i.get_closest_marker(m) for m in others)]
    deselected = [i for i in items if any(i.get_closest_marker(m) for m in others)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """The shared server for the bulk of the API tests (default settings), or
    the lattice deployment named by TWINLATTICE_TEST_LATTICE_URL.

    Tests must not depend on each other's data: use `uid()` for every id.
    """
    if LATTICE_URL:
        s = LatticeTarget(LATTICE_URL, os.environ.get("TWINLATTICE_TEST_LATTICE_TWINS_URL"),
                          os.environ.get("TWINLATTICE_TEST_LATTICE_NATS_URL"))
    else:
        s = Server(tmp_path_factory.mktemp("data-shared")).start()
    yield s
    s.kill()


@pytest.fixture
def broker_factory(tmp_path_factory):
    """Broker envs of a test's own (mosquitto + twinlattice, see
    broker_peers.BrokerEnv), closed at teardown:
    `broker_factory(mqtt=True, heartbeat_ttl_secs=None, extra_args=())`."""
    from broker_peers import BrokerEnv  # broker_peers imports this module

    made: list = []

    def make(**kwargs):
        e = BrokerEnv(tmp_path_factory.mktemp("broker-own"), **kwargs)
        made.append(e)
        return e

    yield make
    for e in made:
        e.close()


@pytest.fixture
def server_factory(tmp_path_factory):
    """Start extra servers: `server_factory(extra_args=[...], env={...})`.

    Each gets its own data dir unless `data_dir` is given; all are killed
    at teardown.
    """
    started: list[Server] = []

    def make(data_dir: Path | None = None, start: bool = True, **kwargs) -> Server:
        s = Server(data_dir or tmp_path_factory.mktemp("data"), **kwargs)
        started.append(s)
        return s.start() if start else s

    yield make
    for s in started:
        s.kill()


def require_running(s: "Server") -> None:
    if not s.running:
        pytest.fail(
            f"the twinlattice server died (exit code {s.proc.returncode if s.proc else None})\n"
            f"stderr (tail):\n{s.stderr_tail()}",
            pytrace=False,
        )


@pytest.fixture
def client(server):
    require_running(server)
    c = Client()
    yield c
    c.close()


@pytest.fixture(params=PREFIXES, ids=PREFIX_IDS)
def prefix(request):
    return request.param


@pytest.fixture
def api(server, prefix):
    """Base URL of the AAS Part 2 API at one of its two mount points."""
    return server.base_url + prefix


# --------------------------------------------------------------------------
# Identifiers
# --------------------------------------------------------------------------


def b64(identifier: str) -> str:
    """Unpadded base64url (RFC 4648 §5) of the UTF-8 id."""
    return base64.urlsafe_b64encode(identifier.encode("utf-8")).decode("ascii").rstrip("=")


def b64_padded(identifier: str) -> str:
    return base64.urlsafe_b64encode(identifier.encode("utf-8")).decode("ascii")


def b64_pct(identifier: str) -> str:
    """Padded base64url with the padding written as %3D."""
    return b64_padded(identifier).replace("=", "%3D")


def id_forms(identifier: str) -> dict[str, str]:
    return {"unpadded": b64(identifier), "padded": b64_padded(identifier), "pct3D": b64_pct(identifier)}


def uid(kind: str = "aas") -> str:
    """A unique identifier, so that tests never share data."""
    return f"urn:twinlattice:test:{kind}:{uuid.uuid4()}"


def with_utf8_len_mod3(identifier: str, rem: int) -> str:
    """Append 'x' until len(utf-8 bytes) % 3 == rem (controls b64 padding)."""
    while len(identifier.encode("utf-8")) % 3 != rem:
        identifier += "x"
    return identifier


# --------------------------------------------------------------------------
# Descriptors
# --------------------------------------------------------------------------


def short_hash(identifier: str) -> str:
    return hashlib.sha256(identifier.encode("utf-8")).hexdigest()[:16]


def endpoint(href: str, interface: str = "AAS-3.0", protocol: str = "HTTP") -> dict:
    return {
        "interface": interface,
        "protocolInformation": {"href": href, "endpointProtocol": protocol, "endpointProtocolVersion": ["1.1"]},
    }


def shell_desc(identifier: str, **extra: Any) -> dict:
    d = {
        "id": identifier,
        "idShort": "shell",
        "endpoints": [endpoint("http://127.0.0.1:9/shells/" + short_hash(identifier))],
    }
    d.update(extra)
    return d


def submodel_desc(identifier: str, **extra: Any) -> dict:
    d = {
        "id": identifier,
        "idShort": "submodel",
        "endpoints": [endpoint("http://127.0.0.1:9/submodels/" + short_hash(identifier), interface="SUBMODEL-3.0")],
    }
    d.update(extra)
    return d


def semantic_id(*values: str) -> dict:
    return {"type": "ExternalReference", "keys": [{"type": "GlobalReference", "value": v} for v in values]}


def asset_id_param(name: str, value: str) -> str:
    """An `assetIds` query value: base64url of a JSON SpecificAssetId."""
    return b64(json.dumps({"name": name, "value": value}, separators=(",", ":")))


# --------------------------------------------------------------------------
# Assertions
# --------------------------------------------------------------------------


def assert_json(resp: requests.Response) -> Any:
    ctype = resp.headers.get("Content-Type", "")
    assert "json" in ctype.lower(), (
        f"{resp.request.method} {resp.url}: expected a JSON content type, got {ctype!r}; body {resp.text[:500]!r}"
    )
    try:
        return resp.json()
    except ValueError as e:  # pragma: no cover - the assertion message is the point
        raise AssertionError(f"{resp.request.method} {resp.url}: body is not JSON: {resp.text[:500]!r}") from e


def assert_status(resp: requests.Response, status: int) -> None:
    assert resp.status_code < 500, (
        f"{resp.request.method} {resp.url}: server error {resp.status_code} for client input: {resp.text[:1000]!r}"
    )
    assert resp.status_code == status, (
        f"{resp.request.method} {resp.url}: expected {status}, got {resp.status_code}: {resp.text[:1000]!r}"
    )


def assert_result_body(resp: requests.Response, status: int) -> list[dict]:
    """The AAS Part 2 `Result` error body; returns its messages."""
    assert_status(resp, status)
    body = assert_json(resp)
    assert isinstance(body, dict) and isinstance(body.get("messages"), list), f"not a Result body: {body!r}"
    messages = body["messages"]
    assert messages, f"Result body without messages: {body!r}"
    for m in messages:
        assert isinstance(m, dict), m
        assert m.get("code") == str(status), f"message code {m.get('code')!r} != {status}: {m!r}"
        assert m.get("messageType") == "Error", m
        assert isinstance(m.get("text"), str) and m["text"].strip(), m
        assert isinstance(m.get("timestamp"), str) and TIMESTAMP_RE.match(m["timestamp"]), m
        cid = m.get("correlationId")
        assert isinstance(cid, str) and 1 <= len(cid) <= 128, m
    return messages


def assert_subset(expected: Any, actual: Any, path: str = "") -> None:
    """Every field of `expected` is in `actual` with the same value."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path or '/'}: expected an object, got {actual!r}"
        for k, v in expected.items():
            assert k in actual, f"{path}/{k} missing in {actual!r}"
            assert_subset(v, actual[k], f"{path}/{k}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), (
            f"{path}: expected {len(expected)} items, got {actual!r}"
        )
        for i, (e, a) in enumerate(zip(expected, actual)):
            assert_subset(e, a, f"{path}/{i}")
    else:
        assert expected == actual, f"{path}: expected {expected!r}, got {actual!r}"


def assert_paged(resp: requests.Response) -> tuple[list, str | None]:
    """A 200 paged result; returns (result, cursor or None)."""
    assert_status(resp, 200)
    body = assert_json(resp)
    assert isinstance(body, dict), body
    assert "paging_metadata" in body and isinstance(body["paging_metadata"], dict), body
    result = body.get("result", [])
    assert isinstance(result, list), body
    cursor = body["paging_metadata"].get("cursor")
    if "cursor" in body["paging_metadata"]:
        assert isinstance(cursor, str) and cursor, f"cursor present but not a non-empty string: {body['paging_metadata']!r}"
    return result, cursor


def list_all(client: requests.Session, url: str, params: Any = None, limit: int = 10000, max_pages: int = 10000) -> list:
    """Follow cursors through a paged list; returns every item."""
    items: list = []
    cursor = None
    base = list(params.items()) if isinstance(params, dict) else list(params or [])
    for _ in range(max_pages):
        q = base + [("limit", str(limit))] + ([("cursor", cursor)] if cursor else [])
        page, cursor = assert_paged(client.get(url, params=q))
        assert len(page) <= limit
        items.extend(page)
        if cursor is None:
            return items
    raise AssertionError(f"{url}: more than {max_pages} pages")


def ids_of(items: Iterable[dict]) -> list[str]:
    return [d.get("id") for d in items]


def snapshot(client: requests.Session, base_url: str) -> dict:
    """Everything stored (shells incl. nested, submodels), for 'nothing changed' checks."""
    return {
        "shells": list_all(client, base_url + "/shell-descriptors"),
        "submodels": list_all(client, base_url + "/submodel-descriptors"),
    }


def post_shell(client: requests.Session, base: str, desc: dict) -> requests.Response:
    r = client.post(base + "/shell-descriptors", json=desc)
    assert_status(r, 201)
    return r


def post_submodel(client: requests.Session, base: str, desc: dict) -> requests.Response:
    r = client.post(base + "/submodel-descriptors", json=desc)
    assert_status(r, 201)
    return r


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(require_binary()), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(REPO_ROOT),
        stdin=subprocess.DEVNULL,
    )


def load_data(name: str) -> Any:
    return json.loads((DATA_DIR / name).read_text(encoding="utf-8"))
