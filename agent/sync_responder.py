"""The agent's side of clock sync: answer every sync_req with t2 and t3.

t2 is the receive time stamped by the transport's network thread the moment
the message arrived; t3 is taken just before the answer is sent. Whatever
happens between them (the hop to asyncio) is subtracted by the device and
costs no accuracy.
"""

from __future__ import annotations

import asyncio

from gridcast.agent.clock import now_us
from gridcast.agent.transport import Transport
from gridcast.protocol import messages, topics
from gridcast.protocol.errors import ProtocolError


class SyncResponder:
    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.answered = 0
        self.bad = 0
        self._task: asyncio.Task[None] | None = None

    async def _serve(self) -> None:
        queue = self.transport.listen_all()
        while True:
            item = await queue.get()
            if item.leaf != topics.SYNC_REQ:
                continue
            try:
                req = messages.decode(item.payload)
            except ProtocolError:
                self.bad += 1
                continue
            if req.kind != "sync_req":
                self.bad += 1
                continue
            reply = messages.encode("sync_resp", seq=req.seq, t1_us=req.t1_us,
                                    t2_us=item.received_us, t3_us=now_us())
            await self.transport.send(item.device_id, topics.SYNC_RESP, reply)
            self.answered += 1

    def start(self) -> None:
        self._task = asyncio.create_task(self._serve(), name="sync responder")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
