"""The I4.0 message broker (VDI/VDE 2193 frames, RIC dialect) over its three
inboxes: HTTP `POST /i40commu`, CoAP `POST /i40commu`, MQTT topic
`AASpillarbox` (also `VWS_RIC`).

Each test runs the real binary (`twinlattice serve ... --coap-port 0
--mqtt-host 127.0.0.1 --mqtt-port P`) against a private mosquitto and talks to
it through simulated AAS (tests/broker_peers.py): an HTTP AAS (http.server), a
CoAP AAS (aiocoap server) and an MQTT AAS (paho), each sending over its own
protocol and recording what it receives.

Covered: registration (both descriptor dialects, renewal, invalid
descriptors), HeartBeat / HeartBeatAck (known, unknown, other protocol),
routing for all nine sender x receiver protocol pairs, replyTo, broadcast,
unknown receiver (404), failed delivery (502, three attempts), the heartbeat
lease in GET /status, the RIC's captured messages replayed verbatim, and
bad input on every inbox.

The module-scoped `broker` env (+ its registered `fleet`) is shared; tests that
need a clean registry or other flags start their own env with
`broker_factory` (each env has its own mosquitto, see broker_peers.py).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import socket
import time
import uuid
from urllib.parse import urlparse

import aiocoap
import pytest
from aiocoap.numbers.codes import Code

from broker_peers import (
    BROKER_TIMEOUT,
    CONTENT_FORMAT_JSON,
    DATA,
    FAILURE_TIMEOUT,
    MQTT_DISABLED_LINE,
    MSG_REGISTERED,
    MSG_RENEWED,
    REGISTRY_ID,
    RIC_ID,
    SETTLE,
    BrokerEnv,
    CoapInbox,
    LatticeBrokerEnv,
    HttpInbox,
    MqttClient,
    Mosquitto,
    Recorder,
    SimAAS,
    app_msg,
    as_sent,
    assert_error_message,
    assert_heartbeat_ack,
    assert_registerack,
    coap_post_json,
    coap_request,
    heartbeat_msg,
    in_reply_to,
    message_id,
    new_id,
    party,
    register_msg,
    topic_for,
)
from conftest import LATTICE_URL, assert_json, assert_result_body, assert_status, b64, list_all, require_running

PROTOS = ["http", "coap", "mqtt"]
PAIRS = [(s, r) for s in PROTOS for r in PROTOS]
CROSS = [(a, b) for a in PROTOS for b in PROTOS if a != b]


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------


@pytest.fixture
def mosquitto():
    m = Mosquitto().start()
    yield m
    m.stop()


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """The shared broker env of this module: mosquitto + twinlattice with all
    three bridges, or the lattice deployment (its bridges provider)."""
    env = LatticeBrokerEnv() if LATTICE_URL else BrokerEnv(tmp_path_factory.mktemp("broker"))
    yield env
    env.close()


@pytest.fixture
def env(broker):
    require_running(broker.server)
    assert broker.mosquitto.running, "the module's mosquitto died"
    return broker


@pytest.fixture(scope="module")
def fleet(broker):
    """Two registered AAS per protocol on the shared env, each registered over its own protocol.

    fleet[p][0]: v3 descriptor; fleet[p][1]: RIC-dialect descriptor.
    fleet["mqtt"][0] has an explicit `mqtt` communication endpoint,
    fleet["mqtt"][1] has no communication endpoint at all (MQTT fallback).
    """
    f = {
        "http": [broker.aas("http"), broker.aas("http")],
        "coap": [broker.aas("coap"), broker.aas("coap")],
        "mqtt": [broker.aas("mqtt"), broker.aas("mqtt", mqtt_endpoint=False)],
    }
    for peers in f.values():
        peers[0].register_ok("v3")
        peers[1].register_ok("ric")
    return f


def all_peers(fleet):
    return [p for peers in fleet.values() for p in peers]


def get_descriptor(env: BrokerEnv, aas_id: str) -> dict:
    r = env.http.get(f"{env.base_url}/shell-descriptors/{b64(aas_id)}")
    assert_status(r, 200)
    return assert_json(r)


def assert_not_registered(env: BrokerEnv, aas_id: str) -> None:
    assert_result_body(env.http.get(f"{env.base_url}/shell-descriptors/{b64(aas_id)}"), 404)


def comm_endpoints(doc: dict) -> list[tuple[str, str]]:
    return [(e["protocolInformation"].get("href"), e["protocolInformation"].get("endpointProtocol"))
            for e in doc.get("endpoints", []) if e.get("interface") == "communication"]


def assert_delivered_via(receiver: SimAAS, rec, channel: str) -> None:
    """One received copy came in over `channel` the way the contract says."""
    assert rec.channel == channel, f"{receiver.id} got the message over {rec.channel}, expected {channel}: {rec!r}"
    if channel == "http":
        assert (rec.method, rec.path) == ("POST", "/i40commu"), rec
    elif channel == "coap":
        assert rec.path == "/i40commu", rec
        assert rec.mtype == "CON", f"CoAP delivery must be confirmable, was {rec.mtype}"
        assert rec.content_format == CONTENT_FORMAT_JSON, f"CoAP delivery Content-Format {rec.content_format}, expected 50"
    else:
        assert rec.topic == receiver.topic, rec
        assert rec.qos == 1, f"MQTT delivery must be QoS 1, was {rec.qos}"


def assert_exactly_once(receiver: SimAAS, msg: dict, channel: str, timeout: float = BROKER_TIMEOUT):
    mid = msg["frame"]["messageId"]
    receiver.wait_delivery(mid, timeout)
    time.sleep(SETTLE)
    copies = receiver.deliveries(mid)
    assert len(copies) == 1, f"{receiver.id} got {len(copies)} copies of {mid}: {copies}"
    assert as_sent(copies[0].doc) == msg, f"delivered message differs:\nsent {json.dumps(msg)}\ngot  {json.dumps(copies[0].doc)}"
    assert_delivered_via(receiver, copies[0], channel)
    return copies[0]


def assert_no_mqtt_answer(peer: SimAAS, mid: str) -> None:
    answers = peer.rec.matching(lambda r: r.channel == "mqtt" and in_reply_to(r.doc) == mid)
    assert not answers, f"the MQTT sender got an answer to a delivered message: {answers}"


def parse_z(ts: str) -> dt.datetime:
    return dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))


# --------------------------------------------------------------------------
# 0. The harness itself (needs mosquitto, no twinlattice binary)
# --------------------------------------------------------------------------


def test_harness_mosquitto_pubsub(mosquitto):
    rec = Recorder()
    aas_id = f"urn:twinlattice:test:aas:mqtt+#/{uuid.uuid4()}"
    sub = MqttClient(mosquitto.port, [topic_for(aas_id)], rec)
    pub = MqttClient(mosquitto.port, [])
    try:
        assert topic_for(aas_id) == aas_id.replace("+", "_").replace("#", "_")
        pub.publish(topic_for(aas_id), json.dumps({"frame": {"messageId": "m1"}}))
        got = rec.wait_for(lambda r: message_id(r.doc) == "m1", 5)
        assert len(got) == 1 and got[0].topic == topic_for(aas_id) and got[0].qos == 1, got
    finally:
        sub.close()
        pub.close()


def test_harness_http_and_coap_inboxes():
    import requests

    rec = Recorder()
    http = HttpInbox(rec, [503, 204])
    coap = CoapInbox(rec, [Code.INTERNAL_SERVER_ERROR, Code.CHANGED])
    try:
        assert requests.post(http.href, json={"frame": {"messageId": "h1"}}, timeout=5).status_code == 503
        assert requests.post(http.href, json={"frame": {"messageId": "h2"}}, timeout=5).status_code == 204
        assert coap_post_json(coap.href, {"frame": {"messageId": "c1"}}).code == "5.00"
        assert coap_post_json(coap.href, {"frame": {"messageId": "c2"}}).code == "2.04"
        assert coap_request(coap.href.replace("i40commu", "other")).code == "4.04"
        assert coap_request(coap.href, method=Code.GET).code == "4.05"
        got = {message_id(r.doc): r for r in rec.snapshot()}
        assert set(got) == {"h1", "h2", "c1", "c2"}, got
        assert got["h1"].path == "/i40commu" and got["c1"].path == "/i40commu"
        assert got["c1"].mtype == "CON" and got["c1"].content_format == CONTENT_FORMAT_JSON
    finally:
        http.close()
        coap.close()


# --------------------------------------------------------------------------
# 1. Startup
# --------------------------------------------------------------------------


@pytest.mark.embedded
def test_startup_lines(env):
    s = env.server
    lines = [line.strip() for line in s.stdout_lines]
    ready = next(i for i, line in enumerate(lines) if line.startswith("twinlattice ready"))
    assert f"twinlattice coap listening on coap://127.0.0.1:{s.coap_port}" in lines[:ready]
    assert f"twinlattice mqtt bridge connected to 127.0.0.1:{env.mqtt_port}" in lines[:ready]
    assert s.coap_port and s.coap_port != 5683, "--coap-port 0 must pick a free port"
    # the printed CoAP port is the live inbox
    assert coap_request(env.coap_inbox, method=Code.GET).code == "4.05"


def test_mqtt_bridge_disabled_without_mqtt_host(broker_factory):
    e = broker_factory(mqtt=False)  # BrokerServer checks the `disabled` line before ready
    assert e.server.mqtt_line == MQTT_DISABLED_LINE
    assert not any(line.startswith("twinlattice mqtt bridge connected") for line in e.server.stdout_lines)
    for proto in ("http", "coap"):
        aas = e.aas(proto)
        aas.register_ok()
        msg, ack = aas.heartbeat()
        assert_heartbeat_ack(ack, msg, registered=True)


# --------------------------------------------------------------------------
# 2. register / registerack
# --------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["v3", "ric"])
@pytest.mark.parametrize("proto", PROTOS)
def test_register_then_renew(env, proto, dialect):
    aas = env.aas(proto)
    msg, ack = aas.register(dialect)
    assert_registerack(ack, msg, "S", "200", MSG_REGISTERED)

    doc = get_descriptor(env, aas.id)
    assert doc["id"] == aas.id
    assert doc.get("idShort") == aas.descriptor()["idShort"]
    assert comm_endpoints(doc) == aas.comm_endpoints(), doc["endpoints"]

    # renewal, this time addressed to VWS_RIC (both receiver ids are accepted)
    msg2, ack2 = aas.register(dialect, receiver=RIC_ID)
    assert_registerack(ack2, msg2, "S", "200", MSG_RENEWED)
    assert get_descriptor(env, aas.id) == doc
    listed = [d["id"] for d in list_all(env.http, env.base_url + "/shell-descriptors")]
    assert listed.count(aas.id) == 1, "renewal must not duplicate the descriptor"

    # the acks came only over the channel the register came in on
    time.sleep(SETTLE)
    for m in (msg, msg2):
        stray = aas.rec.matching(lambda r, m=m: in_reply_to(r.doc) == m["frame"]["messageId"])
        assert len(stray) == (1 if proto == "mqtt" else 0), f"registerack also delivered elsewhere: {stray}"


def test_register_renewal_replaces_descriptor(env):
    """A re-registration stores the new descriptor (here: a different communication endpoint)."""
    first = env.aas("http")
    first.register_ok()
    second = env.aas("coap", aas_id=first.id)  # same id, now a CoAP AAS
    msg, ack = second.register()
    assert_registerack(ack, msg, "S", "200", MSG_RENEWED)
    assert comm_endpoints(get_descriptor(env, first.id)) == second.comm_endpoints()


@pytest.mark.parametrize("proto", PROTOS)
def test_register_invalid_descriptor(env, proto):
    aas = env.aas(proto)
    d = aas.descriptor()
    d["idShort"] = 5
    d["assetKind"] = "Bogus"
    d["endpoints"][0]["interface"] = 5
    msg = register_msg(aas.id, d)
    ack = aas.request(msg)
    assert_registerack(ack, msg, "E", "400", ["/idShort", "/assetKind", "/endpoints/0/interface"])
    assert_not_registered(env, aas.id)
    assert aas.id not in env.status()
    # the same AAS with a valid descriptor is a NEW registration (nothing was stored)
    msg2, ack2 = aas.register()
    assert_registerack(ack2, msg2, "S", "200", MSG_REGISTERED)


@pytest.mark.parametrize("proto", PROTOS)
def test_register_without_descriptor_id(env, proto):
    aas = env.aas(proto)
    d = aas.descriptor()
    del d["id"]
    msg = register_msg(aas.id, d)
    assert_registerack(aas.request(msg), msg, "E", "400", "id")
    assert_not_registered(env, aas.id)


def test_mqtt_id_with_wildcards_uses_sanitised_topic(env, fleet):
    aas = env.aas("mqtt", aas_id=f"urn:twinlattice:test:aas:mqtt+x#y/{uuid.uuid4()}")
    assert aas.topic != aas.id and "+" not in aas.topic and "#" not in aas.topic
    aas.register_ok()  # the registerack arrives on the sanitised topic
    assert get_descriptor(env, aas.id)["id"] == aas.id
    msg, ack = aas.heartbeat()
    assert_heartbeat_ack(ack, msg, registered=True)
    sender = fleet["http"][0]
    m = app_msg(sender.id, aas.id)
    sender.send(m)
    assert_exactly_once(aas, m, "mqtt")


def test_mqtt_inbox_topic_vws_ric(env, fleet):
    aas = env.aas("mqtt")
    msg = register_msg(aas.id, aas.descriptor())
    assert_registerack(aas.request(msg, topic=RIC_ID), msg, "S", "200", MSG_REGISTERED)
    hb = heartbeat_msg(aas.id)
    assert_heartbeat_ack(aas.request(hb, topic=RIC_ID), hb, registered=True)
    sender, receiver = aas, fleet["http"][0]
    m = app_msg(sender.id, receiver.id)
    sender.send(m, topic=RIC_ID)
    assert_exactly_once(receiver, m, "http")


# --------------------------------------------------------------------------
# 3. HeartBeat / HeartBeatAck
# --------------------------------------------------------------------------


@pytest.mark.parametrize("proto", PROTOS)
def test_heartbeat_registered(env, fleet, proto):
    for aas in fleet[proto]:
        msg, ack = aas.heartbeat()
        assert_heartbeat_ack(ack, msg, registered=True)


@pytest.mark.parametrize("proto", PROTOS)
def test_heartbeat_unregistered(env, proto):
    aas = env.aas(proto)
    msg, ack = aas.heartbeat()
    assert_heartbeat_ack(ack, msg, registered=False)
    # a heartbeat does not register anything
    assert_not_registered(env, aas.id)
    assert aas.id not in env.status()
    msg2, ack2 = aas.heartbeat()
    assert_heartbeat_ack(ack2, msg2, registered=False)


@pytest.mark.parametrize("registered_over,heartbeat_over", CROSS, ids=[f"reg-{a}-hb-{b}" for a, b in CROSS])
def test_heartbeat_over_another_protocol(env, registered_over, heartbeat_over):
    aas = env.aas(registered_over)
    aas.register_ok()
    if heartbeat_over == "mqtt":
        aas.ensure_mqtt()
    msg, ack = aas.heartbeat(via=heartbeat_over)
    assert_heartbeat_ack(ack, msg, registered=True)
    time.sleep(SETTLE)
    answers = aas.rec.matching(lambda r: in_reply_to(r.doc) == msg["frame"]["messageId"])
    expected = ["mqtt"] if heartbeat_over == "mqtt" else []
    assert [r.channel for r in answers] == expected, f"the ack must come only over {heartbeat_over}: {answers}"


# --------------------------------------------------------------------------
# 4. Routing
# --------------------------------------------------------------------------


@pytest.mark.parametrize("src,dst", PAIRS, ids=[f"{s}-to-{r}" for s, r in PAIRS])
def test_route_pair(env, fleet, src, dst):
    sender = fleet[src][0]
    receiver = fleet[dst][1] if src == dst else fleet[dst][0]
    msg = app_msg(sender.id, receiver.id)
    sender.send(msg)
    assert_exactly_once(receiver, msg, dst)
    mid = msg["frame"]["messageId"]
    for other in all_peers(fleet):
        if other is not receiver:
            assert not other.deliveries(mid), f"{other.id} also got {mid}: {other.deliveries(mid)}"
    if src == "mqtt":
        assert_no_mqtt_answer(sender, mid)


@pytest.mark.parametrize("src", ["http", "coap"])
def test_route_without_communication_endpoint_uses_mqtt(env, fleet, src):
    receiver = fleet["mqtt"][1]
    assert comm_endpoints(get_descriptor(env, receiver.id)) == []
    msg = app_msg(fleet[src][0].id, receiver.id)
    fleet[src][0].send(msg)
    assert_exactly_once(receiver, msg, "mqtt")


def test_route_many_messages(env, fleet):
    """20 messages HTTP -> CoAP and MQTT -> HTTP: each delivered exactly once, none lost."""
    msgs = []
    for i in range(10):
        for src, dst in (("http", "coap"), ("mqtt", "http")):
            m = app_msg(fleet[src][0].id, fleet[dst][0].id)
            fleet[src][0].send(m)
            msgs.append((fleet[dst][0], m))
    for receiver, m in msgs:
        receiver.wait_delivery(m["frame"]["messageId"])
    time.sleep(SETTLE)
    for receiver, m in msgs:
        copies = receiver.deliveries(m["frame"]["messageId"])
        assert len(copies) == 1 and as_sent(copies[0].doc) == m, copies


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_http_delivery_any_2xx_is_delivered(env, fleet, status):
    receiver = env.aas("http", http_statuses=[status])
    receiver.register_ok()
    msg = app_msg(fleet["http"][0].id, receiver.id)
    fleet["http"][0].send(msg)  # 202 = delivered, no error
    assert_exactly_once(receiver, msg, "http")


def test_http_delivery_retried_until_success(env, fleet):
    receiver = env.aas("http", http_statuses=[503, 200])
    receiver.register_ok()
    sender = fleet["coap"][0]
    msg = app_msg(sender.id, receiver.id)
    sender.send(msg, timeout=FAILURE_TIMEOUT)  # 2.04 empty: delivered on the 2nd attempt
    mid = msg["frame"]["messageId"]
    receiver.wait_delivery(mid, count=2)
    time.sleep(SETTLE)
    copies = receiver.deliveries(mid)
    assert len(copies) == 2 and all(as_sent(c.doc) == msg for c in copies), copies


# -- replyTo ----------------------------------------------------------------


@pytest.fixture(scope="module")
def multi(broker, fleet):
    """An AAS with communication endpoints [coap, http] (coap first) that also listens on MQTT."""
    aas = broker.aas("http", inboxes=["coap", "http", "mqtt"], mqtt_endpoint=False)
    aas.register_ok()
    return aas


REPLY_TO = [(None, "coap"), ("COAP", "coap"), ("RESTAPI", "http"), ("HTTP", "http"), ("MQTT", "mqtt")]


@pytest.mark.parametrize("reply_to,channel", REPLY_TO, ids=[f"{r}-{c}" for r, c in REPLY_TO])
@pytest.mark.parametrize("src", PROTOS)
def test_reply_to_selects_protocol(env, fleet, multi, src, reply_to, channel):
    assert [p for _, p in comm_endpoints(get_descriptor(env, multi.id))] == ["coap", "http"]
    msg = app_msg(fleet[src][0].id, multi.id, reply_to=reply_to)
    fleet[src][0].send(msg)
    assert_exactly_once(multi, msg, channel)


FALLBACK = [("COAP", "http"), ("RESTAPI", "http"), ("MQTT", "mqtt"), ("SOMETHING", "http")]


@pytest.mark.parametrize("reply_to,channel", FALLBACK, ids=[f"{r}-{c}" for r, c in FALLBACK])
def test_reply_to_without_such_endpoint(env, fleet, reply_to, channel):
    """Receiver with only an HTTP communication endpoint (it also listens on MQTT)."""
    receiver = env.aas("http", inboxes=["http", "mqtt"], mqtt_endpoint=False)
    receiver.register_ok()
    msg = app_msg(fleet["http"][0].id, receiver.id, reply_to=reply_to)
    fleet["http"][0].send(msg)
    assert_exactly_once(receiver, msg, channel)


# -- broadcast ----------------------------------------------------------------


@pytest.mark.parametrize("src", PROTOS)
def test_broadcast_reaches_everyone_but_the_sender(broker_factory, src):
    e = broker_factory()
    peers = {p: [e.aas(p), e.aas(p)] for p in PROTOS}
    for p in PROTOS:
        peers[p][0].register_ok()
        peers[p][1].register_ok("ric")
    sender = peers[src][0]
    msg = app_msg(sender.id, None)
    assert "receiver" not in msg["frame"]
    sender.send(msg)
    mid = msg["frame"]["messageId"]
    others = [a for p in PROTOS for a in peers[p] if a is not sender]
    for a in others:
        a.wait_delivery(mid)
    time.sleep(SETTLE)
    for a in others:
        copies = a.deliveries(mid)
        assert len(copies) == 1 and as_sent(copies[0].doc) == msg, f"{a.id}: {copies}"
        assert_delivered_via(a, copies[0], a.proto)
    assert sender.deliveries(mid) == [], "the sender must not get its own broadcast"
    if src == "mqtt":
        assert_no_mqtt_answer(sender, mid)


# --------------------------------------------------------------------------
# 5. Errors back to the sender
# --------------------------------------------------------------------------


@pytest.mark.parametrize("proto", PROTOS)
def test_unknown_receiver_gets_404_error(env, fleet, proto):
    sender = fleet[proto][0]
    ghost = new_id("ghost")
    msg = app_msg(sender.id, ghost)
    answer = sender.request(msg)
    assert_error_message(answer, msg, "404", [ghost])
    time.sleep(SETTLE)
    for p in all_peers(fleet):
        assert not p.deliveries(msg["frame"]["messageId"])


@pytest.mark.parametrize("proto", PROTOS)
def test_receiver_down_gets_502_error(env, fleet, proto):
    receiver = env.aas("http", dead_http=True)  # registers http://127.0.0.1:<closed port>/i40commu
    receiver.register_ok()
    assert comm_endpoints(get_descriptor(env, receiver.id)) == [(receiver.dead_href, "http")]
    sender = fleet[proto][0]
    msg = app_msg(sender.id, receiver.id)
    answer = sender.request(msg, timeout=FAILURE_TIMEOUT)
    assert_error_message(answer, msg, "502", [receiver.id])


def test_http_delivery_three_attempts_then_502(env, fleet):
    receiver = env.aas("http", http_statuses=[500])
    receiver.register_ok()
    sender = fleet["mqtt"][0]
    msg = app_msg(sender.id, receiver.id)
    sender.send(msg)
    err = sender.wait_mqtt_reply(msg["frame"]["messageId"], FAILURE_TIMEOUT)
    assert_error_message(err, msg, "502", [receiver.id])
    time.sleep(SETTLE)
    copies = receiver.deliveries(msg["frame"]["messageId"])
    assert len(copies) == 3, f"expected 3 attempts, got {len(copies)}"
    assert all(as_sent(c.doc) == msg for c in copies)
    gaps = [b.at - a.at for a, b in zip(copies, copies[1:])]
    assert all(g >= 0.05 for g in gaps), f"attempts without back-off: gaps {gaps}"


def test_coap_delivery_three_attempts_then_502(env, fleet):
    receiver = env.aas("coap", coap_codes=[Code.INTERNAL_SERVER_ERROR])
    receiver.register_ok()
    sender = fleet["http"][0]
    msg = app_msg(sender.id, receiver.id)
    answer = sender.request(msg, timeout=FAILURE_TIMEOUT)
    assert_error_message(answer, msg, "502", [receiver.id])
    time.sleep(SETTLE)
    copies = receiver.deliveries(msg["frame"]["messageId"])
    assert len(copies) == 3, f"expected 3 attempts, got {len(copies)}"
    assert all(as_sent(c.doc) == msg for c in copies)
    gaps = [b.at - a.at for a, b in zip(copies, copies[1:])]
    assert all(g >= 0.05 for g in gaps), f"attempts without back-off: gaps {gaps}"


# --------------------------------------------------------------------------
# 6. GET /status and the heartbeat lease
# --------------------------------------------------------------------------


def test_status_lists_registered_aas(env, fleet):
    fresh = env.aas("coap")
    before = time.time()
    fresh.register_ok()
    unregistered = env.aas("http")
    unregistered.heartbeat()
    st = env.status()
    for p in all_peers(fleet):
        assert p.id in st, f"{p.id} missing in /status"
    e = st[fresh.id]
    assert e["online"] is True, e
    assert e["lastHeartbeat"] is not None, f"registration counts as a heartbeat: {e}"
    assert abs(parse_z(e["lastHeartbeat"]).timestamp() - before) < 30, e
    assert unregistered.id not in st


@pytest.mark.slow
def test_heartbeat_lease(broker_factory):
    e = broker_factory(heartbeat_ttl_secs=2)
    quiet = e.aas("http")  # stops heartbeating
    busy = e.aas("mqtt")  # keeps heartbeating
    quiet.register_ok()
    busy.register_ok()
    t_quiet = time.monotonic()

    st = e.status()
    q = st[quiet.id]
    assert q["online"] is True and q["lastHeartbeat"] and q["leaseExpires"], q
    lease = (parse_z(q["leaseExpires"]) - parse_z(q["lastHeartbeat"])).total_seconds()
    assert 1.5 <= lease <= 2.5, f"lease should be ~2 s: {q}"

    offline_after = None
    seen_online_at = []
    deadline = time.monotonic() + 8
    last_busy = 0.0
    while time.monotonic() < deadline:
        now = time.monotonic()
        if now - last_busy >= 0.5:
            msg, ack = busy.heartbeat()
            assert_heartbeat_ack(ack, msg, registered=True)
            last_busy = time.monotonic()
        st = e.status()
        assert st[busy.id]["online"] is True, f"a heartbeating AAS must stay online: {st[busy.id]}"
        if st[quiet.id]["online"]:
            seen_online_at.append(time.monotonic() - t_quiet)
        else:
            offline_after = time.monotonic() - t_quiet
            break
        time.sleep(0.1)
    assert offline_after is not None, f"{quiet.id} still online 8 s after its last heartbeat (ttl 2 s)"
    assert offline_after >= 1.5, f"offline after {offline_after:.2f} s, before the 2 s lease ran out"
    assert seen_online_at and max(seen_online_at) >= 1.0, seen_online_at
    offline = e.status()[quiet.id]
    assert offline["online"] is False and offline["lastHeartbeat"] == q["lastHeartbeat"], offline

    # offline is not deregistered: still in the registry, and a heartbeat brings it back
    assert get_descriptor(e, quiet.id)["id"] == quiet.id
    hb, ack = quiet.heartbeat()
    assert_heartbeat_ack(ack, hb, registered=True)
    back = e.status()[quiet.id]
    assert back["online"] is True, back
    assert parse_z(back["lastHeartbeat"]) > parse_z(q["lastHeartbeat"]), (q, back)
    assert parse_z(back["leaseExpires"]) > parse_z(back["lastHeartbeat"]), back


# --------------------------------------------------------------------------
# 7. The RIC's captured messages, replayed verbatim
# --------------------------------------------------------------------------


@pytest.mark.parametrize("proto", PROTOS)
def test_replay_ric_register_and_heartbeat(broker_factory, proto):
    e = broker_factory()  # the captured ids are fixed: use a fresh registry
    reg_raw = (DATA / "ric_register_message.json").read_bytes()
    hb_raw = (DATA / "ric_heartbeat_message.json").read_bytes()
    reg, hb = json.loads(reg_raw), json.loads(hb_raw)
    registrar_id = reg["frame"]["sender"]["identification"]["id"]  # "string11"
    aas_id = reg["interactionElements"][0]["identification"]["id"]  # "string233331"
    assert reg["frame"]["receiver"]["identification"]["id"] == RIC_ID
    assert hb["frame"]["sender"]["identification"]["id"] == aas_id
    inboxes = ["mqtt"] if proto == "mqtt" else []
    registrar = e.aas(proto, aas_id=registrar_id, inboxes=inboxes)
    aas = e.aas(proto, aas_id=aas_id, inboxes=inboxes)

    ack = registrar.request(reg, raw=reg_raw)
    assert_registerack(ack, reg, "S", "200", MSG_REGISTERED)
    assert ack["frame"]["conversationId"] == "Registration_1"
    doc = get_descriptor(e, aas_id)
    assert doc["id"] == aas_id and doc["idShort"] == "string233334", doc

    hb_ack = aas.request(hb, raw=hb_raw)
    assert_heartbeat_ack(hb_ack, hb, registered=True)
    assert e.status()[aas_id]["online"] is True

    # and again: the re-registration is a renewal
    ack2 = registrar.request(reg, raw=reg_raw)
    assert_registerack(ack2, reg, "S", "200", MSG_RENEWED)


# --------------------------------------------------------------------------
# 8. Bad input on every inbox
# --------------------------------------------------------------------------


def _frame_without(*missing: str) -> bytes:
    fr = {
        "type": "HeartBeat",
        "messageId": f"bad_{uuid.uuid4().hex}",
        "sender": party(f"urn:twinlattice:test:aas:bad:{uuid.uuid4()}", "AASHeartBeatHandler"),
        "receiver": party(REGISTRY_ID, "HeartBeatHandler", "idShort"),
        "conversationId": "bad",
    }
    for k in missing:
        if k == "sender.id":
            del fr["sender"]["identification"]["id"]
        else:
            del fr[k]
    return json.dumps({"frame": fr, "interactionElements": []}).encode()


# Bodies that are not I4.0 frames; "has_sender" = the sender id can be read.
BAD_BODIES = {
    "empty": (b"", False),
    "not-json": (b"this is not json {", False),
    "truncated-json": (b'{"frame": {"type": "HeartBeat", "sender": ', False),
    "json-array": (b"[]", False),
    "json-string": (b'"frame"', False),
    "json-null": (b"null", False),
    "no-frame": (b'{"interactionElements": []}', False),
    "frame-not-object": (b'{"frame": "HeartBeat", "interactionElements": []}', False),
    "no-sender": (_frame_without("sender"), False),
    "sender-without-id": (_frame_without("sender.id"), False),
    "no-type": (_frame_without("type"), True),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_http_bad_input(env, fleet, case):
    body, _ = BAD_BODIES[case]
    r = env.post_http(data=body)
    msgs = assert_result_body(r, 400)
    assert msgs[0]["text"].strip()
    # the inbox keeps working
    msg, ack = fleet["http"][0].heartbeat()
    assert_heartbeat_ack(ack, msg, registered=True)


def test_http_bad_input_stores_nothing(env):
    """A register message that is not a frame (no frame.type) registers nothing."""
    aas = env.aas("http")
    msg = register_msg(aas.id, aas.descriptor())
    del msg["frame"]["type"]
    assert_result_body(env.post_http(msg), 400)
    assert_not_registered(env, aas.id)


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_coap_bad_input(env, fleet, case):
    body, _ = BAD_BODIES[case]
    resp = coap_request(env.coap_inbox, body)
    assert resp.code == "4.00", f"expected 4.00, got {resp}"
    msg, ack = fleet["coap"][0].heartbeat()
    assert_heartbeat_ack(ack, msg, registered=True)


@pytest.mark.parametrize("path", ["/other", "/i40commu/extra"])
def test_coap_unknown_path(env, fleet, path):
    hb = json.dumps(heartbeat_msg(fleet["coap"][0].id)).encode()
    resp = coap_request(env.coap_inbox.replace("/i40commu", path), hb)
    assert resp.code == "4.04", f"POST {path}: expected 4.04, got {resp}"
    msg, ack = fleet["coap"][0].heartbeat()
    assert_heartbeat_ack(ack, msg, registered=True)


def raw_coap_post(mid: int, token: bytes, payload: bytes) -> bytes:
    """A confirmable `POST /i40commu` datagram with the given message id and token."""
    # Header fields set by hand: this datagram goes out on a plain socket,
    # not through aiocoap's own message layer.
    m = aiocoap.Message(code=Code.POST, payload=payload)
    m.mtype, m.mid, m.token = aiocoap.CON, mid, token
    m.opt.uri_path = ("i40commu",)
    m.opt.content_format = CONTENT_FORMAT_JSON
    return m.encode()


def test_coap_retransmission_is_answered_alike_and_routed_once(env, fleet):
    """RFC 7252 §4.5: a client that gets no ACK in time sends the same
    confirmable request again, with the same message id. Each copy gets the
    first copy's answer, and the message is routed once: a copy arriving
    while the first is being routed, and one arriving after its answer."""
    sender, receiver = fleet["coap"][0], fleet["http"][0]
    inbox = urlparse(env.coap_inbox)
    msg = app_msg(sender.id, receiver.id)
    mid = random.randrange(1 << 16)
    datagram = raw_coap_post(mid, os.urandom(4), json.dumps(msg).encode())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(BROKER_TIMEOUT)
        s.connect((inbox.hostname, inbox.port))
        s.send(datagram)
        s.send(datagram)
        answers = [s.recv(65536) for _ in range(2)]
        s.send(datagram)
        answers.append(s.recv(65536))
    first = aiocoap.Message.decode(answers[0])
    assert first.mtype == aiocoap.ACK and first.mid == mid and first.code == aiocoap.CHANGED, first
    assert answers[1] == answers[0] and answers[2] == answers[0], "copies got another answer than the first"
    assert_exactly_once(receiver, msg, "http")


def test_coap_slow_answer_is_acked_at_once_and_sent_separately(env, fleet):
    """RFC 7252 §5.2.2: a confirmable request whose answer takes longer than
    a second (here: a receiver that takes 2.5 s to take its delivery) gets
    an empty ACK first, so its client does not retransmit and may send its
    next request; the answer follows as a confirmable message of its own
    with the request's token, sent again until acknowledged. A copy of the
    request after the empty ACK gets that ACK again, and the message is
    routed once."""
    sender = fleet["coap"][0]
    receiver = env.aas("http", http_delay=2.5)
    receiver.register_ok()
    inbox = urlparse(env.coap_inbox)
    msg = app_msg(sender.id, receiver.id)
    mid, token = random.randrange(1 << 16), os.urandom(4)
    datagram = raw_coap_post(mid, token, json.dumps(msg).encode())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(BROKER_TIMEOUT)
        s.connect((inbox.hostname, inbox.port))
        s.send(datagram)
        raw_ack = s.recv(65536)
        ack = aiocoap.Message.decode(raw_ack)
        assert (ack.mtype, ack.code, ack.mid, ack.token) == (aiocoap.ACK, Code.EMPTY, mid, b""), ack
        s.send(datagram)
        assert s.recv(65536) == raw_ack, "a copy after the empty ACK must get the same ACK"
        raw_answer = s.recv(65536)
        answer = aiocoap.Message.decode(raw_answer)
        assert (answer.mtype, answer.code, answer.token) == (aiocoap.CON, Code.CHANGED, token), answer
        # Not acknowledged: the same message again (after 2-3 s, RFC 7252 §4.2).
        assert s.recv(65536) == raw_answer, "an unacknowledged separate response must be retransmitted as it was"
        s.send(bytes([0x60, 0, answer.mid >> 8, answer.mid & 0xFF]))  # its empty ACK
    assert_exactly_once(receiver, msg, "http")

    # A CoAP library's client takes the separate response as the answer.
    later = app_msg(sender.id, receiver.id)
    resp = coap_post_json(env.coap_inbox, later)
    assert resp.code == "2.04", resp
    assert_exactly_once(receiver, later, "http")


def test_coap_delivery_waits_for_a_separate_response(env, fleet):
    """A CoAP receiver that ACKs a delivery at once and answers 2.5 s later
    (RFC 7252 §5.2.2; aiocoap's server does so for any slow resource): the
    delivery waits for that answer instead of sending the message again or
    giving up, so the receiver gets it once and the sender a plain 202."""
    sender = fleet["http"][0]
    receiver = env.aas("coap", coap_delay=2.5)
    receiver.register_ok()
    msg = app_msg(sender.id, receiver.id)
    sender.send(msg)
    assert_exactly_once(receiver, msg, "coap")


def test_coap_get_inbox(env, fleet):
    resp = coap_request(env.coap_inbox, b"", method=Code.GET, content_format=None)
    assert resp.code == "4.05", f"GET /i40commu: expected 4.05, got {resp}"
    msg, ack = fleet["coap"][0].heartbeat()
    assert_heartbeat_ack(ack, msg, registered=True)


@pytest.mark.parametrize("case", [c for c, (_, has_sender) in BAD_BODIES.items() if not has_sender])
def test_mqtt_bad_input_without_sender(env, fleet, case):
    """Nothing is published in answer, and the bridge keeps serving."""
    body, _ = BAD_BODIES[case]
    aas = fleet["mqtt"][0]
    spy = env.mqtt_client(["#"])  # everything published on this env's mosquitto
    aas.mqtt.publish(REGISTRY_ID, body)
    msg, ack = aas.heartbeat()
    assert_heartbeat_ack(ack, msg, registered=True)
    time.sleep(SETTLE)
    seen = spy.sink.snapshot()
    spy.close()
    env.mqtt_clients.remove(spy)
    assert sorted(r.topic for r in seen) == sorted([REGISTRY_ID, REGISTRY_ID, aas.topic]), (
        f"only the bad message, the heartbeat and its ack should be published: {seen}")
    assert [r.raw for r in seen if r.topic == REGISTRY_ID][0] == body


def test_mqtt_bad_input_with_sender_gets_400_error(env, fleet):
    aas = fleet["mqtt"][0]
    bad = heartbeat_msg(aas.id)
    del bad["frame"]["type"]
    aas.mqtt.publish(REGISTRY_ID, json.dumps(bad))
    err = aas.wait_mqtt_reply(bad["frame"]["messageId"])
    assert_error_message(err, bad, "400")
    msg, ack = aas.heartbeat()
    assert_heartbeat_ack(ack, msg, registered=True)


def test_mqtt_bad_input_from_unregistered_sender_gets_400_error(env):
    aas = env.aas("mqtt")  # not registered: the error still goes to its topic
    bad = heartbeat_msg(aas.id)
    del bad["frame"]["type"]
    aas.mqtt.publish(REGISTRY_ID, json.dumps(bad))
    assert_error_message(aas.wait_mqtt_reply(bad["frame"]["messageId"]), bad, "400")
