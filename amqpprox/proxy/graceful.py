"""One graceful close of a live session (``SESSION id DISCONNECT_GRACEFUL``, a drain):
from the first ``Connection.Close`` to the broker's ``CloseOk``.

The steps, in order: let the broker's stream reach a frame boundary (never cut a frame it
is sending), send the client our Close and let its last frames through until its CloseOk,
then send the broker our Close and wait for its CloseOk. The session's close deadline
bounds the whole. What the frames are is the protocol adapter's business; this module
owns only the order of the steps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amqpprox.core.sessions import CloseReason
from amqpprox.proxy.lifecycle import Phase

if TYPE_CHECKING:
    from amqpprox.proxy.session import Session

__all__ = ["GracefulClose"]


class GracefulClose:
    """The state of one graceful close."""

    __slots__ = ("code", "session", "text", "waiting")

    def __init__(self, session: Session, code: int, text: str) -> None:
        self.session = session
        self.code = code
        self.text = text
        self.waiting = False  # the broker is mid-frame: the client's Close waits for it

    def start(self) -> None:
        relay = self.session.relay
        assert relay is not None
        if relay.out_scanner.at_boundary:
            self.close_client()
            return
        # The session routes the broker's reads here, and holds the client's, meanwhile.
        self.waiting = True
        self.session.route()

    def until_boundary(self, data: bytes) -> None:
        relay = self.session.relay
        assert relay is not None
        if relay.broker_data_until_boundary(data):
            self.close_client()

    def close_client(self) -> None:
        session = self.session
        self.waiting = False
        session.move(Phase.CLOSING_CLIENT)
        session.adapter.close_client(self.code, self.text)
        session.replay_held()

    def client_done(self) -> None:
        """The client acknowledged our Close: now the broker's turn."""
        session = self.session
        if session.broker_transport is None:
            session.finish(CloseReason.PROXY_GRACEFUL)
            session.move(Phase.DEAD)
            return
        session.move(Phase.CLOSING_BROKER)
        session.adapter.close_broker(self.code, self.text)

    def broker_done(self) -> None:
        session = self.session
        session.finish(CloseReason.PROXY_GRACEFUL)  # the close we started completed
        session.move(Phase.DEAD)
        session.cancel_deadline()

    def client_gone(self) -> None:
        """The client's socket closed during the close: still close the broker cleanly.

        pika, for one, answers a server ``Connection.Close`` by closing its socket without
        ``CloseOk``. As upstream, the broker still gets ``Connection.Close`` and we wait
        (bounded by the close deadline) for its ``CloseOk``.
        """
        session = self.session
        if session.phase is not Phase.CLOSING_CLIENT:
            return  # CLOSING_BROKER: the broker's CloseOk ends the session
        if session.broker_transport is None:
            session.finish(CloseReason.PROXY_GRACEFUL)
            session.move(Phase.DEAD)
            session.cancel_deadline()
            return
        self.client_done()
