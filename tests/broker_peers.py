"""Helpers for the I4.0 broker tests (test_broker.py).

* `Mosquitto` — a private mosquitto on a free port (`listener PORT 127.0.0.1`,
  `allow_anonymous true`), killed at teardown.
* `BrokerServer` — conftest's `Server` started with `--coap-port 0` and the
  MQTT bridge flags; it also parses the extra stdout lines
  (`twinlattice coap listening on coap://127.0.0.1:PORT`,
  `twinlattice mqtt bridge connected to 127.0.0.1:P` / `... disabled`).
* `BrokerEnv` — one mosquitto + one broker server + the simulated AAS made
  for it. Every env has its OWN mosquitto: two twinlattice processes on one
  mosquitto would both consume the `AASpillarbox` topic.
* `LatticeBrokerEnv` — the same env over a lattice deployment
  (scripts/test-lattice.sh): the gateway's `/i40commu`, the bridges
  provider's CoAP inbox and the MQTT broker the provider bridges.
* `SimAAS` — a simulated AAS. It sends over one protocol (`proto`) and listens
  on one or more inboxes, each a real server: an `http.server` in a thread
  (records POSTed bodies), an aiocoap server with resource `i40commu` (records
  payloads, answers 2.04), a paho client subscribed to its own id topic
  (records messages). Everything received is kept in `received` as
  `Received` records (channel, JSON, metadata).
* I4.0 message builders (RIC dialect frames) and assertions for
  registerack / HeartBeatAck / error messages.

Nothing here is mocked: the broker under test talks to these peers over real
sockets.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterable

import aiocoap
import aiocoap.resource as coap_resource
import paho.mqtt.client as mqtt
import pytest
import requests
from aiocoap.numbers.codes import Code

from conftest import (
    HTTP_TIMEOUT,
    TESTS_DIR,
    Client,
    Server,
    assert_json,
    assert_status,
    endpoint,
    short_hash,
)

# --------------------------------------------------------------------------
# Constants and timeouts
# --------------------------------------------------------------------------

REGISTRY_ID = "AASpillarbox"  # receiver id of register / HeartBeat (RIC code)
RIC_ID = "VWS_RIC"  # alternative receiver id (RIC tech report); sender id of registerack
INBOX_TOPICS = (REGISTRY_ID, RIC_ID)  # MQTT topics the bridge consumes
CONTENT_FORMAT_JSON = 50

# How long to wait for an answer / a delivery that should come.
BROKER_TIMEOUT = float(os.environ.get("TWINLATTICE_BROKER_TIMEOUT", "10"))
# How long to wait for the final error after failed deliveries (3 attempts with back-off).
FAILURE_TIMEOUT = float(os.environ.get("TWINLATTICE_BROKER_FAILURE_TIMEOUT", "45"))
# After the expected message arrived: how long to keep watching for duplicates / strays.
SETTLE = float(os.environ.get("TWINLATTICE_BROKER_SETTLE", "0.4"))

MSG_REGISTERED = "registration is successful"
MSG_RENEWED = "successfully renewed"
MSG_NOT_REGISTERED = "The AAS is not registered, please provide descriptors"

COAP_RE = re.compile(r"^twinlattice coap listening on coap://(127\.0\.0\.1|[^\s:/\[\]]+|\[[^\]]+\]):(\d+)\s*$")
MQTT_CONNECTED_RE = re.compile(r"^twinlattice mqtt bridge connected to (\S+):(\d+)\s*$")
MQTT_DISABLED_LINE = "twinlattice mqtt bridge disabled"
ZULU_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_udp_port() -> int:
    return free_port(socket.SOCK_DGRAM)


def topic_for(aas_id: str) -> str:
    """The MQTT topic of an AAS: its id with the wildcards `+` and `#` replaced by `_`."""
    return aas_id.replace("+", "_").replace("#", "_")


def new_id(kind: str) -> str:
    """`urn:twinlattice:test:aas:<kind>:<uuid>`"""
    return f"urn:twinlattice:test:aas:{kind}:{uuid.uuid4()}"


def wait_until(pred: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            return v
        time.sleep(interval)


# --------------------------------------------------------------------------
# mosquitto
# --------------------------------------------------------------------------


class Mosquitto:
    """A private mosquitto broker on a free port of 127.0.0.1."""

    def __init__(self) -> None:
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.dir = Path(tempfile.mkdtemp(prefix="twinlattice-mosquitto-"))
        self.log_path = self.dir / "mosquitto.log"

    @staticmethod
    def executable() -> str:
        exe = shutil.which("mosquitto") or next(
            (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None
        )
        if not exe:
            pytest.fail("mosquitto not found (apt-get install -y mosquitto)", pytrace=False)
        return exe

    def start(self) -> "Mosquitto":
        exe = self.executable()
        last_log = ""
        for _ in range(5):  # the free port may be taken between probing and binding
            port = free_port()
            conf = self.dir / "mosquitto.conf"
            conf.write_text(
                f"listener {port} 127.0.0.1\n"
                "allow_anonymous true\n"
                "persistence false\n"
                "max_queued_messages 10000\n",
                encoding="utf-8",
            )
            log = open(self.log_path, "wb")
            proc = subprocess.Popen([exe, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            log.close()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                        self.port, self.proc = port, proc
                        return self
                except OSError:
                    time.sleep(0.05)
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            last_log = self.log_path.read_text("utf-8", "replace")
        pytest.fail(f"mosquitto did not start; log:\n{last_log}", pytrace=False)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------
# The broker-enabled twinlattice server
# --------------------------------------------------------------------------


class BrokerServer(Server):
    """conftest's `Server` plus the CoAP inbox and the MQTT bridge.

    After `start()`: `coap_port`, `coap_inbox` (coap://127.0.0.1:PORT/i40commu),
    `mqtt_line` (the bridge line as printed), `mqtt_port`.
    """

    def __init__(
        self,
        data_dir: Path,
        mqtt_port: int | None = None,
        heartbeat_ttl_secs: float | None = None,
        extra_args: Iterable[str] = (),
        **kwargs: Any,
    ) -> None:
        args = ["--coap-port", "0"]
        if mqtt_port is not None:
            args += ["--mqtt-host", "127.0.0.1", "--mqtt-port", str(mqtt_port)]
        else:
            # no outside broker and no embedded one: the bridge is off
            args += ["--embedded-mqtt", "false"]
        if heartbeat_ttl_secs is not None:
            args += ["--heartbeat-ttl-secs", str(heartbeat_ttl_secs)]
        super().__init__(data_dir, extra_args=args + list(extra_args), **kwargs)
        self.mqtt_port = mqtt_port
        self.coap_port: int | None = None
        self.coap_inbox: str | None = None
        self.mqtt_line: str | None = None

    def start(self) -> "BrokerServer":
        super().start()
        self._parse_broker_lines()
        return self

    def _parse_broker_lines(self) -> None:
        lines = [line.strip() for line in list(self.stdout_lines)]
        ready_at = next((i for i, line in enumerate(lines) if line.startswith("twinlattice ready")), len(lines))
        before = lines[:ready_at]
        problems = []
        coap = [m for m in (COAP_RE.match(line) for line in before) if m]
        if len(coap) != 1:
            problems.append("expected exactly one `twinlattice coap listening on coap://127.0.0.1:PORT` line before ready")
        else:
            self.coap_port = int(coap[0].group(2))
            if self.coap_port <= 0:
                problems.append(f"CoAP port {self.coap_port} is not a real port")
            self.coap_inbox = f"coap://127.0.0.1:{self.coap_port}/i40commu"
        connected = [m for m in (MQTT_CONNECTED_RE.match(line) for line in before) if m]
        disabled = [line for line in before if line == MQTT_DISABLED_LINE]
        if self.mqtt_port is not None:
            if len(connected) != 1 or disabled:
                problems.append(
                    f"expected exactly one `twinlattice mqtt bridge connected to 127.0.0.1:{self.mqtt_port}` line "
                    "before ready (and no `disabled` line)"
                )
            else:
                self.mqtt_line = connected[0].group(0)
                if (connected[0].group(1), int(connected[0].group(2))) != ("127.0.0.1", self.mqtt_port):
                    problems.append(f"bridge line names the wrong broker: {self.mqtt_line!r}")
        else:
            if len(disabled) != 1 or connected:
                problems.append(f"expected the line `{MQTT_DISABLED_LINE}` before ready (and no `connected` line)")
            else:
                self.mqtt_line = disabled[0]
        if problems:
            self.kill()
            pytest.fail(
                "twinlattice broker startup lines wrong:\n  " + "\n  ".join(problems)
                + f"\ncommand: {' '.join(self.command())}\nstdout:\n" + "\n".join(lines)
                + f"\nstderr (tail):\n{self.stderr_tail()}",
                pytrace=False,
            )


# --------------------------------------------------------------------------
# CoAP: one asyncio loop in a thread for all CoAP clients and servers
# --------------------------------------------------------------------------


@dataclass
class CoapResponse:
    code: str  # dotted, e.g. "2.04"
    payload: bytes
    content_format: int | None

    def json(self) -> Any:
        try:
            return json.loads(self.payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise AssertionError(f"CoAP {self.code} payload is not JSON: {self.payload[:500]!r}") from e


class CoapLoop:
    """An asyncio loop in a daemon thread, shared by every CoAP peer and client."""

    _instance: "CoapLoop | None" = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="coap-loop", daemon=True)
        self.thread.start()
        self.client = self.run(aiocoap.Context.create_client_context(transports=["udp6"]))

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @classmethod
    def get(cls) -> "CoapLoop":
        with cls._lock:
            if cls._instance is None:
                cls._instance = CoapLoop()
            return cls._instance


def coap_request(
    uri: str,
    payload: bytes = b"",
    method: Code = Code.POST,
    content_format: int | None = CONTENT_FORMAT_JSON,
    timeout: float = BROKER_TIMEOUT,
    own_socket: bool = False,
) -> CoapResponse:
    """A confirmable CoAP request from the shared client; waits up to `timeout` s for the answer.

    `own_socket`: from a client of its own (its own UDP port). CoAP matches
    the blocks of a block-wise answer by endpoint and URI, so concurrent
    requests whose answers exceed one block need one endpoint each."""
    cl = CoapLoop.get()

    async def go() -> CoapResponse:
        msg = aiocoap.Message(code=method, uri=uri, payload=payload)
        if content_format is not None:
            msg.opt.content_format = content_format
        client = await aiocoap.Context.create_client_context(transports=["udp6"]) if own_socket else cl.client
        try:
            resp = await asyncio.wait_for(client.request(msg).response, timeout)
        finally:
            if own_socket:
                await client.shutdown()
        cf = resp.opt.content_format
        return CoapResponse(resp.code.dotted, bytes(resp.payload), int(cf) if cf is not None else None)

    try:
        return cl.run(go(), timeout=timeout + 5)
    except (asyncio.TimeoutError, TimeoutError) as e:
        raise AssertionError(f"no CoAP answer from {uri} within {timeout}s") from e


def coap_post_json(uri: str, doc: Any, timeout: float = BROKER_TIMEOUT, own_socket: bool = False) -> CoapResponse:
    return coap_request(uri, json.dumps(doc).encode("utf-8"), timeout=timeout, own_socket=own_socket)


# --------------------------------------------------------------------------
# What a peer received
# --------------------------------------------------------------------------


@dataclass
class Received:
    channel: str  # "http" | "coap" | "mqtt"
    raw: bytes
    doc: Any  # parsed JSON, or None when not JSON
    at: float = field(default_factory=time.monotonic)
    path: str | None = None  # http / coap: request path
    method: str | None = None
    headers: dict | None = None  # http
    content_format: int | None = None  # coap
    mtype: str | None = None  # coap: CON / NON
    topic: str | None = None  # mqtt
    qos: int | None = None  # mqtt

    @property
    def frame(self) -> dict:
        if isinstance(self.doc, dict) and isinstance(self.doc.get("frame"), dict):
            return self.doc["frame"]
        return {}

    def __repr__(self) -> str:  # short, for assertion messages
        where = self.topic if self.channel == "mqtt" else self.path
        return f"<{self.channel} {where} {json.dumps(self.doc)[:300] if self.doc is not None else self.raw[:200]!r}>"


def parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None


class Recorder:
    """A thread-safe list of `Received` with waiting."""

    def __init__(self) -> None:
        self.items: list[Received] = []
        self._cond = threading.Condition()

    def add(self, rec: Received) -> None:
        with self._cond:
            self.items.append(rec)
            self._cond.notify_all()

    def snapshot(self) -> list[Received]:
        with self._cond:
            return list(self.items)

    def matching(self, pred: Callable[[Received], bool]) -> list[Received]:
        return [r for r in self.snapshot() if pred(r)]

    def __len__(self) -> int:
        with self._cond:
            return len(self.items)

    def wait_for(self, pred: Callable[[Received], bool], timeout: float, count: int = 1,
                 since: int = 0) -> list[Received]:
        """Wait until `count` items (from index `since` on) match."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [r for r in self.items[since:] if pred(r)]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    return found
                self._cond.wait(left)


# --------------------------------------------------------------------------
# Inboxes of a simulated AAS
# --------------------------------------------------------------------------


class HttpInbox:
    """`http.server` in a thread; records every POST; answers with `statuses`
    in turn (the last one repeats), empty body, `delay` seconds after the
    request came (a slow receiver)."""

    def __init__(self, sink: Recorder, statuses: Iterable[int] = (200,), delay: float = 0.0) -> None:
        self.statuses = list(statuses) or [200]
        self.delay = delay
        self._count = 0
        self._lock = threading.Lock()
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    body = b""
                    while True:
                        size = int(self.rfile.readline().strip().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            break
                        body += self.rfile.read(size)
                        self.rfile.readline()
                else:
                    body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = inbox._next_status()
                sink.add(Received("http", body, parse_json(body), path=self.path, method="POST",
                                  headers={k.lower(): v for k, v in self.headers.items()}))
                time.sleep(inbox.delay)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.href = f"http://127.0.0.1:{self.port}/i40commu"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=f"http-aas-{self.port}", daemon=True)
        self.thread.start()

    def _next_status(self) -> int:
        with self._lock:
            s = self.statuses[min(self._count, len(self.statuses) - 1)]
            self._count += 1
            return s

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class CoapInbox:
    """aiocoap server on a free UDP port of 127.0.0.1 with the resource
    `i40commu`; records every POST; answers with `codes` in turn (the last
    repeats), empty payload, `delay` seconds after the request came (aiocoap
    ACKs a slow request at once and sends the answer separately)."""

    def __init__(self, sink: Recorder, codes: Iterable[Code] = (Code.CHANGED,), delay: float = 0.0) -> None:
        self.codes = list(codes) or [Code.CHANGED]
        self.delay = delay
        self._count = 0
        self.loop = CoapLoop.get()
        inbox = self

        class I40Commu(coap_resource.Resource):
            async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
                cf = request.opt.content_format
                sink.add(Received(
                    "coap", bytes(request.payload), parse_json(bytes(request.payload)),
                    # the Site strips the resource's own path from uri_path
                    path="/".join(["/i40commu", *request.opt.uri_path]), method="POST",
                    content_format=int(cf) if cf is not None else None,
                    mtype=str(request.mtype.name) if request.mtype is not None else None,
                ))
                code = inbox.codes[min(inbox._count, len(inbox.codes) - 1)]
                inbox._count += 1
                await asyncio.sleep(inbox.delay)
                return aiocoap.Message(code=code)

        site = coap_resource.Site()
        site.add_resource(["i40commu"], I40Commu())
        last: Exception | None = None
        for _ in range(10):
            port = free_udp_port()
            try:
                self.ctx = self.loop.run(aiocoap.Context.create_server_context(
                    site, bind=("127.0.0.1", port), transports=["udp6"]))
                break
            except OSError as e:  # port taken in between
                last = e
        else:
            raise RuntimeError(f"could not bind a CoAP server: {last}")
        self.port = port
        self.href = f"coap://127.0.0.1:{port}/i40commu"

    def close(self) -> None:
        try:
            self.loop.run(self.ctx.shutdown(), timeout=10)
        except Exception:
            pass


class MqttClient:
    """A paho client (MQTT 3.1.1) subscribed (QoS 1) to `topics`; every message goes to `sink`."""

    _ids = itertools.count()

    def __init__(self, port: int, topics: Iterable[str], sink: Recorder | None = None) -> None:
        self.port = port
        self.sink = sink if sink is not None else Recorder()
        self.topics = list(topics)
        self._subscribed = threading.Event()
        self._connected = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"tl-test-{os.getpid()}-{next(self._ids)}-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(10):
            self.close()
            raise AssertionError(f"paho could not connect to mosquitto on port {port}")
        if self.topics and not self._subscribed.wait(10):
            self.close()
            raise AssertionError(f"paho subscription to {self.topics} not acknowledged")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            return
        self._connected.set()
        if self.topics:
            client.subscribe([(t, 1) for t in self.topics])

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self._subscribed.set()

    def _on_message(self, client, userdata, msg) -> None:
        raw = bytes(msg.payload)
        self.sink.add(Received("mqtt", raw, parse_json(raw), topic=msg.topic, qos=msg.qos))

    def publish(self, topic: str, payload: bytes | str, qos: int = 1) -> None:
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        info = self.client.publish(topic, payload, qos=qos)
        info.wait_for_publish(timeout=10)
        assert info.is_published(), f"mosquitto did not acknowledge the publish to {topic!r}"

    def close(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()


# --------------------------------------------------------------------------
# I4.0 messages (RIC dialect frames)
# --------------------------------------------------------------------------

_SEMANTIC = {
    "register": "www.admin-shell.io/interaction/registration",
    "HeartBeat": "www.admin-shell.io/interaction/heartbeat",
}


def party(aas_id: str, role: str, id_type: str = "IRI") -> dict:
    return {"identification": {"id": aas_id, "idType": id_type}, "role": {"name": role}}


def i40_message(
    type_: str,
    sender_id: str,
    receiver_id: str | None,
    elements: list | None = None,
    *,
    message_id: str | None = None,
    conversation_id: str | None = None,
    sender_role: str = "Sender",
    receiver_role: str = "Receiver",
    reply_to: str | None = None,
    reply_by: Any = None,
) -> dict:
    fr: dict[str, Any] = {
        "semanticProtocol": {"keys": [{
            "type": "GlobalReference", "local": "local",
            "value": _SEMANTIC.get(type_, "urn:twinlattice:test:protocol"), "idType": "IRI",
        }]},
        "type": type_,
        "messageId": message_id or f"{type_}_{uuid.uuid4().hex}",
        "sender": party(sender_id, sender_role),
        "conversationId": conversation_id or f"conv-{uuid.uuid4().hex[:12]}",
    }
    if receiver_id is not None:
        fr["receiver"] = party(receiver_id, receiver_role, "idShort" if receiver_id in (REGISTRY_ID, RIC_ID) else "IRI")
    if reply_to is not None:
        fr["replyTo"] = reply_to
    if reply_by is not None:
        fr["replyBy"] = reply_by
    return {"frame": fr, "interactionElements": list(elements or [])}


def register_msg(sender_id: str, descriptor: dict, receiver: str = REGISTRY_ID, **kw: Any) -> dict:
    return i40_message("register", sender_id, receiver, [descriptor],
                       sender_role="Register", receiver_role="RegistryHandler", **kw)


def heartbeat_msg(sender_id: str, receiver: str = REGISTRY_ID, **kw: Any) -> dict:
    return i40_message("HeartBeat", sender_id, receiver, [],
                       sender_role="AASHeartBeatHandler", receiver_role="HeartBeatHandler", **kw)


def app_msg(sender_id: str, receiver_id: str | None, **kw: Any) -> dict:
    """An application message to be routed (a callForProposal with a unique payload)."""
    payload = {
        "idShort": "Proposal",
        "modelType": {"name": "Submodel"},
        "identification": {"id": f"urn:twinlattice:test:sm:{uuid.uuid4()}", "idType": "IRI"},
        "submodelElements": [{
            "idShort": "Payload", "modelType": {"name": "Property"},
            "value": f"nonce-{uuid.uuid4().hex} äöü ✓ \U0001F600", "valueType": "string",
        }],
    }
    return i40_message("callForProposal", sender_id, receiver_id, [payload],
                       sender_role="Requester", receiver_role="Provider", **kw)


HOPS_FIELD = "twinlatticeHops"


def as_sent(doc: Any, hops: int = 1) -> Any:
    """A delivered message as its sender sent it: the broker forwards a
    message unchanged but for its hop count (`frame.twinlatticeHops`, the
    loop guard), which must be `hops`."""
    if not isinstance(doc, dict) or not isinstance(doc.get("frame"), dict):
        return doc
    frame = dict(doc["frame"])
    assert frame.pop(HOPS_FIELD, None) == hops, f"delivered with hop count {doc['frame'].get(HOPS_FIELD)!r}, not {hops}"
    return {**doc, "frame": frame}


def message_id(doc: Any) -> Any:
    return doc.get("frame", {}).get("messageId") if isinstance(doc, dict) and isinstance(doc.get("frame"), dict) else None


def in_reply_to(doc: Any) -> Any:
    return doc.get("frame", {}).get("inReplyTo") if isinstance(doc, dict) and isinstance(doc.get("frame"), dict) else None


def frame_party_id(fr: dict, who: str) -> Any:
    p = fr.get(who)
    if not isinstance(p, dict):
        return None
    ident = p.get("identification")
    return ident.get("id") if isinstance(ident, dict) else None


# --------------------------------------------------------------------------
# Assertions on the broker's answers
# --------------------------------------------------------------------------


def status_response(doc: dict) -> dict[str, Any]:
    """interactionElements[0] as the StatusResponse submodel -> {idShort: value}."""
    els = doc.get("interactionElements")
    assert isinstance(els, list) and els, f"expected a StatusResponse in interactionElements: {json.dumps(doc)[:1500]}"
    sr = els[0]
    assert isinstance(sr, dict) and sr.get("idShort") == "StatusResponse", f"not a StatusResponse: {json.dumps(sr)[:1500]}"
    sme = sr.get("submodelElements")
    assert isinstance(sme, list), f"StatusResponse without submodelElements: {json.dumps(sr)[:1500]}"
    values = {e.get("idShort"): e.get("value") for e in sme if isinstance(e, dict)}
    for key in ("Status", "Code", "Message"):
        assert key in values, f"StatusResponse has no {key!r} element (has {sorted(map(str, values))}): {json.dumps(sr)[:1500]}"
    return values


def assert_answer_frame(doc: Any, request: dict, type_: str, sender_id: str) -> dict:
    """The common frame checks for a broker answer to `request`."""
    assert isinstance(doc, dict) and isinstance(doc.get("frame"), dict), f"not an I4.0 message: {str(doc)[:1500]}"
    fr = doc["frame"]
    rq = request["frame"]
    ctx = json.dumps(doc)[:1500]
    assert fr.get("type") == type_, f"expected frame.type {type_!r}, got {fr.get('type')!r}: {ctx}"
    assert frame_party_id(fr, "sender") == sender_id, f"answer sender should be {sender_id!r}: {ctx}"
    assert frame_party_id(fr, "receiver") == frame_party_id(rq, "sender"), f"answer receiver should be the request's sender: {ctx}"
    assert fr.get("inReplyTo") == rq["messageId"], f"inReplyTo should be {rq['messageId']!r}: {ctx}"
    assert isinstance(fr.get("messageId"), str) and fr["messageId"] and fr["messageId"] != rq["messageId"], ctx
    assert isinstance(doc.get("interactionElements"), list), f"interactionElements must be a list: {ctx}"
    return fr


def assert_registerack(doc: Any, request: dict, status: str, code: str, text: str | Iterable[str]) -> dict:
    fr = assert_answer_frame(doc, request, "registerack", RIC_ID)
    assert fr.get("conversationId") == request["frame"]["conversationId"], f"conversationId not copied: {json.dumps(fr)}"
    sr = status_response(doc)
    assert (sr["Status"], sr["Code"]) == (status, code), f"expected {status}/{code!r}, got {sr}"
    for t in [text] if isinstance(text, str) else list(text):
        assert t in str(sr["Message"]), f"Message should contain {t!r}: {sr['Message']!r}"
    return sr


def assert_heartbeat_ack(doc: Any, request: dict, registered: bool) -> None:
    assert_answer_frame(doc, request, "HeartBeatAck", REGISTRY_ID)
    if registered:
        assert doc["interactionElements"] == [], f"positive HeartBeatAck must have no interactionElements: {json.dumps(doc)[:1500]}"
    else:
        sr = status_response(doc)
        assert (sr["Status"], sr["Code"], sr["Message"]) == ("S", "200", MSG_NOT_REGISTERED), sr


def assert_error_message(doc: Any, request: dict, code: str, mentions: Iterable[str] = ()) -> dict:
    """`frame.type == "error"`, receiver = the sender, inReplyTo, StatusResponse E/code."""
    assert isinstance(doc, dict) and isinstance(doc.get("frame"), dict), f"not an I4.0 message: {str(doc)[:1500]}"
    fr = doc["frame"]
    ctx = json.dumps(doc)[:1500]
    assert fr.get("type") == "error", f"expected an error message: {ctx}"
    assert frame_party_id(fr, "receiver") == frame_party_id(request["frame"], "sender"), f"error receiver should be the sender: {ctx}"
    if "messageId" in request["frame"]:
        assert fr.get("inReplyTo") == request["frame"]["messageId"], f"inReplyTo should be the request's messageId: {ctx}"
    sr = status_response(doc)
    assert (sr["Status"], sr["Code"]) == ("E", code), f"expected E/{code!r}, got {sr}"
    for m in mentions:
        assert m in str(sr["Message"]), f"error Message should name {m!r}: {sr['Message']!r}"
    return sr


# --------------------------------------------------------------------------
# The environment: mosquitto + broker server + simulated AAS
# --------------------------------------------------------------------------


class BrokerEnv:
    def __init__(self, data_dir: Path, mqtt: bool = True, heartbeat_ttl_secs: float | None = None,
                 extra_args: Iterable[str] = (), env: dict[str, str] | None = None) -> None:
        self.mosquitto = Mosquitto().start() if mqtt else None
        self.peers: list[SimAAS] = []
        self.mqtt_clients: list[MqttClient] = []
        self.http = Client()
        try:
            self.server = BrokerServer(
                data_dir, mqtt_port=self.mosquitto.port if self.mosquitto else None,
                heartbeat_ttl_secs=heartbeat_ttl_secs, extra_args=extra_args, env=env,
            ).start()
        except BaseException:
            if self.mosquitto:
                self.mosquitto.stop()
            raise

    # -- addresses ---------------------------------------------------------

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def http_inbox(self) -> str:
        return self.server.base_url + "/i40commu"

    @property
    def coap_inbox(self) -> str:
        return self.server.coap_inbox

    @property
    def mqtt_port(self) -> int:
        assert self.mosquitto, "this env has no MQTT"
        return self.mosquitto.port

    # -- raw inbox access --------------------------------------------------

    def post_http(self, body: Any = None, *, data: bytes | str | None = None, timeout: float = HTTP_TIMEOUT,
                  headers: dict | None = None) -> requests.Response:
        if data is not None:
            return self.http.post(self.http_inbox, data=data, timeout=timeout,
                                  headers=headers or {"Content-Type": "application/json"})
        return self.http.post(self.http_inbox, json=body, timeout=timeout)

    def mqtt_client(self, topics: Iterable[str] = ()) -> MqttClient:
        c = MqttClient(self.mqtt_port, topics)
        self.mqtt_clients.append(c)
        return c

    def aas(self, proto: str, **kwargs: Any) -> "SimAAS":
        p = SimAAS(self, proto, **kwargs)
        self.peers.append(p)
        return p

    def status(self) -> dict[str, dict]:
        """GET /status as {id: entry} (checks the shape of every entry)."""
        r = self.http.get(self.base_url + "/status")
        assert_status(r, 200)
        body = assert_json(r)
        assert isinstance(body, dict) and isinstance(body.get("aas"), list), f"/status body: {body!r}"
        out: dict[str, dict] = {}
        for e in body["aas"]:
            assert isinstance(e, dict) and isinstance(e.get("id"), str), f"/status entry: {e!r}"
            assert isinstance(e.get("online"), bool), f"/status entry needs a boolean online: {e!r}"
            for k in ("lastHeartbeat", "leaseExpires"):
                assert k in e, f"/status entry without {k}: {e!r}"
                assert e[k] is None or (isinstance(e[k], str) and ZULU_RE.match(e[k])), f"{k} must be ...Z or null: {e!r}"
            assert e["id"] not in out, f"/status lists {e['id']!r} twice"
            out[e["id"]] = e
        return out

    def close(self) -> None:
        for p in self.peers:
            p.close()
        for c in self.mqtt_clients:
            c.close()
        self.server.kill()
        self.http.close()
        if self.mosquitto:
            self.mosquitto.stop()


class SteadyStream:
    """Each sender sends application messages to `receiver`, one after
    another in a thread of its own, while the `with` block runs. `sent`
    holds the messageIds the broker accepted, `errors` what went wrong."""

    def __init__(self, senders: Iterable["SimAAS"], receiver: "SimAAS") -> None:
        self.receiver = receiver
        self.sent: list[str] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(s,)) for s in senders]

    def _run(self, sender: "SimAAS") -> None:
        try:
            while not self._stop.is_set():
                msg = app_msg(sender.id, self.receiver.id)
                sender.send(msg)
                self.sent.append(message_id(msg))
        except BaseException as e:  # surfaced by the test
            self.errors.append(e)

    def __enter__(self) -> "SteadyStream":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)

    def wait_for(self, more: int) -> None:
        """Until `more` further messages were accepted (or one failed)."""
        target = len(self.sent) + more
        while len(self.sent) < target and not self.errors:
            time.sleep(0.01)

    def assert_exactly_once(self, at_least: int) -> None:
        assert not self.errors, self.errors
        assert len(self.sent) >= at_least, f"only {len(self.sent)} messages went through"
        for mid in self.sent:
            assert len(self.receiver.wait_delivery(mid)) == 1
        time.sleep(0.5)  # nothing arrives twice, even later
        assert all(len(self.receiver.deliveries(mid)) == 1 for mid in self.sent)


