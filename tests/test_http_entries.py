"""The two HTTP entries answer alike.

The embedded host enters HTTP components through the typed
`twinlattice:http-face/handler` call by default, and through
`wasi:http/incoming-handler` with `--http-entry wasi-http` (the entry a
lattice's http-server provider uses). The rest of the suite drives the
default; here one scripted exchange runs against a server of each kind, over
raw sockets so that bodies, framing and HEAD are exactly as written, and the
answers are compared. The script covers the bodies the typed entry reads
itself: none, small, over the limit by `content-length` and by chunks, and a
chunked body that breaks off.
"""
from __future__ import annotations

import base64
import json
import socket

import pytest

from twins_helpers import new_account

MAX_BODY = 4096  # --max-body-bytes for both servers


def b64(s: str) -> str:
    return base64.urlsafe_b64encode(s.encode()).decode().rstrip("=")


def exchange(base_url: str, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send `raw` on a new connection; read one response."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(raw)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            assert chunk, f"connection closed before a response; got {data!r}"
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        if raw.startswith(b"HEAD "):
            return status, headers, b""
        while len(rest) < length:
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
        return status, headers, rest[:length]


def request(method: str, target: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "host: test", "connection: close"]
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    if body is not None and not any(k.lower() in ("content-length", "transfer-encoding") for k in headers or {}):
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


def shell(i: int, suffix: str) -> dict:
    return {
        "id": f"https://entries.example.com/aas/{suffix}/{i}",
        "idShort": f"Entries{suffix}{i}",
        "assetKind": "Instance",
        "globalAssetId": f"https://entries.example.com/asset/{suffix}/{i}",
        "endpoints": [{"interface": "AAS-3.0", "protocolInformation": {"href": "https://repo.example.com/x"}}],
    }


def script(suffix: str) -> list[tuple[str, bytes]]:
    """(label, raw request) pairs, in order; later ones read what earlier ones wrote."""
    sid = shell(1, suffix)["id"]
    json_ct = {"content-type": "application/json"}
    big = json.dumps({**shell(2, suffix), "description": [{"language": "en", "text": "x" * (MAX_BODY + 10)}]}).encode()
    return [
        ("post shell", request("POST", "/shell-descriptors", json.dumps(shell(1, suffix)).encode(), json_ct)),
        ("post again (409)", request("POST", "/shell-descriptors", json.dumps(shell(1, suffix)).encode(), json_ct)),
        ("get shell", request("GET", f"/shell-descriptors/{b64(sid)}")),
        ("get under /api/v3.0", request("GET", f"/api/v3.0/shell-descriptors/{b64(sid)}")),
        ("head shell", request("HEAD", f"/shell-descriptors/{b64(sid)}")),
        ("get missing (404)", request("GET", f"/shell-descriptors/{b64(sid + '-missing')}")),
        ("bad base64 (400)", request("GET", "/shell-descriptors/%%%")),
        ("method not allowed (405)", request("PATCH", "/shell-descriptors", b"{}", json_ct)),
        ("options (405)", request("OPTIONS", "/shell-descriptors")),
        ("a method outside the list (405)", request("PROPFIND", f"/shell-descriptors/{b64(sid)}")),
        ("malformed json (400)", request("POST", "/shell-descriptors", b"{not json", json_ct)),
        ("not utf-8 (400)", request("POST", "/shell-descriptors", b"\xff\xfe{}", json_ct)),
        ("empty body (400)", request("POST", "/shell-descriptors", b"", json_ct)),
        ("too large by length (413)", request("POST", "/shell-descriptors", big, json_ct)),
        (
            "too large by chunks (413)",
            request("POST", "/shell-descriptors", f"{len(big):x}\r\n".encode() + big + b"\r\n0\r\n\r\n",
                    {**json_ct, "transfer-encoding": "chunked"}),
        ),
        (
            "chunked, whole (201)",
            request("POST", "/shell-descriptors",
                    (lambda d: f"{len(d):x}\r\n".encode() + d + b"\r\n0\r\n\r\n")(json.dumps(shell(3, suffix)).encode()),
                    {**json_ct, "transfer-encoding": "chunked"}),
        ),
        (
            "chunked, broken off (400)",
            request("POST", "/shell-descriptors", b"zz\r\n{}\r\n0\r\n\r\n", {**json_ct, "transfer-encoding": "chunked"}),
        ),
        ("query filter", request("GET", f"/shell-descriptors?limit=1&assetKind=Instance")),
        ("ric get by idShort", request("GET", f"/registry/shell-descriptors/Entries{suffix}1")),
        ("delete shell (204)", request("DELETE", f"/shell-descriptors/{b64(sid)}")),
        ("get deleted (404)", request("GET", f"/shell-descriptors/{b64(sid)}")),
        ("unknown route (404)", request("GET", "/nope")),
        ("twins without a secret (401)", request("GET", "/account")),
        ("twins bad secret (401)", request("GET", "/twins", headers={"authorization": "nope"})),
        # A header value that is not ASCII (nor UTF-8) reaches the component
        # as replaced text: still a bad secret, not a failure.
        ("twins secret not ascii (401)", request("GET", "/twins").replace(b"\r\n\r\n", b"\r\nauthorization: \xe9t\xc3\r\n\r\n")),
    ]


def normalise(status: int, headers: dict[str, str], body: bytes):
    """What must agree: the status, the headers the APIs set, the body with
    per-request noise (trace and correlation ids, times) taken out."""
    text = body.decode("utf-8", "replace")
    try:
        doc = json.loads(text) if text else None
    except ValueError:
        doc = text
    if isinstance(doc, dict) and "trace" in doc:
        doc["trace"] = "TRACE"  # the twin API's per-request trace id
    if isinstance(doc, dict) and isinstance(doc.get("messages"), list):
        for m in doc["messages"]:
            m.pop("timestamp", None)
            m.pop("correlationId", None)
    kept = {k: headers[k] for k in ("content-type", "allow", "location") if k in headers}
    return status, kept, doc


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    from conftest import Server

    made = []
    for entry in ("typed", "wasi-http"):
        s = Server(tmp_path_factory.mktemp(f"entry-{entry}"),
                   extra_args=["--http-entry", entry, "--max-body-bytes", str(MAX_BODY)]).start()
        made.append(s)
    yield made
    for s in made:
        s.kill()


def test_both_entries_answer_alike(servers):
    typed, wasi = servers
    answers = {}
    # Separate data directories: the same ids on both.
    for s in (typed, wasi):
        answers[s] = [(label, normalise(*exchange(s.base_url, raw))) for label, raw in script("same")]
    mismatches = [(a[0], a[1], b[1]) for a, b in zip(answers[typed], answers[wasi]) if a[1] != b[1]]
    assert not mismatches, "\n".join(f"{label}:\n  typed:     {a}\n  wasi:http: {b}" for label, a, b in mismatches)


def test_script_meets_expectations(servers):
    """The exchanges compared above are the ones intended (so agreeing on a
    wrong answer cannot pass): the statuses, on the typed entry."""
    typed = servers[0]
    got = {label: exchange(typed.base_url, raw)[0] for label, raw in script("other")}
    expected = {
        "post shell": 201, "post again (409)": 409, "get shell": 200, "get under /api/v3.0": 200,
        "head shell": 200, "get missing (404)": 404, "bad base64 (400)": 400,
        "method not allowed (405)": 405, "options (405)": 405, "a method outside the list (405)": 405,
        "malformed json (400)": 400, "not utf-8 (400)": 400,
        "empty body (400)": 400, "too large by length (413)": 413, "too large by chunks (413)": 413,
        "chunked, whole (201)": 201, "chunked, broken off (400)": 400, "query filter": 200,
        "ric get by idShort": 200, "delete shell (204)": 204, "get deleted (404)": 404,
        "unknown route (404)": 404, "twins without a secret (401)": 401, "twins bad secret (401)": 401,
        "twins secret not ascii (401)": 401,
    }
    assert got == expected


def test_twin_api_through_both_entries(servers):
    """An authenticated twin API round trip (body in, JSON out) on each entry."""
    for s in servers:
        acct = new_account(s)
        auth = {"authorization": acct["secret"], "content-type": "application/json"}
        status, _, body = exchange(s.base_url, request("POST", "/twins", b'{"description": {"k": 1}}', auth))
        assert status == 201, body
        twin = json.loads(body)["creation_certificate"]["uuid"]
        status, _, body = exchange(s.base_url, request("GET", f"/twins/{twin}", headers=auth))
        assert status == 200 and json.loads(body)["description"] == {"k": 1}, body
        big = b'{"description": {"k": "' + b"x" * (MAX_BODY + 1) + b'"}}'
        status, _, body = exchange(s.base_url, request("PATCH", f"/twins/{twin}", big, auth))
        assert status == 400 and json.loads(body)["subcode"] == 400141, (s.extra_args, status, body)
