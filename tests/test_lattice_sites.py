"""Two sites on one lattice (the second phase of scripts/test-lattice.sh):
hosts labelled site=a and site=b, the application deployed from
`scripts/lattice.sh manifest --sites a,b --mqtt HOST:PORT` — every component
spread evenly over both sites; the state provider, the bridges and an HTTP
ingress on each site; one MQTT broker, which both sites' bridges share
through a shared subscription.

- Both sites serve one application: what is written through one site's
  ingress is read through the other's; a message sent over site a's CoAP
  inbox reaches an AAS registered over site b's; an MQTT inbox message is
  taken by one site only.
- Site loss: site b's host stops during traffic through site a; requests
  keep succeeding there after a bounded gap (printed); when the host is
  back, wadm restores site b's share and site b serves again.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import threading
import time

import pytest
import requests

from broker_peers import LatticeBrokerEnv, app_msg, message_id
from lattice_ready import coap_ready
from conftest import REPO_ROOT, Client, assert_json, assert_status, b64, shell_desc, uid

pytestmark = [pytest.mark.lattice, pytest.mark.sites]

LATTICE_SH = REPO_ROOT / "scripts" / "lattice.sh"
# One request of the traffic during the site loss gives up after this: a
# request in flight to the stopping host's components may never be answered
# (wasmCloud bounds only the start of a wRPC call), and the traffic goes on.
REQUEST_TIMEOUT = 3.0
ANSI = re.compile(r"\x1b\[[0-9;]*m")
COAP_LINE = re.compile(r"coap inbox listening listening=(\S+)")
# A stopped host's in-flight wRPC calls end at the latest with the hosts'
# RPC timeout (10 s, scripts/lattice.sh); the gap may not be longer than that
# and the time wadm and NATS take to notice.
MAX_GAP = 15.0
RESTORE_TIMEOUT = 120.0


def lattice_sh(*args: str) -> None:
    p = subprocess.run([str(LATTICE_SH), *args], capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, (p.stdout, p.stderr)


def coap_inbox_of(site: str, timeout: float = 60.0) -> str:
    """The CoAP inbox of `site`'s bridges provider. The sites' providers take
    the first free of the configured addresses, so which site has which is
    read from the line its provider logged in its host's log (the latest
    one: a restarted host starts its log afresh)."""
    log = os.path.join(os.environ["TWINLATTICE_LATTICE_DIR"], "logs", f"host-site_{site}.log")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(log, encoding="utf-8", errors="replace") as f:
                found = COAP_LINE.findall(ANSI.sub("", f.read()))
        except FileNotFoundError:
            found = []
        if found:
            return f"coap://{found[-1]}/i40commu"
        assert time.monotonic() < deadline, f"no CoAP inbox line in {log}"
        time.sleep(0.2)


@pytest.fixture
def sites():
    a = LatticeBrokerEnv(coap_inbox=coap_inbox_of("a"))
    b = LatticeBrokerEnv(os.environ["TWINLATTICE_TEST_SITE_B_URL"], coap_inbox_of("b"))
    yield a, b
    a.close()
    b.close()


def write_then_read(writer: str, reader: str, client: requests.Session, timeout: float = 30.0) -> bool:
    desc = shell_desc(uid())
    if client.post(writer + "/shell-descriptors", json=desc, timeout=timeout).status_code != 201:
        return False
    got = client.get(reader + f"/shell-descriptors/{b64(desc['id'])}", timeout=timeout)
    return got.status_code == 200 and got.json().get("id") == desc["id"]


def test_both_sites_serve_one_application(sites):
    a, b = sites
    client = Client()
    assert write_then_read(a.base_url, b.base_url, client)
    assert write_then_read(b.base_url, a.base_url, client)

    rx = b.aas("coap")
    rx.register_ok()
    tx = a.aas("coap")
    tx.register_ok()
    msg = app_msg(tx.id, rx.id)
    tx.send(msg)
    assert len(rx.wait_delivery(message_id(msg))) == 1

    # Both sites' MQTT bridges subscribe the inbox topic: with the shared
    # subscription one of them takes each message, so one answer comes back.
    m = a.aas("mqtt")
    m.register_ok()
    hb, _ = m.heartbeat()
    time.sleep(1.0)
    answers = m.rec.matching(lambda r: isinstance(r.doc, dict) and r.doc.get("frame", {}).get("inReplyTo") == hb["frame"]["messageId"])
    assert len(answers) == 1, f"{len(answers)} answers to one heartbeat"


def test_losing_site_b_leaves_site_a_serving_and_wadm_restores_it(sites):
    a, b = sites
    tx = a.aas("coap")
    tx.register_ok()
    # A receiver that takes a while keeps a broker call in flight most of
    # the time, so the host stop often catches one on site b's broker: that
    # call is never answered, and its CoAP sender must still be free to
    # send the next message (it gets an empty ACK within a second and gives
    # up on that one message after REQUEST_TIMEOUT).
    rx = a.aas("http", http_delay=1.0)
    rx.register_ok()

    done: list[tuple[float, float, bool, str]] = []  # (started, finished, ok, what failed)
    accepted: list[str] = []
    stop = threading.Event()

    def registry_traffic():
        client = Client()
        while not stop.is_set():
            started = time.monotonic()
            what = "registry: a status other than 201/200"
            try:
                ok = write_then_read(a.base_url, a.base_url, client, REQUEST_TIMEOUT)
            except requests.RequestException as e:
                ok, what = False, f"registry: {type(e).__name__}"
                client = Client()
            done.append((started, time.monotonic(), ok, what))

    def broker_traffic():
        while not stop.is_set():
            started = time.monotonic()
            msg = app_msg(tx.id, rx.id)
            what = ""
            try:
                tx.send(msg, timeout=REQUEST_TIMEOUT)
                accepted.append(message_id(msg))
                ok = True
            except Exception as e:  # noqa: BLE001 - any failure of this request counts as one
                ok, what = False, f"broker: {str(e)[:120]}"
            done.append((started, time.monotonic(), ok, what))

    threads = [threading.Thread(target=f) for f in (registry_traffic, registry_traffic, registry_traffic, broker_traffic)]
    for t in threads:
        t.start()
    try:
        time.sleep(2.0)
        down_at = time.monotonic()
        lattice_sh("host-down", "site=b")
        time.sleep(10.0)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)

    before = [d for d in done if d[1] < down_at]
    after = sorted(d for d in done if d[1] >= down_at)
    assert before and all(ok for _, _, ok, _ in before), "traffic failed before the site was lost"
    successes = [finished for _, finished, ok, _ in after if ok]
    assert successes, "nothing succeeded after site b was lost"
    # The gap: the longest time without a success, from the host stop on.
    # Each failure: started how long after the stop, took how long, what.
    failed = [(round(st - down_at, 2), round(fin - st, 2), what) for st, fin, ok, what in after if not ok]
    marks = [down_at] + successes
    gap = max(later - earlier for earlier, later in zip(marks, marks[1:]))
    print(f"\nsite loss: {len(after)} requests after stopping site b, {len(failed)} failed; longest gap {gap * 1000:.0f} ms")
    print(f"failures (s after the stop, s taken, what): {failed}")
    assert gap < MAX_GAP, f"site a stopped serving for {gap:.1f} s"
    tail = [ok for started, _, ok, _ in after if started > down_at + MAX_GAP / 3]
    assert tail and all(tail), f"requests through site a still fail long after site b was lost: {failed}"
    for mid in accepted:
        assert len(rx.wait_delivery(mid)) == 1

    # Site b's host comes back: wadm places site b's share again; its
    # ingress (which calls components on its own host only) and its CoAP
    # inbox (its bridges provider) serve again.
    lattice_sh("host-up", "site=b")
    deadline = time.monotonic() + RESTORE_TIMEOUT
    client = Client()

    def site_b_serves() -> bool:
        try:
            return write_then_read(b.base_url, a.base_url, client) and asyncio.run(coap_ready(coap_inbox_of("b")))
        except requests.RequestException:
            return False

    while not site_b_serves():
        assert time.monotonic() < deadline, f"site b did not serve again within {RESTORE_TIMEOUT}s of its host's return"
        time.sleep(0.5)
    b.server.coap_inbox = coap_inbox_of("b")
    rx_b = b.aas("coap")
    rx_b.register_ok()
    msg = app_msg(tx.id, rx_b.id)
    tx.send(msg)
    assert len(rx_b.wait_delivery(message_id(msg))) == 1
