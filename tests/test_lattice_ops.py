"""Operating a running lattice deployment (scripts/test-lattice.sh only; the
tests are marked `lattice` and deselected on the embedded host).

Routing-policy swap: the broker has one policy link per policy, named after
it, and its config key `routing-policy` names the one it calls
(`wasmcloud:bus/lattice.set-link-name`). `scripts/lattice.sh policy NAME`
deploys a new version of the application with that key changed; no link
changes (re-pointing a link makes wadm delete it before putting the new one,
and messages routed in between fail). A receiver registered
with a dead HTTP endpoint first and MQTT second tells the policies apart:
`preferred` tries only the dead endpoint (the sender gets a 502 error
message), `failover` falls back to MQTT. Under a steady stream over HTTP
and CoAP, every message must arrive exactly once across the swaps.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from broker_peers import LatticeBrokerEnv, SteadyStream, app_msg, assert_error_message, message_id
from conftest import REPO_ROOT, assert_json, assert_status

pytestmark = pytest.mark.lattice

LATTICE_SH = REPO_ROOT / "scripts" / "lattice.sh"
# How long a swap may take to show (wadm reconciles, the host puts the link).
SWAP_TIMEOUT = 60.0


@pytest.fixture
def env():
    e = LatticeBrokerEnv()
    yield e
    e.close()


def deploy_policy(name: str) -> None:
    p = subprocess.run([str(LATTICE_SH), "policy", name], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, (p.stdout, p.stderr)


def policy_in_effect(env, sender, dead_first) -> str:
    """Route one message to `dead_first` and say which policy handled it."""
    msg = app_msg(sender.id, dead_first.id)
    r = env.post_http(msg)
    if r.status_code == 202:
        assert len(dead_first.wait_delivery(message_id(msg))) == 1
        return "failover"
    assert_status(r, 200)
    assert_error_message(assert_json(r), msg, "502", [dead_first.id])
    assert dead_first.deliveries(message_id(msg)) == []
    return "preferred"


def swap_and_wait(env, sender, dead_first, name: str) -> None:
    deploy_policy(name)
    deadline = time.monotonic() + SWAP_TIMEOUT
    while policy_in_effect(env, sender, dead_first) != name:
        assert time.monotonic() < deadline, f"policy-{name} not in effect {SWAP_TIMEOUT}s after its deploy"
        time.sleep(0.2)


@pytest.fixture
def probe(env):
    """(sender, dead-first receiver) on a deployment that routes by `preferred`,
    left on `preferred` afterwards (the other lattice tests expect it)."""
    sender = env.aas("http")
    sender.register_ok()
    dead_first = env.aas("mqtt", inboxes=["mqtt"], dead_http=True)
    dead_first.register_ok()
    assert policy_in_effect(env, sender, dead_first) == "preferred"
    yield sender, dead_first
    swap_and_wait(env, sender, dead_first, "preferred")


def test_swap_by_config_in_a_new_version_routes_by_the_new_policy(env, probe):
    sender, dead_first = probe
    swap_and_wait(env, sender, dead_first, "failover")
    # it stays in effect: every further message goes by failover
    for _ in range(3):
        assert policy_in_effect(env, sender, dead_first) == "failover"
    swap_and_wait(env, sender, dead_first, "preferred")
    assert policy_in_effect(env, sender, dead_first) == "preferred"


def test_swaps_under_a_steady_stream_deliver_every_message_exactly_once(env, probe):
    sender, dead_first = probe
    senders = [env.aas("http"), env.aas("coap")]
    for s in senders:
        s.register_ok()
    rx = env.aas("http")
    rx.register_ok()

    with SteadyStream(senders, rx) as stream:
        for name in ["failover", "preferred", "failover"]:
            stream.wait_for(20)  # some messages between swaps
            swap_and_wait(env, sender, dead_first, name)
    stream.assert_exactly_once(at_least=60)
