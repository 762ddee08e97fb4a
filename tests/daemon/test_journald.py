"""Journald alerts: exact native-protocol fields on a bound socket, stderr otherwise."""

from __future__ import annotations

import io
import socket
import struct
from pathlib import Path

from daemon_findings import finding

from nixdrift.sinks.journald import Alert, Event, JournalSink, encode


def parse(datagram: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    i = 0
    while i < len(datagram):
        nl = datagram.index(b"\n", i)
        line = datagram[i:nl]
        if b"=" in line:
            k, v = line.split(b"=", 1)
            out[k.decode()] = v.decode()
            i = nl + 1
        else:
            (size,) = struct.unpack("<Q", datagram[nl + 1 : nl + 9])
            out[line.decode()] = datagram[nl + 9 : nl + 9 + size].decode()
            assert datagram[nl + 9 + size : nl + 10 + size] == b"\n"
            i = nl + 10 + size
    return out


def test_alert_reaches_a_bound_journal_socket_with_exact_fields(tmp_path: Path) -> None:
    path = tmp_path / "journal.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(5)
    JournalSink(str(path)).send(Alert.of(Event.NEW, finding()))
    fields = parse(server.recv(65536))
    assert fields["PRIORITY"] == "3"  # high -> err
    assert fields["MESSAGE_ID"] == Event.NEW.message_id and len(fields["MESSAGE_ID"]) == 32
    assert fields["NIXDRIFT_ID"] == "etc/motd"
    assert fields["NIXDRIFT_CATEGORY"] == "etc"
    assert fields["NIXDRIFT_SEVERITY"] == "high"
    assert fields["NIXDRIFT_SUBJECT"] == "/etc/motd"
    assert fields["NIXDRIFT_PATH"] == "/etc/motd"
    assert fields["MESSAGE"].startswith("new: /etc/motd")


def test_multiline_values_use_the_length_prefixed_form() -> None:
    data = encode({"MESSAGE": "two\nlines", "A": "b"})
    assert data == b"MESSAGE\n" + struct.pack("<Q", 9) + b"two\nlines\nA=b\n"
    assert parse(data) == {"MESSAGE": "two\nlines", "A": "b"}


def test_message_ids_are_distinct_per_event_type() -> None:
    ids = [e.message_id for e in Event]
    assert len(set(ids)) == len(ids) and all(int(i, 16) for i in ids)


def test_without_a_journal_one_line_on_stderr_names_id_subject_and_path(tmp_path: Path) -> None:
    out = io.StringIO()
    JournalSink(str(tmp_path / "absent.sock"), stream=out).send(Alert.of(Event.NEW, finding()))
    line = out.getvalue()
    assert line.count("\n") == 1
    assert "id=etc/motd" in line and "subject=/etc/motd" in line and "path=/etc/motd" in line


def test_resolved_is_informational() -> None:
    assert Alert.of(Event.RESOLVED, finding()).fields()["PRIORITY"] == "6"
