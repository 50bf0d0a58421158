"""Hardening of the host and the broker (issue "Hardening"; findings of
../shared/reference/security-review.md): the admin endpoint (M6, C3's
target), slow and hostile HTTP clients (H3), call deadlines (H6's host
half), and message loops (H4, H5).

Each test reproduces a finding's recipe against the real binary with real
clients (requests, raw sockets, aiocoap, paho) and fails on the code before
its fix. The twin API's findings are in test_security_twins.py, the rule
engine's in test_security_rules.py, the bridges' in test_security_bridges.py.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from broker_peers import (
    BrokerEnv,
    LatticeBrokerEnv,
    app_msg,
    assert_error_message,
    coap_post_json,
    heartbeat_msg,
    new_id,
)
from conftest import LATTICE_URL, Server
from twins_helpers import account, admin_headers, admin_url

@pytest.fixture
def loop_env(tmp_path_factory):
    """A broker env of its own, or the lattice deployment's broker."""
    env = LatticeBrokerEnv() if LATTICE_URL else BrokerEnv(tmp_path_factory.mktemp("broker-loop"))
    yield env
    env.close()


# --------------------------------------------------------------------------
# The admin endpoint (M6; the SSRF target of C3)
# --------------------------------------------------------------------------


@pytest.mark.embedded
def test_admin_endpoint_needs_the_token(server):
    url = admin_url(server) + "/admin/components"
    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(url, headers={"Authorization": "Bearer " + "0" * 64}, timeout=10).status_code == 401
    # The recipe: an account created with no credentials at all.
    r = requests.post(admin_url(server) + "/admin/accounts", json={}, timeout=10)
    assert r.status_code == 401 and "secret" not in r.text, r.text
    r = requests.get(url, headers=admin_headers(server), timeout=10)
    assert r.status_code == 200 and "components" in r.json(), r.text


@pytest.mark.embedded
def test_admin_endpoint_refuses_a_foreign_host_even_with_the_token(server):
    # DNS rebinding: the browser sends the attacker's host name.
    r = requests.post(admin_url(server) + "/admin/accounts", json={},
                      headers={**admin_headers(server), "Host": "evil.example"}, timeout=10)
    assert r.status_code == 403 and "secret" not in r.text, r.text


@pytest.mark.embedded
def test_admin_endpoint_refuses_browser_requests(server):
    # CSRF: a page's text/plain POST carries an Origin.
    r = requests.post(admin_url(server) + "/admin/demo", data="{}",
                      headers={**admin_headers(server), "Content-Type": "text/plain", "Origin": "http://evil.example"},
                      timeout=10)
    assert r.status_code == 403, r.text


@pytest.mark.embedded
def test_admin_token_file_is_readable_by_its_owner_only(server):
    mode = stat.S_IMODE(os.stat(server.data_dir / "admin.token").st_mode)
    assert mode == 0o600, oct(mode)


# --------------------------------------------------------------------------
# Slow and hostile HTTP clients (H3)
# --------------------------------------------------------------------------


def open_slow_clients(port: int, n: int, *, body: bool) -> list[socket.socket]:
    """`n` connections that send a request head (and with `body` a first byte
    of a 1000-byte body) and then nothing, from 127.0.0.2… (a few loopback
    addresses, so the per-address cap does not refuse them)."""
    socks = []
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((f"127.0.0.{2 + i % 5}", 0))
        s.connect(("127.0.0.1", port))
        if body:
            s.sendall(b"POST /shell-descriptors HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 1000\r\n\r\n{")
        else:
            s.sendall(b"GET /description HTTP/1.1\r\nHost: x\r\n")
        socks.append(s)
    return socks


def timed(f) -> tuple[float, object]:
    t = time.monotonic()
    out = f()
    return time.monotonic() - t, out


