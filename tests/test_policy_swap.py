"""Swapping the broker's routing policy while it runs.

The host starts with `--policy preferred` (the default) or `failover`;
`twinlattice policy set NAME|PATH.wasm` swaps it through the admin endpoint
(127.0.0.1 only) without a restart. A receiver registered with a dead HTTP
endpoint first and MQTT second tells the policies apart: `preferred` tries
only the dead endpoint (the sender gets a 502 error message), `failover`
falls back to MQTT.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from broker_peers import BrokerEnv, SteadyStream, app_msg, assert_error_message, message_id
from conftest import require_binary


def admin_url(env: BrokerEnv) -> str:
    for line in env.server.stdout_lines:
        if line.startswith("twinlattice admin listening on "):
            return line.split(" on ", 1)[1].strip()
    raise AssertionError(f"no admin line in {env.server.stdout_lines}")


def policy_set(env: BrokerEnv, policy: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(require_binary()), "policy", "set", policy, "--admin", admin_url(env),
         "--admin-token-file", str(env.server.data_dir / "admin.token")],
        capture_output=True, text=True, timeout=60,
    )


def swap(env: BrokerEnv, policy: str) -> dict:
    p = policy_set(env, policy)
    assert p.returncode == 0, (p.stdout, p.stderr)
    return json.loads(p.stdout)


def dead_first_receiver(env: BrokerEnv):
    """Receives over MQTT; its first communication endpoint is a closed HTTP port."""
    rx = env.aas("mqtt", inboxes=["mqtt"], dead_http=True)
    rx.register_ok()
    return rx


def test_preferred_then_failover_routes_by_the_new_policy(broker_factory):
    env = broker_factory()
    sender = env.aas("http")
    sender.register_ok()
    rx = dead_first_receiver(env)

    before = app_msg(sender.id, rx.id)
    answer = sender.request(before)
    assert_error_message(answer, before, "502", [rx.id])
    assert rx.deliveries(message_id(before)) == []

    report = swap(env, "failover")
    assert report["replaced"] == "policy-preferred"
    assert report["component"] == "policy-failover"
    assert report["exports"] == ["twinlattice:routing/policy@0.1.0"]

    after = app_msg(sender.id, rx.id)
    sender.send(after)
    assert len(rx.wait_delivery(message_id(after))) == 1

    back = swap(env, "preferred")
    assert back["replaced"] == "policy-failover"
    again = app_msg(sender.id, rx.id)
    answer = sender.request(again)
    assert_error_message(answer, again, "502", [rx.id])


def test_swaps_under_a_steady_stream_deliver_every_message_exactly_once(broker_factory):
    env = broker_factory()
    senders = [env.aas("http"), env.aas("coap")]
    for s in senders:
        s.register_ok()
    rx = env.aas("http")
    rx.register_ok()

    reports = []
    with SteadyStream(senders, rx) as stream:
        for policy in ["failover", "preferred", "failover", "preferred"]:
            stream.wait_for(20)  # some messages between swaps
            reports.append(swap(env, policy))
    assert [r["component"] for r in reports] == ["policy-failover", "policy-preferred"] * 2
    stream.assert_exactly_once(at_least=80)


def test_a_component_that_is_not_a_policy_is_refused_and_nothing_changes(broker_factory, tmp_path):
    env = broker_factory()
    components = require_binary().parent / "components"
    p = policy_set(env, str(components / "validator.wasm"))
    assert p.returncode != 0
    assert "exports" in p.stdout, p.stdout

    junk = tmp_path / "junk.wasm"
    junk.write_bytes(b"\x00asm not really")
    p = policy_set(env, str(junk))
    assert p.returncode != 0
    assert "does not compile" in p.stdout, p.stdout

    # the running policy is untouched: preferred still gives 502 for a dead-first receiver
    sender = env.aas("http")
    sender.register_ok()
    rx = dead_first_receiver(env)
    msg = app_msg(sender.id, rx.id)
    answer = sender.request(msg)
    assert_error_message(answer, msg, "502", [rx.id])


def test_failover_chosen_at_start(broker_factory):
    env = broker_factory(extra_args=["--policy", "failover"])
    assert any("policy-failover" in line for line in env.server.stdout_lines if line.startswith("twinlattice ready"))
    sender = env.aas("coap")
    sender.register_ok()
    rx = dead_first_receiver(env)
    msg = app_msg(sender.id, rx.id)
    sender.send(msg)
    assert len(rx.wait_delivery(message_id(msg))) == 1


def test_a_policy_link_name_is_refused_by_the_embedded_host(broker_factory):
    """The config key `routing-policy` selects a named policy link on a
    lattice (`wasmcloud:bus/lattice.set-link-name`). The embedded host has
    one link per import: a message routed while the key names another link
    gets a 500 error message that says how to swap here, and is not
    delivered; `default` is that one link."""
    def pair(policy_link: str):
        env = broker_factory(env={"TWINLATTICE_CONFIG_ROUTING_POLICY": policy_link})
        sender, rx = env.aas("http"), env.aas("http")
        sender.register_ok()
        rx.register_ok()
        return sender, rx

    sender, rx = pair("failover")
    msg = app_msg(sender.id, rx.id)
    answer = sender.request(msg)
    assert_error_message(answer, msg, "500", [rx.id, "failover", "twinlattice policy set"])
    assert rx.deliveries(message_id(msg)) == []

    sender, rx = pair("default")
    msg = app_msg(sender.id, rx.id)
    sender.send(msg)
    assert len(rx.wait_delivery(message_id(msg))) == 1
