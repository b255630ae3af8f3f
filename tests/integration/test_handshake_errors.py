#!/usr/bin/env python3
"""Clients that do not complete a TLS handshake, for the software and
deferred providers. Each case asserts what the client sees (closed, no
hang), the exact /stats counters that must move (and nothing else), and
that tlsgate still serves a real client afterwards:
  - random bytes, a plaintext HTTP request, a ClientHello followed by a
    garbage record            -> result="protocol_error", reason="handshake_failed"
  - half a ClientHello then FIN, a connect then FIN with no byte, half a
    ClientHello then RST      -> result="client_closed"
  - half a ClientHello then silence, a connect and silence, with
    handshake_timeout: 1s     -> closed after ~1 s, result="timeout",
                                 reason="handshake_timeout"
  - 60 garbage / truncated / silent connections at once -> all counted, no crash.
"""
import os
import socket
import struct
import time

import tglib
from tglib import check, check_eq

HS = "tlsgate_handshakes_total"
CLOSED = "tlsgate_connections_closed_total"


def counters(gw):
    return tglib.snapshot(gw, (HS, CLOSED))


def delta(before, after):
    return tglib.delta(before, after)


def expect_delta(gw, before, want, what):
    tglib.expect_delta(gw, before, want, what, families=(HS, CLOSED))


def raw_case(gw, data, close, timeout=5):
    """Send data on a plain TCP connection, then close ('fin', 'rst') or wait
    ('none'); returns (what the client read, seconds until tlsgate closed)."""
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=timeout * tglib.SCALE)
    t0 = time.monotonic()
    try:
        try:
            if data:
                s.sendall(data)
            if close == "rst":
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
                return None, 0
            if close == "fin":
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError, OSError) as e:
            # tlsgate may already have dropped a garbage connection.
            return b"<%s>" % type(e).__name__.encode(), time.monotonic() - t0
        got = b""
        try:
            while True:
                d = s.recv(4096)
                if not d:
                    break
                got += d
        except ConnectionResetError:
            got += b"<RST>"
        except socket.timeout:
            raise tglib.TestFailure("tlsgate did not close the connection within %.0fs"
                                    % (timeout * tglib.SCALE)) from None
        return got, time.monotonic() - t0
    finally:
        s.close()


PROTO = {"%s{result=protocol_error}" % HS: 1, "%s{reason=handshake_failed}" % CLOSED: 1}
CLIENT_CLOSED = {"%s{result=client_closed}" % HS: 1, "%s{reason=handshake_failed}" % CLOSED: 1}
TIMEOUT = {"%s{result=timeout}" % HS: 1, "%s{reason=handshake_timeout}" % CLOSED: 1}


def main(t):
    up = t.upstream("echo")
    pair = t.cert("rsa", "a.test")
    ch = tglib.client_hello()
    for variant in ("software", "deferred"):
        gw = t.gateway(tglib.gw_config([tglib.listener([pair], up.addr, variant)],
                                       limits={"handshake_timeout": "1s"}))
        cases = [
            ("random bytes", os.urandom(1000), "fin", PROTO),
            ("plaintext HTTP request", b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n", "fin", PROTO),
            ("ClientHello + garbage record", ch + b"\x17\x03\x03\x00\x10" + os.urandom(16), "none",
             PROTO),
            ("half a ClientHello, then FIN", ch[:len(ch) // 2], "fin", CLIENT_CLOSED),
            ("connect, then FIN", b"", "fin", CLIENT_CLOSED),
            ("half a ClientHello, then RST", ch[:len(ch) // 2], "rst", CLIENT_CLOSED),
        ]
        for what, data, close, want in cases:
            with t.case("%s: %s" % (variant, what)):
                before = counters(gw)
                got, _ = raw_case(gw, data, close)
                if got is not None and what.startswith("random"):
                    check(b"\x17" not in got[:1], "no application data for garbage: %r" % got[:40])
                expect_delta(gw, before, want, what)
                tglib.still_serving(gw)

        for what, data in (("half a ClientHello, then silence", ch[:len(ch) // 2]),
                           ("connect, then silence", b"")):
            with t.case("%s: %s with handshake_timeout: 1s" % (variant, what)):
                before = counters(gw)
                got, dt = raw_case(gw, data, "none", timeout=10)
                check_eq(got, b"", "the client reads EOF")
                check(dt >= 0.9, "closed after %.2fs, before the 1s handshake_timeout" % dt)
                check(dt <= 2.5 * tglib.SCALE, "closed after %.2fs, want ~1s" % dt)
                expect_delta(gw, before, TIMEOUT, what)

        with t.case("%s: 60 bad connections at once" % variant):
            before = counters(gw)
            kinds = [(os.urandom(300), "fin"), (ch[:100], "fin"), (ch[:100], "rst"),
                     (ch[:50], "none")]
            tglib.threads(60, lambda i: raw_case(gw, *kinds[i % 4], timeout=10))
            d = None

            def all_counted():
                nonlocal d
                d = delta(before, counters(gw))
                return sum(v for k, v in d.items() if k.startswith(HS)) == 60 and d
            tglib.wait_until(all_counted, 10, "60 failed handshakes to be counted")
            check_eq(d.get("%s{result=timeout}" % HS), 15, "timeouts")
            check_eq(d.get("%s{result=protocol_error}" % HS), 15, "protocol errors")
            check_eq(d.get("%s{result=client_closed}" % HS), 30, "client closed")
            check_eq(d.get("%s{result=ok}" % HS), None, "no successful handshake")
            tglib.settle(gw)
            tglib.still_serving(gw)
        gw.stop_ok()
    up.stop()


tglib.run(main, timeout=120)
