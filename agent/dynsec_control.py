"""Changing users on a running mosquitto through its dynamic-security plugin.

While the broker runs, the plugin owns its JSON file (it rewrites it after every
change, agent/dynsec.py), so ``gridcast provision`` adds or updates a user by
publishing the plugin's commands to ``$CONTROL/dynamic-security/v1`` with the admin
login (``gridcast-admin``, whose role may do nothing else) and waits for the answer
on ``.../response``. The device can log in as soon as the answer is in; nobody else
is disconnected (a changed user's own sessions are, by the plugin: a new password).
"""

from __future__ import annotations

import json
import secrets
import threading

from gridcast.agent import dynsec
from gridcast.agent.mqtt import MqttConnection, MqttMessage

ALREADY_EXISTS = ("Role already exists", "Client already exists")


class DynsecControl:
    """One admin connection to a running broker. ``url``: ``mqtts://HOST:PORT?ca=...``
    (with ``&cert=&key=`` where the site requires client certificates)."""

    def __init__(self, url: str, user: str, password: str, timeout_s: float = 5.0) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._answers: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self.conn = MqttConnection.from_url(url, username=user, password=password,
                                            client_id=f"gridcast-provision-{secrets.token_hex(6)}")
        self.conn.subscribe(dynsec.RESPONSE_TOPIC, 1, self._on_response)

    def __enter__(self) -> DynsecControl:
        self.conn.start(timeout_s=self.timeout_s)
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.stop()

    def _on_response(self, message: MqttMessage) -> None:
        try:
            responses = json.loads(message.payload)["responses"]
        except (ValueError, KeyError, TypeError):
            return
        with self._arrived:
            for answer in responses:
                if isinstance(answer, dict) and "correlationData" in answer:
                    self._answers[str(answer["correlationData"])] = answer
            self._arrived.notify_all()

    def run(self, commands: list[dict]) -> list[str | None]:
        """Send ``commands`` in one message; each one's error (None: done), in order."""
        tags = [secrets.token_hex(8) for _ in commands]
        payload = {"commands": [{**c, "correlationData": t} for c, t in zip(commands, tags,
                                                                             strict=True)]}
        self.conn.publish(dynsec.CONTROL_TOPIC, json.dumps(payload).encode(), qos=1)
        with self._arrived:
            if not self._arrived.wait_for(lambda: all(t in self._answers for t in tags),
                                          self.timeout_s):
                raise dynsec.DynsecError(f"the broker at {self.conn.broker} did not answer the "
                                         f"dynamic-security commands within "
                                         f"{self.timeout_s:g} s: is the plugin loaded? (see "
                                         "its log)")
            return [self._answers.pop(t).get("error") for t in tags]

    def set_user(self, user: str, kind: str, password: str) -> None:
        """Create ``user`` with its role, or update both if they exist."""
        create, update = dynsec.commands_for(user, kind, password)
        errors = self.run(create)
        redo = [u for u, e in zip(update, errors, strict=True) if e in ALREADY_EXISTS]
        failed = [f"{c['command']}: {e}" for c, e in zip(create, errors, strict=True)
                  if e and e not in ALREADY_EXISTS]
        if redo and not failed:
            failed = [f"{c['command']}: {e}" for c, e in zip(redo, self.run(redo), strict=True)
                      if e]
        if failed:
            raise dynsec.DynsecError(f"the broker at {self.conn.broker} refused to set user "
                                     f"{user}: {'; '.join(failed)} (see its log)")
