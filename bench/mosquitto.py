"""Debian's mosquitto broker on a loopback port, in a process of its own, and a subscriber to everything on it
(for the watch's MQTT tests and soak)."""
from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from facemask.serving.local_server import free_port


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)


class Mosquitto:
    """mosquitto -c <a config in folder>, listening on 127.0.0.1:<a free port>, no persistence."""

    def __init__(self, folder: Path):
        binary = mosquitto_binary()
        if binary is None:
            raise FileNotFoundError("mosquitto is not installed (apt-get install mosquitto)")
        self.port = free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        config = folder / "mosquitto.conf"
        config.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.process = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 20
        while not self._answers():
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError("mosquitto did not start listening")
            time.sleep(0.1)

    def _answers(self) -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def listen(self) -> tuple[list[tuple[str, str, bool]], mqtt.Client]:
        """A subscriber to everything: its messages (topic, payload, retained) as they come, and the client."""
        messages: list[tuple[str, str, bool]] = []
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        client.on_message = lambda c, u, message: messages.append(
            (message.topic, message.payload.decode(), bool(message.retain)))
        client.on_connect = lambda c, u, f, reason, p: c.subscribe("#", qos=1)
        client.connect("127.0.0.1", self.port)
        client.loop_start()
        deadline = time.monotonic() + 10
        while not client.is_connected():
            if time.monotonic() > deadline:
                raise RuntimeError("the MQTT subscriber did not connect")
            time.sleep(0.05)
        time.sleep(0.5)  # the subscription itself
        return messages, client

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
