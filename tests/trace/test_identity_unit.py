"""amqp.identity: the user name from each SASL response, never the password."""

from __future__ import annotations

from amqpprox.amqp.fields import encode_table
from amqpprox.amqp.identity import ClientIdentity, identify, sasl_user
from amqpprox.amqp.methods import ConnectionStartOk, ConnectionTuneOk


def test_plain_user() -> None:
    assert sasl_user("PLAIN", b"\x00alice\x00s3cret") == "alice"
    assert sasl_user("PLAIN", b"garbage") == ""


def test_amqplain_user_with_and_without_length_prefix() -> None:
    table = encode_table({"LOGIN": "bob", "PASSWORD": "s3cret"})
    assert sasl_user("AMQPLAIN", table) == "bob"
    assert sasl_user("AMQPLAIN", len(table).to_bytes(4, "big") + table) == "bob"
    assert sasl_user("AMQPLAIN", b"\xff\xff") == ""


def test_external_has_no_user() -> None:
    assert sasl_user("EXTERNAL", b"") == ""


def test_identify_keeps_no_secret() -> None:
    props = encode_table({"product": "p", "version": "1", "platform": "x", "connection_name": "c"})
    start_ok = ConnectionStartOk(props, "PLAIN", b"\x00alice\x00s3cret", "en_US")
    identity = identify(start_ok, ConnectionTuneOk(10, 4096, 5))
    assert identity == ClientIdentity("alice", "PLAIN", "p", "1", "x", "c", 10, 4096, 5)
    assert "s3cret" not in repr(identity)
