#!/usr/bin/env python3
"""Half-closed connections, both directions, TLS 1.2 and 1.3, software and
deferred providers. The client is a memory-BIO TLS client (tglib.BioTLS) so
that it can send close_notify and keep reading.

Client closes first (the upstream is a streaming echo server that, on EOF,
sends "UPSTREAM-EOF <bytes> <sha256>" and closes):
  - 200 KB, then close_notify + TCP FIN: the upstream sees EOF (after every
    byte), still answers; the client gets the whole echo, the trailer, then
    close_notify;
  - close_notify without a TCP FIN: same;
  - a bare TCP FIN (no close_notify): same (tlsgate treats it as EOF).
Upstream closes first (it sends 20 KB, shutdown(SHUT_WR), then reads until
EOF):
  - the client reads all 20 KB, then close_notify; it then still sends data,
    which reaches the upstream, then close_notify: the upstream sees that
    data and EOF.
Every case ends with reason="normal" and no connection left open.
"""
import hashlib
import os
import socket

import tglib
import tg_upstream
from tglib import check, check_eq

NORMAL = {"tlsgate_handshakes_total{result=ok}": 1,
          "tlsgate_upstream_connects_total{result=ok}": 1,
          "tlsgate_connections_closed_total{reason=normal}": 1}


def client_first(gw, version, how):
    payload = os.urandom(200_000)
    c = tglib.BioTLS(gw.ports["echo"], version)
    try:
        c.send(payload[:100_000])
        c.send(payload[100_000:])
        if how == "close_notify+fin":
            c.close_notify(tcp_shutdown=True)
        elif how == "close_notify":
            c.close_notify(tcp_shutdown=False)
        else:  # bare FIN
            c.sock.shutdown(socket.SHUT_WR)
        data, notify = c.read_until_close()
    finally:
        c.close()
    trailer = b"\nUPSTREAM-EOF %d %s\n" % (len(payload), hashlib.sha256(payload).hexdigest().encode())
    check_eq(len(data), len(payload) + len(trailer), "bytes back (echo + trailer)")
    check(data[:len(payload)] == payload, "echoed bytes differ")
    check_eq(data[len(payload):], trailer, "the upstream saw EOF after every byte")
    check(notify, "the client gets close_notify at the end, not a bare TCP EOF")


def upstream_first(gw, version, up):
    n0 = len(up.conns)
    c = tglib.BioTLS(gw.ports["first"], version)
    try:
        data, notify = c.read_until_close()
        check_eq(len(data), len(tg_upstream.FIRST_PAYLOAD), "bytes from the upstream")
        check(data == tg_upstream.FIRST_PAYLOAD, "bytes from the upstream differ")
        check(notify, "close_notify after the upstream's FIN")
        # Our direction is still open: talk, then close.
        c.send(b"client data after the server's close_notify\n")
        c.close_notify()
        rest, _ = c.read_until_close()
        check_eq(rest, b"", "nothing after close_notify")
    finally:
        c.close()
    recs = up.wait_conns(n0 + 1, 10)
    check_eq(len(recs), n0 + 1, "upstream connection ended")
    rec = recs[-1]
    check_eq(bytes(rec.received), b"client data after the server's close_notify\n",
             "the upstream got the data sent after its own FIN")
    check(rec.saw_eof, "the upstream saw EOF")


def main(t):
    echo = t.upstream("echo")
    first = t.upstream("first")
    pair = t.cert("rsa", "a.test")
    for variant in ("software", "deferred"):
        gw = t.gateway(tglib.gw_config([
            tglib.listener([pair], echo.addr, variant, name="echo"),
            tglib.listener([pair], first.addr, variant, name="first")]))
        for version in ("1.3", "1.2"):
            for how in ("close_notify+fin", "close_notify", "fin"):
                with t.case("%s TLS %s: client half-closes (%s), upstream still answers"
                            % (variant, version, how)):
                    before = tglib.snapshot(gw)
                    client_first(gw, version, how)
                    tglib.expect_delta(gw, before, NORMAL, "client half-close")
            with t.case("%s TLS %s: upstream half-closes first, client still talks"
                        % (variant, version)):
                before = tglib.snapshot(gw)
                upstream_first(gw, version, first)
                tglib.expect_delta(gw, before, NORMAL, "upstream half-close")
        tglib.settle(gw)
        gw.stop_ok()


tglib.run(main, timeout=120)
