#!/usr/bin/env python3
"""limits.max_connections: 5, software and deferred providers.
10 clients open idle TLS connections (echo upstream): the first 5 complete
their handshake and stay usable, the other 5 are closed at accept
(connections_rejected_total = 5, connections_active = 5). When 2 of the 5
close, 2 new connections are accepted again and a 3rd is rejected. Every
held connection still echoes at the end.
"""
import ssl

import tglib
from tglib import check, check_eq


def try_connect(port):
    """An established TLS connection, or None if tlsgate refused it."""
    try:
        s = tglib.tls_connect(port, timeout=5)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
        return None
    except OSError as e:
        raise tglib.TestFailure("unexpected connect error %r" % e)
    # A TLS 1.3 client finishes before the server: make sure tlsgate really
    # holds the connection by a round trip through the echo upstream.
    try:
        s.sendall(b"ping\n")
        data = s.recv(100)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        data = b""
    if data != b"ping\n":
        s.close()
        return None
    return s


def echo_ok(s, msg):
    s.sendall(msg)
    got = b""
    while len(got) < len(msg):
        d = s.recv(100)
        check(d, "held connection closed")
        got += d
    check_eq(got, msg, "echo on a held connection")


def main(t):
    up = t.upstream("echo")
    pair = t.cert("rsa", "a.test")
    for variant in ("software", "deferred"):
        with t.case("%s: max_connections 5, 10 idle clients" % variant):
            gw = t.gateway(tglib.gw_config([tglib.listener([pair], up.addr, variant)],
                                           limits={"max_connections": 5}))
            conns = [try_connect(gw.port) for _ in range(10)]
            held = [s for s in conns if s is not None]
            check_eq([s is not None for s in conns], [True] * 5 + [False] * 5,
                     "which connections tlsgate accepted")
            st = gw.stats()
            check_eq(st("tlsgate_connections_rejected_total", reason="max_connections"), 5,
                     "rejected connections")
            check_eq(st("tlsgate_connections_active"), 5, "connections_active")
            check_eq(st("tlsgate_handshakes_total", result="ok"), 5, "handshakes ok")

        with t.case("%s: after 2 close, 2 more are accepted, the next is rejected" % variant):
            for s in held[:2]:
                s.close()
            held = held[2:]
            tglib.wait_until(lambda: gw.stats()("tlsgate_connections_active") == 3, 5,
                             "connections_active = 3")
            for i in range(2):
                s = try_connect(gw.port)
                check(s is not None, "new connection %d refused below the limit" % i)
                held.append(s)
            check(try_connect(gw.port) is None, "a 6th connection was accepted")
            st = gw.stats()
            check_eq(st("tlsgate_connections_rejected_total"), 6, "rejected connections")
            check_eq(st("tlsgate_connections_active"), 5, "connections_active")
            for i, s in enumerate(held):
                echo_ok(s, b"still here %d\n" % i)
            for s in held:
                s.close()
            tglib.wait_until(lambda: gw.stats()("tlsgate_connections_active") == 0, 5,
                             "connections_active = 0")
            gw.stop_ok()


tglib.run(main, timeout=60)