@pytest.mark.embedded
def test_slow_clients_do_not_stall_any_face(broker_factory):
    """500 slowloris connections (130 of them mid-body, enough to hold every
    admission slot before the fix): GET /description, a CoAP POST and an
    MQTT message are each still answered within 1 s."""
    env: BrokerEnv = broker_factory()
    port = env.server.port
    tx, rx = env.aas("http"), env.aas("mqtt")
    tx.register_ok()
    rx.register_ok()
    coap = env.aas("coap")
    coap.register_ok()
    socks = open_slow_clients(port, 130, body=True) + open_slow_clients(port, 370, body=False)
    try:
        time.sleep(0.5)
        took, r = timed(lambda: requests.get(env.base_url + "/description", timeout=5))
        assert r.status_code == 200 and took < 1.0, (r.status_code, took)
        took, _ = timed(lambda: coap.request(heartbeat_msg(coap.id), timeout=5))
        assert took < 1.0, f"CoAP HeartBeat answered after {took:.2f} s"
        took, _ = timed(lambda: rx.request(heartbeat_msg(rx.id), timeout=5))
        assert took < 1.0, f"MQTT HeartBeat answered after {took:.2f} s"
        took, r = timed(lambda: env.post_http(app_msg(tx.id, rx.id), timeout=5))
        assert r.status_code == 202 and took < 1.0, (r.status_code, took)
    finally:
        for s in socks:
            s.close()


