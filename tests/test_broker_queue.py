"""Offline receivers: a message for a receiver whose heartbeat lease has run
out and that cannot be reached is kept durably in its queue (the sender gets
the "accepted" answer), later messages join the queue behind it, and the
receiver's next heartbeat delivers them all, in order, exactly once. Queued
messages survive a restart of the host. A queue is bounded even under
concurrent sends, its messages expire even when the receiver never comes
back, and it goes with its AAS's descriptor (security review M5).
"""

from __future__ import annotations

import base64
import threading
import time

import pytest

from broker_peers import BrokerEnv, app_msg, assert_error_message, message_id


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def delivered_in_order(rx, mids: list[str]) -> list[str]:
    """The message ids rx received, in arrival order, restricted to `mids`."""
    return [message_id(r.doc) for r in rx.rec.snapshot() if message_id(r.doc) in mids]


def test_offline_receiver_gets_its_queue_in_order_on_its_next_heartbeat(broker_factory):
    env = broker_factory(heartbeat_ttl_secs=1)
    sender = env.aas("http")
    sender.register_ok()
    # The receiver's inbox fails the first three attempts (the broker's
    # retries for the first message), then accepts everything.
    rx = env.aas("http", http_statuses=(503, 503, 503, 200))
    rx.register_ok()
    time.sleep(1.5)  # its lease runs out
    assert env.status()[rx.id]["online"] is False

    msgs = [app_msg(sender.id, rx.id) for _ in range(3)]
    for m in msgs:
        sender.send(m)  # accepted: 202, no error message
    mids = [message_id(m) for m in msgs]
    time.sleep(0.3)
    # only the first message was tried (three times); the others waited behind it
    assert delivered_in_order(rx, mids) == [mids[0]] * 3

    _, ack = rx.heartbeat()
    for mid in mids:
        rx.wait_delivery(mid, count=4 if mid == mids[0] else 1)
    assert delivered_in_order(rx, mids) == [mids[0]] * 4 + mids[1:]
    time.sleep(0.5)
    assert delivered_in_order(rx, mids) == [mids[0]] * 4 + mids[1:], "nothing is delivered twice"

    # back online: a new message goes straight through
    later = app_msg(sender.id, rx.id)
    sender.send(later)
    assert len(rx.wait_delivery(message_id(later))) == 1


def test_queued_messages_survive_a_restart(broker_factory):
    env = broker_factory(heartbeat_ttl_secs=1)
    sender = env.aas("coap")
    sender.register_ok()
    rx = env.aas("http", http_statuses=(503, 503, 503, 200))
    rx.register_ok()
    time.sleep(1.5)
    msgs = [app_msg(sender.id, rx.id) for _ in range(2)]
    for m in msgs:
        sender.send(m)
    mids = [message_id(m) for m in msgs]

    env.server.kill()
    env.server.restart()

    rx.heartbeat()
    for mid in mids:
        rx.wait_delivery(mid, count=4 if mid == mids[0] else 1)
    assert delivered_in_order(rx, mids) == [mids[0]] * 4 + [mids[1]]


def liveness_of(env: BrokerEnv, aas_id: str) -> str | None:
    import base64

    enc = base64.urlsafe_b64encode(aas_id.encode()).decode().rstrip("=")
    r = env.http.get(f"{env.base_url}/shell-descriptors/{enc}")
    assert r.status_code == 200, r.text
    ext = [e for e in r.json().get("extensions", []) if e.get("name") == "twinlattice:liveness"]
    assert len(ext) <= 1, ext
    return ext[0]["value"] if ext else None


def test_liveness_is_written_into_the_descriptor(broker_factory):
    env = broker_factory(heartbeat_ttl_secs=2)
    aas = env.aas("http")
    aas.register_ok()
    assert liveness_of(env, aas.id) == "online"
    # the lease runs out; the host's periodic sweep marks the descriptor
    deadline = time.time() + 10
    while liveness_of(env, aas.id) != "offline" and time.time() < deadline:
        time.sleep(0.2)
    assert liveness_of(env, aas.id) == "offline"
    assert env.status()[aas.id]["online"] is False
    # the next heartbeat marks it online at once
    aas.heartbeat()
    assert liveness_of(env, aas.id) == "online"
    # re-registration replaces the descriptor and keeps the mark
    aas.register_ok(renewed=True)
    assert liveness_of(env, aas.id) == "online"


# --------------------------------------------------------------------------
# Lifetime and bounds of a queue (security review M5)
# --------------------------------------------------------------------------


def offline_receiver(env: BrokerEnv):
    """A registered receiver whose endpoint is a closed port, with its lease
    run out: what is sent to it is queued."""
    rx = env.aas("http", dead_http=True)
    rx.register_ok()
    time.sleep(1.5)
    return rx


def test_an_expired_message_goes_back_to_its_sender_without_a_heartbeat(broker_factory):
    """A receiver that never comes back: its queued message still expires
    (the liveness sweep tends the queue), and the sender gets an E/504
    error message. Before, expiry was checked only when the receiver came
    back, so the message and its sender waited for ever."""
    env = broker_factory(heartbeat_ttl_secs=1, env={"TWINLATTICE_CONFIG_QUEUE_TTL_SECS": "2"})
    sender = env.aas("mqtt")
    sender.register_ok()
    rx = offline_receiver(env)
    msg = app_msg(sender.id, rx.id)
    sender.send(msg, via="http")
    error = sender.wait_mqtt_reply(message_id(msg), timeout=15)
    assert_error_message(error, msg, "504", [rx.id])


def test_a_deleted_receiver_loses_its_queue(broker_factory):
    """DELETE of a queued-for receiver's descriptor drops its queue: the
    same id registered again (a new AAS) gets none of the old messages."""
    env = broker_factory(heartbeat_ttl_secs=1)
    sender = env.aas("mqtt")
    sender.register_ok()
    rx = offline_receiver(env)
    old = app_msg(sender.id, rx.id)
    sender.send(old, via="http")
    r = env.http.delete(f"{env.base_url}/shell-descriptors/{b64(rx.id)}")
    assert r.status_code == 204, r.text
    time.sleep(3.0)  # a few sweeps
    again = env.aas("http", aas_id=rx.id)
    again.register_ok()
    fresh = app_msg(sender.id, again.id)
    sender.send(fresh, via="http")
    again.wait_delivery(message_id(fresh))
    assert again.deliveries(message_id(old)) == [], "the deleted AAS's queue was delivered to its successor"


def test_a_queue_never_grows_past_its_bound_under_concurrent_sends(broker_factory):
    """queue-max 5 and 100 messages sent at once to an offline receiver:
    exactly 5 are queued (202), 95 get E/502 "queue is full". Before, the
    length check and the append raced, and more than 5 got in."""
    env = broker_factory(heartbeat_ttl_secs=1, env={"TWINLATTICE_CONFIG_QUEUE_MAX": "5"})
    sender = env.aas("mqtt")
    sender.register_ok()
    rx = offline_receiver(env)
    msgs = [app_msg(sender.id, rx.id) for _ in range(100)]
    answers: dict[str, int] = {}

    def send(m: dict) -> None:
        answers[message_id(m)] = env.post_http(m, timeout=30).status_code

    threads = [threading.Thread(target=send, args=(m,)) for m in msgs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)
    assert sorted(answers.values()).count(202) == 5, answers
    assert sorted(answers.values()).count(200) == 95, answers
