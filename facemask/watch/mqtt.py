"""Events and counts to an MQTT broker, the way Home Assistant and Frigate users wire cameras (paho-mqtt).

Topics, for camera <camera> (`facemask/` prefix):
- `facemask/<camera>/events`: every event record as JSON, its start when raised and its end when it ends (QoS 1,
  not retained);
- `facemask/<camera>/people/<label>`: people counted with that label since the watch started (retained);
- `facemask/<camera>/in_view/<label>`: faces with that label in view now (retained);
- `facemask/<camera>/available`: `online`, or `offline` (retained; the broker sends `offline` if the watch dies).
Home Assistant discovery (`homeassistant/sensor/facemask_<camera>_<kind>_<label>/config`, retained): one sensor
per count, grouped under a device per camera, so the counts appear in Home Assistant without configuration.

The client runs its own network thread and reconnects by itself; QoS 1 messages published while the broker is
away wait in paho's queue and go out when it is back.
"""
from __future__ import annotations

import json
import logging
import threading
import uuid
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt

from facemask.core.classes import CLASSES
from facemask.core.results import UNCLASSIFIED

log = logging.getLogger("facemask.watch")

TOPIC_PREFIX = "facemask"
DISCOVERY_PREFIX = "homeassistant"
LABELS = (*CLASSES, UNCLASSIFIED)


def mqtt_url(text: str) -> str:
    """An mqtt://[user:password@]host[:port] URL, or ValueError."""
    parts = urlsplit(text)
    if parts.scheme != "mqtt" or not parts.hostname:
        raise ValueError(f"--mqtt must be an mqtt://host[:port] URL, got {text!r}")
    parts.port  # noqa: B018 (raises ValueError on a port that is no number)
    return text


class MqttPublisher:
    def __init__(self, url: str, camera: str):
        parts = urlsplit(mqtt_url(url))
        self.camera, self.base = camera, f"{TOPIC_PREFIX}/{camera}"
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"facemask-{camera}-{uuid.uuid4().hex[:8]}")
        if parts.username:
            self.client.username_pw_set(parts.username, parts.password)
        self.client.will_set(f"{self.base}/available", "offline", qos=1, retain=True)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._connected
        self.published: dict[str, str] = {}  # retained topic: latest value sent, so only changes go out
        self.lock = threading.Lock()
        self.client.connect_async(parts.hostname or "localhost", parts.port or 1883)
        self.client.loop_start()

    def _connected(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("MQTT broker refused the connection: %s", reason_code)
            return
        log.info("MQTT: connected; events on %s/events, counts under %s/", self.base, self.base)
        for kind, name, unit in (("people", "people counted", "people"), ("in_view", "faces in view", "faces")):
            for label in LABELS:
                unique = f"facemask_{self.camera}_{kind}_{label}"
                config = {"name": f"{name}: {label.replace('_', ' ')}", "unique_id": unique,
                          "object_id": unique, "state_topic": f"{self.base}/{kind}/{label}",
                          "unit_of_measurement": unit,
                          "state_class": "total_increasing" if kind == "people" else "measurement",
                          "availability_topic": f"{self.base}/available",
                          "device": {"identifiers": [f"facemask_{self.camera}"], "name": f"Face masks {self.camera}",
                                     "manufacturer": "facemask", "model": "camera watch"}}
                client.publish(f"{DISCOVERY_PREFIX}/sensor/{unique}/config", json.dumps(config), qos=1, retain=True)
        client.publish(f"{self.base}/available", "online", qos=1, retain=True)
        with self.lock:
            for topic, value in self.published.items():  # the broker may have restarted without persistence
                client.publish(topic, value, qos=1, retain=True)

    def event(self, event: dict) -> None:
        self.client.publish(f"{self.base}/events", json.dumps(event), qos=1)

    def counts(self, people: dict[str, int], in_view: dict[str, int]) -> None:
        """Publishes the counts that changed (retained)."""
        with self.lock:
            for kind, counts in (("people", people), ("in_view", in_view)):
                for label in LABELS:
                    topic, value = f"{self.base}/{kind}/{label}", str(counts.get(label, 0))
                    if self.published.get(topic) != value:
                        self.published[topic] = value
                        self.client.publish(topic, value, qos=1, retain=True)

    def close(self, timeout_s: float = 5.0) -> None:
        """`offline`, then what is queued gets timeout_s to reach the broker."""
        info = self.client.publish(f"{self.base}/available", "offline", qos=1, retain=True)
        try:
            info.wait_for_publish(timeout_s)
        except (RuntimeError, ValueError):  # never connected: nothing can be delivered
            log.warning("MQTT: the broker was not reachable; queued messages are lost")
        self.client.disconnect()
        self.client.loop_stop()
