"""The agent's side of clock sync: answer every sync_req with t2 and t3.

t2 is the receive time stamped by the transport's network thread the moment
the message arrived; t3 is taken just before the answer is sent. Whatever
happens between them (the hop to asyncio) is subtracted by the device and
costs no accuracy. The transport seals each answer for the device that asked
(docs/protocol.md 11) after t3 is taken: a few microseconds the device's offset
estimate halves.
"""

from __future__ import annotations

import asyncio
import contextlib

from gridcast.agent.clock import now_us
from gridcast.agent.transport import Transport
from gridcast.protocol import messages, topics


def answer(req: messages.Message, received_us: int) -> bytes | None:
    """The sync_resp for one decoded sync_req (None for anything else)."""
    if req.kind != "sync_req":
        return None
    return messages.encode("sync_resp", seq=req.seq, t1_us=req.t1_us, t2_us=received_us,
                           t3_us=now_us())


class SyncResponder:
    """Answers sync requests for as long as it runs.

    On MQTT the answer is sent from the network thread that received the request
    (no hop to asyncio, whose scheduling would add delay to one direction only);
    on other transports it goes through the event loop.
    """

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.answered = 0
        self.bad = 0
        self._task: asyncio.Task[None] | None = None

    def _direct(self, device_id: str, req: messages.Message, received_us: int) -> bytes | None:
        reply = answer(req, received_us)
        if reply is None:
            self.bad += 1
        else:
            self.answered += 1
        return reply

    async def _serve(self) -> None:
        queue = self.transport.listen_all()
        while True:
            item = await queue.get()
            if item.leaf != topics.SYNC_REQ:
                continue
            reply = answer(item.message, item.received_us)
            if reply is None:
                self.bad += 1
                continue
            await self.transport.send(item.device_id, topics.SYNC_RESP, reply)
            self.answered += 1

    def start(self) -> None:
        if hasattr(self.transport, "sync_handler"):
            self.transport.sync_handler = self._direct
            return
        self._task = asyncio.create_task(self._serve(), name="sync responder")

    async def stop(self) -> None:
        if hasattr(self.transport, "sync_handler"):
            self.transport.sync_handler = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
