"""Readiness probe for the broker's inboxes on a lattice deployment
(scripts/test-lattice.sh): exits 0 when the bridges provider's CoAP inbox
and its MQTT bridge both hand messages to the broker component, 1 otherwise.

Each inbox gets a HeartBeat without a frame type, which only the broker can
judge: CoAP must answer 4.00 (not 5.00, the answer while the provider has no
link to the broker yet), MQTT must bring an error message back on the
sender's topic (the inbox is subscribed and linked).

    python tests/lattice_ready.py COAP_URL MQTT_PORT
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading

import aiocoap
import paho.mqtt.client as mqtt

from broker_peers import REGISTRY_ID, heartbeat_msg, new_id, topic_for

TIMEOUT = 2.0


def bad_message() -> tuple[str, bytes]:
    msg = heartbeat_msg(new_id("probe"))
    del msg["frame"]["type"]
    return msg["frame"]["sender"]["identification"]["id"], json.dumps(msg).encode()


async def coap_ready(url: str) -> bool:
    ctx = await aiocoap.Context.create_client_context()
    try:
        _, payload = bad_message()
        request = aiocoap.Message(code=aiocoap.POST, uri=url, payload=payload)
        response = await asyncio.wait_for(ctx.request(request).response, TIMEOUT)
        return response.code == aiocoap.BAD_REQUEST
    except Exception:  # noqa: BLE001 - any failure means "not yet"
        return False
    finally:
        await ctx.shutdown()


def mqtt_ready(port: int) -> bool:
    sender, payload = bad_message()
    answered = threading.Event()
    subscribed = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = lambda *_: answered.set()
    try:
        client.connect("127.0.0.1", port)
    except OSError:
        return False
    client.loop_start()
    try:
        client.subscribe(topic_for(sender), qos=1)
        if not subscribed.wait(TIMEOUT):
            return False
        client.publish(REGISTRY_ID, payload, qos=1)
        return answered.wait(TIMEOUT)
    finally:
        client.loop_stop()
        client.disconnect()


def main() -> int:
    coap_url, mqtt_port = sys.argv[1], int(sys.argv[2])
    return 0 if asyncio.run(coap_ready(coap_url)) and mqtt_ready(mqtt_port) else 1


if __name__ == "__main__":
    sys.exit(main())
