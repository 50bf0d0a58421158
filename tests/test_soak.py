"""Soak under attack (issue "Hardening"): for 30 s, slowloris connections,
CoAP Block1 floods and an MQTT loop attempt run at once, while a steady
stream of ordinary requests on all three faces (HTTP GET /description, a
CoAP HeartBeat, an MQTT HeartBeat) must keep being answered. Prints the
worst gap between answers per face; fails when any face goes a whole
`MAX_GAP` without an answer, or any ordinary request fails.
"""

from __future__ import annotations

import json
import multiprocessing
import socket
import struct
import threading
import time

import pytest
import requests

from broker_peers import BrokerEnv, heartbeat_msg

pytestmark = pytest.mark.embedded


SOAK_SECONDS = 30.0
MAX_GAP = 2.0


def slowloris(port: int, stop: threading.Event, n: int = 300) -> None:
    socks = []
    try:
        for i in range(n):
            if stop.is_set():
                return
            s = socket.socket()
            s.bind((f"127.0.0.{20 + i % 8}", 0))
            s.connect(("127.0.0.1", port))
            s.sendall(b"POST /shell-descriptors HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{")
            socks.append(s)
        while not stop.wait(1.0):
            for s in socks:
                try:
                    s.sendall(b" ")
                except OSError:
                    pass
    finally:
        for s in socks:
            s.close()


def coap_block_flood(host: str, port: int, seconds: float, per_second: int = 16_000) -> None:
    """Block1 transfers that never finish, on ever new paths and source
    ports, from eight addresses (127.0.0.30-37) other than the steady
    clients' 127.0.0.1, `per_second` datagrams in all: each address sends
    twice what the inbox takes from one address. Runs in a process of its
    own, so the flood competes with the server, not with the test's own
    clients for the interpreter."""
    def opt(delta: int, val: bytes) -> bytes:
        ext = b""
        if delta >= 13:
            ext, delta = bytes([delta - 13]), 13
        return bytes([(delta << 4) | len(val)]) + ext + val

    end = time.monotonic() + seconds
    k = 0
    sent = 0
    start = time.monotonic()
    while time.monotonic() < end:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((f"127.0.0.{30 + k % 8}", 0))
        for mid in range(1, 200):
            num = mid % 64
            v = (num << 4) | (1 << 3) | 6
            b1 = v.to_bytes(1 if v < 256 else 2, "big")
            pkt = bytes([0x50, 0x02]) + struct.pack(">H", mid) + opt(11, f"i40commu{k}".encode()) + opt(16, b1) + b"\xff" + b"A" * 1024
            s.sendto(pkt, (host, port))
        s.close()
        k += 1
        sent += 199
        ahead = sent / per_second - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)


class Face:
    def __init__(self, name: str) -> None:
        self.name = name
        self.answers: list[float] = []
        self.failures: list[str] = []

    def worst_gap(self, start: float, end: float) -> float:
        points = [start] + sorted(self.answers) + [end]
        return max(b - a for a, b in zip(points, points[1:]))


def steady(face: Face, call, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            call()
            face.answers.append(time.monotonic())
        except Exception as e:  # noqa: BLE001 - every failure is reported
            face.failures.append(f"{time.monotonic():.2f}: {e!r}"[:300])
        time.sleep(0.1)


def test_all_faces_answer_while_under_attack(broker_factory):
    env: BrokerEnv = broker_factory()
    coap_aas, mqtt_aas = env.aas("coap"), env.aas("mqtt")
    coap_aas.register_ok()
    mqtt_aas.register_ok()
    coap_host, coap_port = env.coap_inbox.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    stop = threading.Event()
    attackers = [threading.Thread(target=slowloris, args=(env.server.port, stop), daemon=True)]
    flood = multiprocessing.get_context("fork").Process(
        target=coap_block_flood, args=(coap_host.strip("[]"), int(coap_port), SOAK_SECONDS), daemon=True)
    looper = env.mqtt_client()
    loop_attempt = json.dumps({"frame": {"type": "ping", "messageId": "1",
                                         "sender": {"identification": {"id": "VWS_RIC"}},
                                         "receiver": {"identification": {"id": "VWS_RIC"}}}, "interactionElements": []})
    faces = {name: Face(name) for name in ("http", "coap", "mqtt")}
    calls = {
        "http": lambda: requests.get(env.base_url + "/description", timeout=MAX_GAP).raise_for_status(),
        "coap": lambda: coap_aas.request(heartbeat_msg(coap_aas.id), timeout=MAX_GAP),
        "mqtt": lambda: mqtt_aas.request(heartbeat_msg(mqtt_aas.id), timeout=MAX_GAP),
    }
    workers = [threading.Thread(target=steady, args=(faces[n], calls[n], stop), daemon=True) for n in faces]
    start = time.monotonic()
    flood.start()
    for t in attackers + workers:
        t.start()
    while time.monotonic() - start < SOAK_SECONDS:
        looper.publish("VWS_RIC", loop_attempt)
        time.sleep(1.0)
    stop.set()
    end = time.monotonic()
    for t in attackers + workers:
        t.join(timeout=30)
    flood.join(timeout=30)
    report = {n: (len(f.answers), round(f.worst_gap(start, end), 3), len(f.failures)) for n, f in faces.items()}
    print(f"\nsoak {SOAK_SECONDS:.0f} s under attack: face -> (answers, worst gap s, failures): {report}")
    for f in faces.values():
        assert not f.failures, (f.name, f.failures[:5])
        assert f.worst_gap(start, end) < MAX_GAP, (f.name, report)
    assert requests.get(env.base_url + "/description", timeout=5).status_code == 200
