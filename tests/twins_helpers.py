"""Helpers for the end-to-end tests of the Trusted-Twin-compatible twin API.

The contract is components/twins/API.md. Every test talks to the real
`twinlattice serve` process (the session `server` fixture of conftest.py)
through the official client `trustedtwin` 3.18 (`TTRESTService`); `requests`
is used only for transport quirks the client cannot produce.

Accounts come from the real CLI: `twinlattice account create --admin URL`
prints `{"account","user","role","secret"}` (the Super Admin); the demo data
from `twinlattice demo seed --admin URL`. On a lattice (`LatticeTarget`) the
same commands take `--lattice NATS_URL` and call the twins component over
wRPC, and the twin API has its own port (`twin_api_url`).
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from pathlib import Path
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import requests
from trustedtwin.tt_api import TTRESTService

from conftest import LatticeTarget, require_running, run_cli

HTTP_TIMEOUT = float(os.environ.get("TWINLATTICE_HTTP_TIMEOUT", "30"))
CLI_TIMEOUT = 120

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
PIN_RE = re.compile(r"^[A-Z0-9]{6}$")
SECRET_RE = re.compile(r"^[A-Za-z0-9+/]{64}$")
# A history key: a float as Python prints it ("1650882205.34", "1650882205.0").
HISTORY_TS_RE = re.compile(r"^[0-9]+\.[0-9]{1,3}$")

NOT_ACCESSIBLE = "Entry not accessible."
ERROR_KEYS = {"subcode", "trace", "description", "help"}

SUPER_ADMIN_RULES = {"twin_rule": "true", "entry_rule": "true", "identity_rule": "true"}

# The actions of the tutorial's role.
TUTORIAL_ACTIONS = [
    "create_twin",
    "get_twin",
    "update_twin",
    "terminate_twin",
    "add_twin_ledger_entry",
    "get_twin_ledger_entry",
    "update_twin_ledger_entry",
    "delete_twin_ledger_entry",
    "get_twin_ledger_entry_value",
    "get_twin_ledger_entry_history",
    "create_twin_identity",
    "get_twin_identities",
    "get_twin_identity",
    "resolve_twin_identity",
]


# --------------------------------------------------------------------------
# The CLI
# --------------------------------------------------------------------------


def twin_api_url(server) -> str:
    """Where the twin API is served: the embedded host serves it on its one
    port beside the AAS registry; a lattice gives it a port of its own."""
    return getattr(server, "twins_url", None) or server.base_url


def admin_target(server) -> list[str]:
    """The CLI's target for the twins component's admin calls: the embedded
    host's admin endpoint, or the lattice's NATS server."""
    if isinstance(server, LatticeTarget):
        assert server.nats_url, "a lattice target needs TWINLATTICE_TEST_LATTICE_NATS_URL (scripts/test-lattice.sh sets it)"
        return ["--lattice", server.nats_url]
    return ["--admin", admin_url(server), "--admin-token-file", str(admin_token_file(server))]


def admin_token_file(server) -> Path:
    """The admin token `serve` wrote into its data directory (mode 0600)."""
    return Path(server.data_dir) / "admin.token"


def admin_headers(server) -> dict[str, str]:
    """What a request to the admin endpoint needs besides a loopback Host."""
    return {"Authorization": "Bearer " + admin_token_file(server).read_text().strip()}


def admin_url(server) -> str:
    """The admin URL the server printed (`twinlattice admin listening on URL`)."""
    require_running(server)
    for line in list(server.stdout_lines):
        if line.startswith("twinlattice admin listening on "):
            return line.split(" on ", 1)[1].strip()
    raise AssertionError(f"no 'twinlattice admin listening on' line in stdout: {server.stdout_lines}")


def run_twinlattice(*args: str, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess:
    return run_cli(*args, timeout=timeout)


def _one_json_object(p: subprocess.CompletedProcess, what: str) -> dict:
    assert p.returncode == 0, f"{what} exited {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    try:
        obj = json.loads(p.stdout)
    except ValueError as e:
        raise AssertionError(f"{what}: stdout is not exactly one JSON object:\n{p.stdout!r}\nstderr:\n{p.stderr}") from e
    assert isinstance(obj, dict), f"{what}: expected a JSON object, got {obj!r}"
    return obj


def new_account(server, name: str | None = None) -> dict:
    """A fresh account through `twinlattice account create --admin URL` (on a
    lattice `--lattice NATS_URL`).

    Returns `{"account","user","role","secret"}` (the Super Admin)."""
    args = ["account", "create", *admin_target(server)]
    if name is not None:
        args += ["--name", name]
    acct = _one_json_object(run_twinlattice(*args), "twinlattice account create")
    assert set(acct) == {"account", "user", "role", "secret"}, acct
    for k in ("account", "user", "role"):
        assert isinstance(acct[k], str) and UUID_RE.match(acct[k]), (k, acct)
    assert isinstance(acct["secret"], str) and SECRET_RE.match(acct["secret"]), acct
    return acct


def demo_seed(server) -> dict:
    """`twinlattice demo seed --admin URL` (on a lattice `--lattice NATS_URL`)
    → `{"account","twin","identity","meters"}`."""
    seed = _one_json_object(run_twinlattice("demo", "seed", *admin_target(server)), "twinlattice demo seed")
    assert set(seed) == {"account", "twin", "identity", "meters"}, seed
    assert UUID_RE.match(seed["account"]) and UUID_RE.match(seed["twin"]), seed
    assert isinstance(seed["meters"], list) and seed["meters"], seed
    return seed


# --------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------


def tt_for(server, secret: str | None = None, **kw: Any) -> TTRESTService:
    """The official client on the test server (`secret=None`: no Authorization)."""
    require_running(server)
    return TTRESTService(tt_auth=secret, tt_base=twin_api_url(server), **kw)


def parse(text: str, what: str = "") -> Any:
    try:
        return json.loads(text)
    except ValueError as e:
        raise AssertionError(f"{what}: response is not JSON: {text[:1000]!r}") from e


def call(fn: Callable, *args: Any, **kwargs: Any) -> tuple[int, Any]:
    """Call a client endpoint; returns (status, parsed JSON). A 5xx fails the test.

    `retries=1` (no client retries: a 5xx is always a bug) and a timeout are
    added unless given."""
    kwargs.setdefault("retries", 1)
    kwargs.setdefault("timeout", HTTP_TIMEOUT)
    status, text = fn(*args, **kwargs)
    what = f"{getattr(fn, 'method', '?')} {getattr(fn, 'url', fn)} args={args!r}"
    assert status < 500, f"{what}: server error {status}: {text[:2000]}"
    return status, parse(text, what)


def ok(fn: Callable, *args: Any, status: int = 200, **kwargs: Any) -> Any:
    """`call` and assert the status; returns the parsed body."""
    got, body = call(fn, *args, **kwargs)
    what = f"{getattr(fn, 'method', '?')} {getattr(fn, 'url', fn)} args={args!r} kwargs={kwargs!r}"
    assert got == status, f"{what}: expected {status}, got {got}: {body!r}"
    return body


def assert_error(status: int, body: Any, http: int, subcode: int) -> dict:
    """The error body is exactly {subcode, trace, description, help}."""
    assert status == http, f"expected HTTP {http}/{subcode}, got {status}: {body!r}"
    assert isinstance(body, dict), f"error body is not an object: {body!r}"
    assert set(body) == ERROR_KEYS, f"error body keys {sorted(body)} != {sorted(ERROR_KEYS)}: {body!r}"
    assert type(body["subcode"]) is int, f"subcode is not an int: {body!r}"
    assert body["subcode"] == subcode, f"expected subcode {subcode}, got {body['subcode']}: {body!r}"
    trace = body["trace"]
    assert isinstance(trace, str) and UUID_RE.match(trace), f"trace is not a UUID: {body!r}"
    assert uuid.UUID(trace).version == 4, f"trace is not a UUID4: {body!r}"
    assert isinstance(body["description"], str) and body["description"], f"description: {body!r}"
    assert body["help"] is None, f"help should be null: {body!r}"
    return body


def expect_error(fn: Callable, *args: Any, http: int, subcode: int, **kwargs: Any) -> dict:
    status, body = call(fn, *args, **kwargs)
    return assert_error(status, body, http, subcode)


def raw(server, method: str, path: str, secret: str | None = None, headers: dict | None = None, **kw: Any) -> tuple[int, Any]:
    """A request with `requests` (transport quirks). Returns (status, parsed JSON)."""
    require_running(server)
    h = dict(headers or {})
    if secret is not None:
        h.setdefault("Authorization", secret)
    kw.setdefault("timeout", HTTP_TIMEOUT)
    r = requests.request(method, twin_api_url(server) + path, headers=h, **kw)
    assert r.status_code < 500, f"{method} {path}: server error {r.status_code}: {r.text[:2000]}"
    return r.status_code, parse(r.text, f"{method} {path}")


def b64_dict(d: dict) -> str:
    return base64.b64encode(json.dumps(d).encode("utf-8")).decode("ascii")


# --------------------------------------------------------------------------
# Objects
# --------------------------------------------------------------------------


@dataclass
class Account:
    server: Any
    account: str
    user: str
    role: str
    secret: str
    tt: TTRESTService = field(repr=False)

    def client(self, **kw: Any) -> TTRESTService:
        return tt_for(self.server, self.secret, **kw)


def account(server, name: str | None = None) -> Account:
    a = new_account(server, name)
    return Account(server, a["account"], a["user"], a["role"], a["secret"], tt_for(server, a["secret"]))


@dataclass
class User:
    account: str
    user: str
    role: str
    secret: str
    tt: TTRESTService = field(repr=False)


def twin_uuid(twin: dict) -> str:
    assert isinstance(twin, dict) and isinstance(twin.get("creation_certificate"), dict), twin
    u = twin["creation_certificate"].get("uuid")
    assert isinstance(u, str) and UUID_RE.match(u), twin
    return u


def create_twin(tt: TTRESTService, description: dict | None = None) -> str:
    body = {"description": description} if description is not None else None
    return twin_uuid(ok(tt.create_twin, body=body, status=201))


def create_role(tt: TTRESTService, actions: list[str] | None, effect: str = "allow",
                rules: dict | None = None, name: str = "test role") -> str:
    body: dict = {"name": name, "statement": {"effect": effect, "actions": actions}}
    if rules is not None:
        body["rules"] = rules
    role = ok(tt.create_user_role, body=body, status=201)
    assert UUID_RE.match(role["uuid"]), role
    return role["uuid"]


def secret_for(server, admin_tt: TTRESTService, account_uuid: str, user_uuid: str,
               validity_ts: float | None = None) -> str:
    """PIN (as admin) + secret (without authentication) for a user."""
    body = {"validity_ts": validity_ts} if validity_ts is not None else None
    pin = ok(admin_tt.create_user_secret_pin, user_uuid, body=body, status=201)
    assert PIN_RE.match(pin.get("pin", "")), pin
    made = ok(tt_for(server).create_user_secret, account_uuid, pin["pin"], status=201)
    assert made["account"] == account_uuid and made["user"] == user_uuid, made
    assert SECRET_RE.match(made["secret"]), made
    return made["secret"]


def make_user(server, admin: Account, role: str | None = None, description: dict | None = None,
              name: str = "test user", validity_ts: float | None = None, **tt_kw: Any) -> User:
    """A user in `admin`'s account (default: with the Super Admin role) and its secret."""
    body: dict = {"name": name, "role": role or admin.role}
    if description is not None:
        body["description"] = description
    u = ok(admin.tt.create_user, body=body, status=201)
    assert UUID_RE.match(u["uuid"]) and u["account"] == admin.account, u
    secret = secret_for(server, admin.tt, admin.account, u["uuid"], validity_ts)
    return User(admin.account, u["uuid"], body["role"], secret, tt_for(server, secret, **tt_kw))


