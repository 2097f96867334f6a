"""ClientHandshake in pipelined mode: StartOk, TuneOk and Open go out with the header."""

from __future__ import annotations

from amqpprox.amqp import handshake as hsm
from amqpprox.amqp.frames import PROTOCOL_HEADER as HEADER
from amqpprox.amqp.methods import ConnectionClose as Close
from amqpprox.amqp.methods import ConnectionCloseOk as CloseOk
from amqpprox.amqp.methods import ConnectionOpen as Open
from amqpprox.amqp.methods import ConnectionOpenOk as OpenOk
from amqpprox.amqp.methods import ConnectionStart as Start
from amqpprox.amqp.methods import ConnectionStartOk as StartOk
from amqpprox.amqp.methods import ConnectionTune as Tune
from amqpprox.amqp.methods import ConnectionTuneOk as TuneOk
from amqpprox.amqp.methods import encode_method as enc


def test_pipelined_client_handshake_sends_everything_up_front() -> None:

    start_ok = StartOk(b"", "PLAIN", b"\0guest\0guest", "en_US")
    tune_ok = TuneOk(2047, 131072, 60)
    open_ = Open("/")
    machine = hsm.ClientHandshake(start_ok, tune_ok, open_, pipelined=True)
    assert machine.initiate() == HEADER + enc(start_ok) + enc(tune_ok) + enc(open_)
    events = machine.receive_data(enc(Start(0, 9, {}, "PLAIN", "en_US")))
    assert [type(e) for e in events] == [hsm.BrokerStart]
    assert machine.data_to_send() == b""  # StartOk already went out
    events = machine.receive_data(enc(Tune(2047, 131072, 60)))
    assert [type(e) for e in events] == [hsm.BrokerTune]
    assert machine.data_to_send() == b""
    events = machine.receive_data(enc(OpenOk()) + b"\x08\x00\x00\x00\x00\x00\x00\xce")
    assert isinstance(events[0], hsm.BrokerOpenOk)
    assert events[0].trailing == b"\x08\x00\x00\x00\x00\x00\x00\xce"

    refused = hsm.ClientHandshake(start_ok, tune_ok, open_, pipelined=True)
    refused.initiate()
    refused.receive_data(enc(Start(0, 9, {}, "PLAIN", "en_US")))
    events = refused.receive_data(enc(Close(403, "ACCESS_REFUSED - Login was refused", 10, 11)))
    assert isinstance(events[0], hsm.BrokerClosed) and events[0].close.reply_code == 403
    assert refused.data_to_send() == enc(CloseOk())