class ExternalMqtt:
    """An MQTT broker this harness did not start (the lattice's): `port`,
    `running` (it accepts connections), `stop()` leaves it alone."""

    def __init__(self, port: int) -> None:
        self.port = port

    @property
    def running(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        pass


class LatticeBrokerEnv(BrokerEnv):
    """The broker of a twinlattice application on a wasmCloud lattice: the
    gateway's `POST /i40commu` at TWINLATTICE_TEST_LATTICE_URL, the bridges
    provider's CoAP inbox at TWINLATTICE_TEST_LATTICE_COAP_URL and the MQTT
    broker it bridges on 127.0.0.1:TWINLATTICE_TEST_LATTICE_MQTT_PORT. The
    lattice is shared: nothing here starts or stops it."""

    def __init__(self, base_url: str | None = None, coap_inbox: str | None = None) -> None:  # noqa: D107
        # BrokerEnv's own start-up (mosquitto, a server process) is not wanted here.
        from conftest import LatticeTarget

        self.mosquitto = ExternalMqtt(int(os.environ["TWINLATTICE_TEST_LATTICE_MQTT_PORT"]))
        self.peers = []
        self.mqtt_clients = []
        self.http = Client()
        self.server = LatticeTarget(base_url or os.environ["TWINLATTICE_TEST_LATTICE_URL"], None)
        self.server.coap_inbox = coap_inbox or os.environ["TWINLATTICE_TEST_LATTICE_COAP_URL"]


class SimAAS:
    """A simulated AAS.

    proto    — the protocol it SENDS over: "http" (requests POST /i40commu),
               "coap" (aiocoap POST coap://…/i40commu), "mqtt" (paho publish to
               `AASpillarbox`; answers come on its own topic).
    inboxes  — the protocols it RECEIVES on, in the order of the communication
               endpoints in its descriptor (default: [proto]). "mqtt" in
               `inboxes` (or proto == "mqtt") subscribes to its own topic.
    mqtt_endpoint — register an explicit `mqtt` communication endpoint for the
               MQTT inbox (True) or none at all (False: the broker must fall
               back to MQTT because there is no communication endpoint).
    http_statuses / coap_codes — what the inbox answers, in turn.
    dead_http — register a communication endpoint http://127.0.0.1:<closed port>/i40commu.
    http_delay / coap_delay — seconds the HTTP / CoAP inbox takes to answer each POST.
    """

    def __init__(self, env: BrokerEnv, proto: str, *, aas_id: str | None = None,
                 inboxes: Iterable[str] | None = None, mqtt_endpoint: bool = True,
                 http_statuses: Iterable[int] = (200,), coap_codes: Iterable[Code] = (Code.CHANGED,),
                 dead_http: bool = False, http_delay: float = 0.0, coap_delay: float = 0.0) -> None:
        assert proto in ("http", "coap", "mqtt"), proto
        self.env = env
        self.proto = proto
        self.id = aas_id or new_id(proto)
        self.inboxes = list(inboxes) if inboxes is not None else ([] if dead_http else [proto])
        self.mqtt_endpoint = mqtt_endpoint
        self.dead_http = dead_http
        self.rec = Recorder()
        self.http: HttpInbox | None = HttpInbox(self.rec, http_statuses, http_delay) if "http" in self.inboxes else None
        self.coap: CoapInbox | None = CoapInbox(self.rec, coap_codes, coap_delay) if "coap" in self.inboxes else None
        self.mqtt: MqttClient | None = None
        if "mqtt" in self.inboxes or proto == "mqtt":
            self.ensure_mqtt()
        self.dead_href = f"http://127.0.0.1:{free_port()}/i40commu" if dead_http else None

    # -- description -----------------------------------------------------------

    @property
    def topic(self) -> str:
        return topic_for(self.id)

    def ensure_mqtt(self) -> MqttClient:
        """Subscribe to the own topic (also for AAS that do not receive over MQTT)."""
        if self.mqtt is None:
            self.mqtt = MqttClient(self.env.mqtt_port, [self.topic], self.rec)
        return self.mqtt

    def comm_endpoints(self) -> list[tuple[str, str]]:
        """[(href, endpointProtocol)] of the communication endpoints, in order."""
        eps = []
        if self.dead_href:
            eps.append((self.dead_href, "http"))
        for ch in self.inboxes:
            if ch == "http":
                eps.append((self.http.href, "http"))
            elif ch == "coap":
                eps.append((self.coap.href, "coap"))
            elif ch == "mqtt" and self.mqtt_endpoint:
                eps.append((f"mqtt://127.0.0.1:{self.env.mqtt_port}/{urllib.parse.quote(self.topic, safe='')}", "mqtt"))
        return eps

    def descriptor(self, dialect: str = "v3") -> dict:
        id_short = f"sim_{self.proto}_{short_hash(self.id)}"
        other = endpoint(f"http://127.0.0.1:9/shells/{short_hash(self.id)}")  # not a communication endpoint
        if dialect == "v3":
            eps = [{"interface": "communication", "protocolInformation": {"href": h, "endpointProtocol": p}}
                   for h, p in self.comm_endpoints()]
            return {"id": self.id, "idShort": id_short, "endpoints": eps + [other]}
        assert dialect == "ric", dialect
        eps = [{"interface": "communication", "protocol_information": {"endpointAddress": h, "endpointProtocol": p}}
               for h, p in self.comm_endpoints()]
        eps.append({"interface": "restapi", "protocol_information": {
            "endpointAddress": other["protocolInformation"]["href"], "endpointProtocol": "http"}})
        return {"idShort": id_short, "identification": {"id": self.id, "idType": "IRI"}, "endpoints": eps}

    # -- talking to the broker -------------------------------------------------

    def request(self, msg: dict, via: str | None = None, timeout: float = BROKER_TIMEOUT,
                topic: str = REGISTRY_ID, raw: bytes | None = None) -> dict:
        """Send `msg` and return the broker's I4.0 answer from the channel it
        came in on: HTTP 200 JSON body, CoAP 2.04 payload (Content-Format 50),
        MQTT message (QoS 1) on the sender's topic with inReplyTo = messageId.
        `raw`: send these bytes instead of json.dumps(msg) (msg is then only
        used to find and check the answer)."""
        via = via or self.proto
        payload = raw if raw is not None else json.dumps(msg).encode("utf-8")
        if via == "http":
            r = self.env.post_http(data=payload, timeout=timeout)
            assert_status(r, 200)
            return assert_json(r)
        if via == "coap":
            resp = coap_request(self.env.coap_inbox, payload, timeout=timeout)
            assert resp.code == "2.04", f"CoAP answer {resp.code} (expected 2.04): {resp.payload[:1000]!r}"
            assert resp.content_format == CONTENT_FORMAT_JSON, f"CoAP answer Content-Format {resp.content_format}, expected 50"
            return resp.json()
        assert via == "mqtt", via
        sender = frame_party_id(msg["frame"], "sender")
        assert topic_for(sender) == self.topic, "an MQTT request needs a subscriber on the sender's topic"
        self.ensure_mqtt()
        mid = msg["frame"]["messageId"]
        since = len(self.rec)  # a replayed messageId must not match an earlier answer
        self.mqtt.publish(topic, payload)
        return self.wait_mqtt_reply(mid, timeout, since)

    def wait_mqtt_reply(self, mid: str, timeout: float = BROKER_TIMEOUT, since: int = 0) -> dict:
        """The first answer (inReplyTo == mid) on the own topic received at index >= `since`."""
        got = self.rec.wait_for(lambda r: r.channel == "mqtt" and in_reply_to(r.doc) == mid, timeout, since=since)
        assert got, (f"no answer to {mid!r} on MQTT topic {self.topic!r} within {timeout}s; "
                     f"on the topic: {self.rec.matching(lambda r: r.channel == 'mqtt')}")
        rec = got[0]
        assert rec.topic == self.topic, rec
        assert rec.qos == 1, f"answers are published with QoS 1, got {rec.qos}"
        return rec.doc

    def send(self, msg: dict, via: str | None = None, timeout: float = BROKER_TIMEOUT, topic: str = REGISTRY_ID) -> None:
        """Send a message to be routed and check the 'delivered' answer:
        HTTP 202 with empty body, CoAP 2.04 with empty payload, MQTT nothing."""
        via = via or self.proto
        if via == "http":
            r = self.env.post_http(msg, timeout=timeout)
            assert_status(r, 202)
            assert r.content == b"", f"202 must have an empty body, got {r.text[:1000]!r}"
        elif via == "coap":
            resp = coap_post_json(self.env.coap_inbox, msg, timeout=timeout)
            assert (resp.code, resp.payload) == ("2.04", b""), f"expected 2.04 with empty payload, got {resp}"
        else:
            assert via == "mqtt", via
            self.ensure_mqtt().publish(topic, json.dumps(msg))

    def register(self, dialect: str = "v3", via: str | None = None, **kw: Any) -> tuple[dict, dict]:
        """Register over `via` (default: own proto). Returns (request, ack)."""
        msg = register_msg(self.id, self.descriptor(dialect), **kw)
        return msg, self.request(msg, via=via)

    def register_ok(self, dialect: str = "v3", renewed: bool = False) -> dict:
        """Register over the own protocol and check the positive registerack."""
        msg, ack = self.register(dialect)
        assert_registerack(ack, msg, "S", "200", MSG_RENEWED if renewed else MSG_REGISTERED)
        return ack

    def heartbeat(self, via: str | None = None, **kw: Any) -> tuple[dict, dict]:
        msg = heartbeat_msg(self.id, **kw)
        return msg, self.request(msg, via=via)

    # -- what arrived ------------------------------------------------------------

    def deliveries(self, mid: str) -> list[Received]:
        return self.rec.matching(lambda r: message_id(r.doc) == mid)

    def wait_delivery(self, mid: str, timeout: float = BROKER_TIMEOUT, count: int = 1) -> list[Received]:
        got = self.rec.wait_for(lambda r: message_id(r.doc) == mid, timeout, count)
        assert len(got) >= count, (f"{self.id} ({'/'.join(self.inboxes) or 'no inbox'}) received {len(got)} "
                                   f"copies of {mid!r} within {timeout}s, expected {count}; it received: "
                                   f"{self.rec.snapshot()[-10:]}")
        return got

    def close(self) -> None:
        if self.http:
            self.http.close()
        if self.coap:
            self.coap.close()
        if self.mqtt:
            self.mqtt.close()


def load_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


DATA = TESTS_DIR / "data"