def entries_of(body: Any) -> dict:
    assert isinstance(body, dict) and isinstance(body.get("entries"), dict), body
    return body["entries"]


def ledger(tt: TTRESTService, twin: str, ledger_id: str = "personal", **kw: Any) -> dict:
    """The entries of a ledger as the client sees them."""
    return entries_of(ok(tt.get_twin_ledger_entry, twin, ledger_id, **kw))


def values(tt: TTRESTService, twin: str, ledger_id: str = "personal", **kw: Any) -> dict:
    """{name: value} of a ledger."""
    return {k: v["value"] for k, v in entries_of(ok(tt.get_twin_ledger_entry_value, twin, ledger_id, **kw)).items()}


def history(tt: TTRESTService, twin: str, ledger_id: str = "personal", **kw: Any) -> dict:
    return entries_of(ok(tt.get_twin_ledger_entry_history, twin, ledger_id, **kw))


def assert_history_shape(h: Any) -> list[float]:
    """A history object: `{"<ts>": value}` newest first. Returns the timestamps."""
    assert isinstance(h, dict), f"history is not an object: {h!r}"
    ts = []
    for k in h:
        assert isinstance(k, str) and HISTORY_TS_RE.match(k), f"history key {k!r} is not a float string"
        assert str(float(k)) == k, f"history key {k!r} is not written as Python prints a float ({float(k)!r})"
        ts.append(float(k))
    assert ts == sorted(ts, reverse=True), f"history not newest first: {list(h)}"
    assert len(set(ts)) == len(ts), f"duplicate history timestamps: {list(h)}"
    return ts


def scan_all(tt: TTRESTService, **params: Any) -> list:
    """Every twin of scan_twins, following the cursor."""
    out: list = []
    cursor = None
    for _ in range(1000):
        p = dict(params)
        if cursor is not None:
            p["cursor"] = cursor
        body = ok(tt.scan_twins, params=p)
        assert isinstance(body.get("twins"), list), body
        out.extend(body["twins"])
        cursor = body.get("cursor")
        if cursor is None:
            return out
    raise AssertionError("scan_twins: more than 1000 pages")


def random_uuid() -> str:
    return str(uuid.uuid4())


def pause() -> None:
    """Let the clock move past the millisecond timestamps of the last write."""
    time.sleep(0.02)