@pytest.mark.embedded
def test_a_body_that_never_arrives_gets_408(tmp_path):
    server = Server(tmp_path / "d", extra_args=["--body-read-timeout-ms", "500"]).start()
    try:
        s = socket.create_connection(("127.0.0.1", server.port))
        s.settimeout(5)
        s.sendall(b"POST /shell-descriptors HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        t = time.monotonic()
        answer = s.recv(65536).decode("utf-8", "replace")
        assert answer.startswith("HTTP/1.1 408"), answer
        assert 0.4 < time.monotonic() - t < 3, time.monotonic() - t
        body = json.loads(answer.split("\r\n\r\n", 1)[1])
        assert body["messages"][0]["code"] == "408", body
        s.close()
        assert requests.get(server.base_url + "/description", timeout=5).status_code == 200
    finally:
        server.kill()


@pytest.mark.embedded
def test_a_head_that_never_ends_is_closed(tmp_path):
    server = Server(tmp_path / "d", extra_args=["--header-read-timeout-ms", "500"]).start()
    try:
        s = socket.create_connection(("127.0.0.1", server.port))
        s.settimeout(5)
        s.sendall(b"GET /description HTTP/1.1\r\nHost: x\r\n")
        t = time.monotonic()
        closed = s.recv(65536)
        assert closed == b"" or closed.startswith(b"HTTP/1.1 408"), closed
        assert time.monotonic() - t < 3, time.monotonic() - t
    finally:
        server.kill()


@pytest.mark.embedded
def test_connections_per_address_are_capped(tmp_path):
    server = Server(tmp_path / "d", extra_args=["--max-connections-per-ip", "4"]).start()
    try:
        held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(4)]
        time.sleep(0.2)
        extra = socket.create_connection(("127.0.0.1", server.port))
        extra.settimeout(5)
        answer = extra.recv(65536).decode()
        assert answer.startswith("HTTP/1.1 503"), answer
        assert json.loads(answer.split("\r\n\r\n", 1)[1])["messages"][0]["code"] == "503"
        # Another address is not affected, and a freed slot is usable again.
        other = socket.socket()
        other.bind(("127.0.0.9", 0))
        other.connect(("127.0.0.1", server.port))
        other.sendall(b"GET /description HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert other.recv(65536).startswith(b"HTTP/1.1 200")
        held.pop().close()
        time.sleep(0.2)
        assert requests.get(server.base_url + "/description", timeout=5).status_code == 200
        for s in held + [extra, other]:
            s.close()
    finally:
        server.kill()


# --------------------------------------------------------------------------
# Call deadlines (H6, the host's half: epoch interruption)
# --------------------------------------------------------------------------


@pytest.mark.embedded
def test_a_registry_call_past_its_deadline_is_503_and_the_host_lives_on(tmp_path):
    server = Server(tmp_path / "d", extra_args=["--call-deadline-ms", "10"]).start()
    try:
        ids = [{"name": f"n{i}", "value": "v" * 100} for i in range(7000)]
        r = requests.post(server.base_url + "/shell-descriptors", timeout=30,
                          json={"id": "urn:slow", "idShort": "slow", "specificAssetIds": ids})
        assert r.status_code == 503, (r.status_code, r.text[:300])
        assert r.json()["messages"][0]["code"] == "503", r.text
        assert requests.get(server.base_url + "/description", timeout=5).status_code == 200
    finally:
        server.kill()


@pytest.mark.embedded
def test_a_twin_api_call_past_its_deadline_is_503_in_the_twin_api_body(tmp_path):
    data = tmp_path / "d"
    server = Server(data).start()
    a = account(server)
    r = requests.post(admin_url(server) + "/admin/bulk-twins", headers=admin_headers(server), timeout=60,
                      json={"account": a.account, "count": 5000, "entries": 1})
    assert r.status_code == 200, r.text
    server.kill()
    slow = Server(data, extra_args=["--call-deadline-ms", "10"]).start()
    try:
        r = requests.get(slow.base_url + "/twins", params={"match": "false", "count": 1000},
                         headers={"Authorization": a.secret}, timeout=30)
        assert r.status_code == 503, (r.status_code, r.text[:300])
        body = r.json()
        assert body["subcode"] == 503000 and "deadline" in body["description"], body
        assert requests.get(slow.base_url + "/whoami", headers={"Authorization": a.secret}, timeout=10).status_code in (200, 503)
    finally:
        slow.kill()


# --------------------------------------------------------------------------
# Message loops (H4, H5)
# --------------------------------------------------------------------------


def count_on(env: BrokerEnv, topics: list[str], publish, seconds: float = 3.0) -> int:
    listener = env.mqtt_client(topics)
    publish()
    time.sleep(seconds)
    return len(listener.sink)


def from_broker(msg_type: str) -> str:
    return json.dumps({"frame": {"type": msg_type, "messageId": "1",
                                 "sender": {"identification": {"id": "VWS_RIC"}},
                                 "receiver": {"identification": {"id": "VWS_RIC"}}}, "interactionElements": []})


@pytest.mark.embedded
@pytest.mark.parametrize("via", ["http", "coap"])
def test_slow_receivers_hold_no_slot_while_their_deliveries_wait(broker_factory, via):
    """H5: 140 messages (more than the 128 admission slots), sent over HTTP
    or CoAP, to a receiver that answers only after 20 s. While their
    deliveries and back-offs wait, GET /description and a message to another
    receiver are answered within 1 s; each slow message still ends with an
    E/502 for its sender, within the delivery budget (before the fix every
    slot was held for 15 s)."""
    env: BrokerEnv = broker_factory()
    slow = env.aas("http", http_delay=20.0)
    tx, rx = env.aas("http"), env.aas("mqtt")
    for a in (slow, tx, rx):
        a.register_ok()
    answers: list = []

    def send_to_slow() -> None:
        msg = app_msg(tx.id, slow.id)
        if via == "http":
            r = requests.post(env.http_inbox, json=msg, timeout=40)
            assert r.status_code == 200, r.text
            answers.append((msg, r.json()))
        else:
            resp = coap_post_json(env.coap_inbox, msg, timeout=40, own_socket=True)
            assert resp.code == "2.04", resp
            answers.append((msg, resp.json()))

    senders = [threading.Thread(target=send_to_slow) for _ in range(140)]
    for t in senders:
        t.start()
    try:
        time.sleep(2.0)
        took, r = timed(lambda: requests.get(env.base_url + "/description", timeout=5))
        assert r.status_code == 200 and took < 1.0, (r.status_code, took)
        took, r = timed(lambda: env.post_http(app_msg(tx.id, rx.id), timeout=5))
        assert r.status_code == 202 and took < 1.0, (r.status_code, took)
    finally:
        for t in senders:
            t.join(60)
    assert len(answers) == 140
    for msg, answer in answers:
        assert_error_message(answer, msg, "502", [slow.id])


@pytest.mark.parametrize("msg_type", ["ping", "HeartBeat"])
def test_a_message_from_the_broker_id_starts_no_loop(loop_env, msg_type):
    """H4's recipe: one publish on VWS_RIC with sender VWS_RIC. Before the
    fix, thousands of messages followed within seconds."""
    env = loop_env
    sender = env.mqtt_client()
    seen = count_on(env, ["VWS_RIC", "AASpillarbox"], lambda: sender.publish("VWS_RIC", from_broker(msg_type)))
    assert seen <= 1, f"{seen} messages on the inbox topics after one publish"
    assert requests.get(env.base_url + "/description", timeout=5).status_code == 200


def test_an_error_is_never_answered_with_an_error(loop_env):
    env = loop_env
    aas = env.aas("mqtt")
    aas.register_ok()
    msg = app_msg(aas.id, "urn:nobody:" + new_id("x"))
    msg["frame"]["type"] = "error"
    before = len(aas.rec)
    aas.ensure_mqtt().publish("AASpillarbox", json.dumps(msg))
    time.sleep(2)
    assert len(aas.rec) == before, aas.rec.snapshot()[before:]
    # An ordinary message to nobody still gets its 404 error.
    msg = app_msg(aas.id, "urn:nobody:" + new_id("x"))
    aas.ensure_mqtt().publish("AASpillarbox", json.dumps(msg))
    aas.rec.wait_for(lambda r: isinstance(r.doc, dict) and r.doc.get("frame", {}).get("type") == "error", 10)


class Relay:
    """An HTTP 'AAS' that passes every message it gets straight back to the
    broker's inbox, unchanged: a cycle through an external relay."""

    def __init__(self, inbox: str) -> None:
        self.count = 0
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                relay.count += 1
                self.send_response(200)
                self.end_headers()
                threading.Thread(target=lambda: requests.post(inbox, data=body, timeout=30,
                                                              headers={"Content-Type": "application/json"}),
                                 daemon=True).start()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.href = f"http://127.0.0.1:{self.server.server_address[1]}/i40commu"

    def close(self) -> None:
        self.server.shutdown()


def test_a_cycle_through_a_relay_is_cut(loop_env):
    env = loop_env
    relay = Relay(env.http_inbox)
    try:
        rid = new_id("relay")
        r = requests.post(env.base_url + "/shell-descriptors", timeout=10, json={
            "id": rid, "idShort": "relay",
            "endpoints": [{"interface": "communication", "protocolInformation": {"href": relay.href, "endpointProtocol": "http"}}]})
        assert r.status_code == 201, r.text
        tx = env.aas("http")
        tx.register_ok()
        tx.send(app_msg(tx.id, rid))
        time.sleep(4)
        first = relay.count
        time.sleep(2)
        assert relay.count == first, f"still looping: {first} then {relay.count} deliveries"
        assert 1 <= first <= 8, f"{first} deliveries from one message"
    finally:
        relay.close()


@pytest.mark.embedded
def test_an_aas_registered_under_an_inbox_name_gets_nothing(broker_factory):
    """An AAS named like an inbox would have the inbox as its MQTT topic."""
    env = broker_factory()
    r = requests.post(env.base_url + "/shell-descriptors", timeout=10, json={
        "id": "AASpillarbox", "idShort": "pillar",
        "endpoints": [{"interface": "communication", "protocolInformation": {"href": "mqtt://x/AASpillarbox", "endpointProtocol": "mqtt"}}]})
    assert r.status_code == 201, r.text
    tx = env.aas("mqtt")
    tx.register_ok()
    broadcast = app_msg(tx.id, None)
    seen = count_on(env, ["AASpillarbox"], lambda: tx.ensure_mqtt().publish("AASpillarbox", json.dumps(broadcast)))
    assert seen <= 1, f"{seen} messages on AASpillarbox after one broadcast"


# --------------------------------------------------------------------------
# Registry writes under concurrency (M2) and bounded documents and pages
# (H8, H9)
# --------------------------------------------------------------------------


def b64url(text: str) -> str:
    import base64

    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def concurrently(n: int, f) -> list:
    out: list = [None] * n
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        barrier.wait()
        out[i] = f(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_concurrent_posts_of_one_id_create_it_once(server):
    sid = "urn:race:" + new_id("r")
    codes = concurrently(20, lambda i: requests.post(server.base_url + "/shell-descriptors", timeout=30,
                                                     json={"id": sid, "idShort": f"r{i}"}).status_code)
    assert sorted(codes) == [201] + [409] * 19, codes
    listed = []
    cursor = None
    while True:
        params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = requests.get(server.base_url + "/shell-descriptors", params=params, timeout=30).json()
        listed += [d["id"] for d in page["result"]]
        cursor = page.get("paging_metadata", {}).get("cursor")
        if not cursor:
            break
    assert listed.count(sid) == 1, listed.count(sid)


def test_concurrent_nested_submodel_posts_are_all_kept(server):
    sid = "urn:nest:" + new_id("n")
    assert requests.post(server.base_url + "/shell-descriptors", json={"id": sid}, timeout=30).status_code == 201
    url = f"{server.base_url}/shell-descriptors/{b64url(sid)}/submodel-descriptors"
    codes = concurrently(20, lambda i: requests.post(url, timeout=30, json={
        "id": f"urn:sm:{i}", "endpoints": [{"interface": "SUBMODEL-3.0", "protocolInformation": {"href": f"http://x/{i}"}}]}).status_code)
    assert codes == [201] * 20, codes
    shell = requests.get(f"{server.base_url}/shell-descriptors/{b64url(sid)}", timeout=30).json()
    assert len(shell["submodelDescriptors"]) == 20, len(shell["submodelDescriptors"])


@pytest.mark.embedded
def test_nested_descriptors_cannot_grow_a_shell_past_the_body_limit(tmp_path):
    """H9's recipe, scaled to a 64 KiB limit: nested submodel descriptors
    added one by one stop at the limit with a 400 naming it, and the shell
    stays readable and deletable."""
    server = Server(tmp_path / "d", extra_args=["--max-body-bytes", "65536"]).start()
    try:
        sid = "urn:victim"
        assert requests.post(server.base_url + "/shell-descriptors", json={"id": sid}, timeout=30).status_code == 201
        url = f"{server.base_url}/shell-descriptors/{b64url(sid)}/submodel-descriptors"
        codes = []
        for k in range(12):
            sm = {"id": f"urn:sm:{k}", "idShort": f"s{k}",
                  "endpoints": [{"interface": "SUBMODEL-3.0", "protocolInformation": {"href": "http://x/" + "a" * 2000}}] * 4}
            r = requests.post(url, json=sm, timeout=30)
            codes.append(r.status_code)
            if r.status_code == 400:
                assert "over the limit of 65536 bytes" in r.text, r.text
        assert 201 in codes and codes[-1] == 400, codes
        r = requests.get(f"{server.base_url}/shell-descriptors/{b64url(sid)}", timeout=30)
        assert r.status_code == 200 and len(r.content) <= 65536
        assert requests.delete(f"{server.base_url}/shell-descriptors/{b64url(sid)}", timeout=30).status_code == 204
    finally:
        server.kill()


@pytest.mark.embedded
def test_a_page_of_large_descriptors_is_cut_by_bytes_and_the_ric_list_too(tmp_path):
    """H8: pages and the RIC's whole-list answer are bounded in bytes; the
    rest follows through the cursor."""
    server = Server(tmp_path / "d").start()
    try:
        ids = [{"name": f"n{i}", "value": "v" * 100} for i in range(7000)]  # ~0.9 MB each
        made = []
        for k in range(40):
            d = {"id": f"urn:fat:{k}", "idShort": f"f{k}", "specificAssetIds": ids}
            r = requests.post(server.base_url + "/shell-descriptors", json=d, timeout=60)
            assert r.status_code == 201, r.text[:300]
            made.append(d["id"])
        page = requests.get(server.base_url + "/shell-descriptors", params={"limit": 100}, timeout=60)
        body = page.json()
        assert len(page.content) < 9 << 20 and body["paging_metadata"].get("cursor"), (len(page.content), len(body["result"]))
        seen, cursor = [], None
        while True:
            r = requests.get(server.base_url + "/registry/shell-descriptors", params={"cursor": cursor} if cursor else {}, timeout=60)
            assert r.status_code == 200
            assert len(r.content) < 40 << 20, len(r.content)
            seen += [d["id"] if "id" in d else d["identification"]["id"] for d in r.json()]
            cursor = r.headers.get("x-next-cursor")
            if not cursor:
                break
        assert seen == made
        assert requests.get(server.base_url + "/status", timeout=60).status_code == 200
    finally:
        server.kill()


@pytest.mark.embedded
def test_a_refused_address_is_an_error_at_once_not_a_queued_message(broker_factory):
    """A receiver with no lease (registered over REST) whose only endpoint
    is a refused address: the sender learns at once (E/502), instead of a
    202 for a message queued for a delivery that can never happen."""
    env = broker_factory(extra_args=["--delivery-allow", "192.0.2.0/24"])
    tx = env.aas("http")
    tx.register_ok()
    rid = new_id("refused")
    r = requests.post(env.base_url + "/shell-descriptors", timeout=10, json={
        "id": rid, "endpoints": [{"interface": "communication", "protocolInformation": {"href": "http://127.0.0.1:9/i40commu", "endpointProtocol": "http"}}]})
    assert r.status_code == 201, r.text
    msg = app_msg(tx.id, rid)
    assert_error_message(tx.request(msg), msg, "502")
