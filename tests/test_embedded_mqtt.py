"""The embedded MQTT broker: without `--mqtt-host` the host starts one
(rumqttd) and its MQTT bridge uses it, so the one-command run needs nothing
else. A real MQTT client (paho) registers through it and gets its
registerack on its own topic; a message routed to an MQTT AAS arrives there.
"""

from __future__ import annotations

import json
import re

from broker_peers import MqttClient, Recorder, app_msg, in_reply_to, message_id, new_id, register_msg, topic_for
from conftest import Client

EMBEDDED = re.compile(r"^twinlattice mqtt broker \(embedded\) listening on mqtt://127\.0\.0\.1:(\d+)$")


def test_embedded_broker_serves_the_mqtt_bridge(server_factory):
    s = server_factory()
    ports = [int(m.group(1)) for m in (EMBEDDED.match(line.strip()) for line in s.stdout_lines) if m]
    assert len(ports) == 1, s.stdout_lines
    port = ports[0]
    assert any(line.strip() == f"twinlattice mqtt bridge connected to 127.0.0.1:{port}" for line in s.stdout_lines)

    aas_id = new_id("mqtt")
    rec = Recorder()
    client = MqttClient(port, [topic_for(aas_id)], rec)
    try:
        reg = register_msg(aas_id, {"id": aas_id, "idShort": "embedded"})
        client.publish("AASpillarbox", json.dumps(reg))
        got = rec.wait_for(lambda r: in_reply_to(r.doc) == message_id(reg), timeout=10)
        assert got, "no registerack over the embedded broker"
        ack = got[0].doc
        assert ack["frame"]["type"] == "registerack"
        assert ack["interactionElements"][0]["submodelElements"][0]["value"] == "S"

        # an HTTP sender's message to the MQTT AAS arrives on its topic
        with Client() as http:
            sender = new_id("http")
            r = http.post(s.base_url + "/i40commu", json=register_msg(sender, {"id": sender}))
            assert r.status_code == 200
            msg = app_msg(sender, aas_id)
            r = http.post(s.base_url + "/i40commu", json=msg)
            assert r.status_code == 202, r.text
        assert rec.wait_for(lambda r: message_id(r.doc) == message_id(msg), timeout=10)
    finally:
        client.close()
