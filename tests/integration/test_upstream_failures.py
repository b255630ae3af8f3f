#!/usr/bin/env python3
"""Upstreams that fail, for the software and deferred providers. The client
always completes its handshake, then must see a clean TLS close (close_notify:
the client is strict about EOFs here) without hanging; the exact /stats
counters are asserted; tlsgate still serves afterwards.
  - refused: nothing listens on the upstream port (a socket is bound there
    but not listening, so no one else can take the port) -> upstream
    result="refused", reason="upstream_connect_failed"; TLS 1.2 and 1.3;
  - connect timeout: an upstream whose accept queue is full (listen(0),
    pre-filled, never accepts: the kernel drops further SYNs) with
    connect_timeout: 500ms -> result="timeout" after ~0.5 s;
  - the upstream accepts and closes at once (FIN) -> close_notify, reason
    "normal"; closes with RST -> upstream_resets_total, reason
    "upstream_error"; and with a request in flight (either outcome);
  - the upstream sends half of a response and closes -> the client gets
    exactly those bytes, then close_notify;
  - the upstream accepts and never answers, idle_timeout: 1s -> closed after
    ~1 s, reason "idle_timeout"; a client that keeps talking (every 0.3 s
    for 2 s) through an echo upstream is not idle and is not closed.
"""
import socket
import ssl
import time

import tglib
from tglib import check, check_eq

OK_HS = "tlsgate_handshakes_total{result=ok}"


def read_to_close_notify(s, what, limit=10):
    """Read until close_notify; returns the bytes and the seconds it took."""
    t0 = time.monotonic()
    data = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
    except ssl.SSLEOFError:
        raise tglib.TestFailure("%s: TCP EOF without close_notify" % what) from None
    except (ConnectionResetError, BrokenPipeError) as e:
        raise tglib.TestFailure("%s: connection reset instead of close_notify (%s)"
                                % (what, e)) from None
    except socket.timeout:
        raise tglib.TestFailure("%s: no close within %.0fs (hang)" % (what, limit)) from None
    return data, time.monotonic() - t0


def full_backlog_listener(t):
    """A listener that never accepts, with a full accept queue; returns
    (listening socket, filler sockets) or raises TestSkip."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    addr = lsock.getsockname()
    fillers = []
    for _ in range(3):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(addr)
        fillers.append(c)
    time.sleep(0.1)
    probe = socket.socket()
    probe.settimeout(0.3)
    try:
        probe.connect(addr)
        ok = False
    except (socket.timeout, OSError):
        ok = True
    finally:
        probe.close()
    if not ok:
        for c in fillers:
            c.close()
        lsock.close()
        raise tglib.TestSkip("the kernel accepted a connection on a full listen(0) queue: "
                             "cannot provoke an upstream connect timeout on loopback here")
    return lsock, fillers


def main(t):
    pair = t.cert("rsa", "a.test")
    echo = t.upstream("echo")
    # A port that is bound (so nobody else gets it) but not listening: connect -> RST.
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead_addr = "127.0.0.1:%d" % dead.getsockname()[1]
    lsock, fillers = full_backlog_listener(t)
    full_addr = "127.0.0.1:%d" % lsock.getsockname()[1]
    close_up = t.upstream("close")
    reset_up = t.upstream("reset")
    partial_up = t.upstream("partial")
    silent_up = t.upstream("silent")

    for variant in ("software", "deferred"):
        L = tglib.listener
        gw = t.gateway(tglib.gw_config([
            L([pair], echo.addr, variant, name="echo"),
            L([pair], dead_addr, variant, name="refused"),
            L([pair], full_addr, variant, name="full", upstream_extra={"connect_timeout": "500ms"}),
            L([pair], close_up.addr, variant, name="close"),
            L([pair], reset_up.addr, variant, name="reset"),
            L([pair], partial_up.addr, variant, name="partial"),
            L([pair], silent_up.addr, variant, name="silent"),
        ], limits={"idle_timeout": "1s"}))

        def client(name, version=None):
            return tglib.tls_connect(gw.ports[name], tglib.client_ctx(version), timeout=10,
                                     strict_eof=True)

        for version in ("1.2", "1.3"):
            with t.case("%s TLS %s: upstream refused -> close_notify" % (variant, version)):
                before = tglib.snapshot(gw)
                with client("refused", version) as s:
                    data, _ = read_to_close_notify(s, "refused upstream")
                check_eq(data, b"", "no data from a refused upstream")
                tglib.expect_delta(gw, before, {
                    OK_HS: 1, "tlsgate_upstream_connects_total{result=refused}": 1,
                    "tlsgate_connections_closed_total{reason=upstream_connect_failed}": 1},
                    "refused")

        with t.case("%s: upstream connect timeout (full accept queue, 500ms)" % variant):
            before = tglib.snapshot(gw)
            t0 = time.monotonic()  # before the handshake: the connect starts after it
            with client("full") as s:
                data, _ = read_to_close_notify(s, "connect timeout")
                dt = time.monotonic() - t0
            check_eq(data, b"", "no data")
            check(0.4 <= dt <= 2.5 * tglib.SCALE, "closed after %.2fs, want ~0.5s" % dt)
            tglib.expect_delta(gw, before, {
                OK_HS: 1, "tlsgate_upstream_connects_total{result=timeout}": 1,
                "tlsgate_connections_closed_total{reason=upstream_connect_failed}": 1},
                "connect timeout")

        with t.case("%s: upstream accepts and closes at once (FIN)" % variant):
            before = tglib.snapshot(gw)
            with client("close") as s:
                data, _ = read_to_close_notify(s, "upstream FIN")
            check_eq(data, b"", "no data")
            tglib.expect_delta(gw, before, {
                OK_HS: 1, "tlsgate_upstream_connects_total{result=ok}": 1,
                "tlsgate_connections_closed_total{reason=normal}": 1}, "upstream FIN")

        with t.case("%s: upstream accepts and resets (RST)" % variant):
            before = tglib.snapshot(gw)
            with client("reset") as s:
                data, _ = read_to_close_notify(s, "upstream RST")
            check_eq(data, b"", "no data")
            # If the RST lands before tlsgate saw the connect complete, SO_ERROR
            # reports ECONNRESET and it is (rightly) a failed connect.
            reset_after = {OK_HS: 1, "tlsgate_upstream_connects_total{result=ok}": 1,
                           "tlsgate_upstream_resets_total{}": 1,
                           "tlsgate_connections_closed_total{reason=upstream_error}": 1}
            reset_during = {OK_HS: 1, "tlsgate_upstream_connects_total{result=error}": 1,
                            "tlsgate_connections_closed_total{reason=upstream_connect_failed}": 1}
            tglib.settle(gw)
            d = tglib.delta(before, tglib.snapshot(gw))
            check(d in (reset_after, reset_during),
                  "upstream RST: counter changes %r, want %r or %r" % (d, reset_after, reset_during))

        with t.case("%s: upstream closes while a request is in flight" % variant):
            for name in ("close", "reset"):
                with client(name) as s:
                    try:
                        s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n" * 100)
                    except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
                        pass
                    s.settimeout(10 * tglib.SCALE)
                    try:
                        check_eq(tglib.recv_all(s), b"", "no data (%s)" % name)
                    except (ConnectionResetError, ssl.SSLError):
                        pass  # the request may meet tlsgate's close: a reset is fine here
            tglib.wait_until(lambda: gw.stats()("tlsgate_connections_active") == 0, 10,
                             "connections_active = 0")

        with t.case("%s: upstream sends half a response, then closes" % variant):
            before = tglib.snapshot(gw)
            with client("partial") as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                data, _ = read_to_close_notify(s, "partial response")
            check_eq(data, b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n" + b"x" * 1000,
                     "the partial response, byte for byte")
            tglib.expect_delta(gw, before, {
                OK_HS: 1, "tlsgate_upstream_connects_total{result=ok}": 1,
                "tlsgate_connections_closed_total{reason=normal}": 1}, "partial")

        with t.case("%s: silent upstream + idle_timeout 1s" % variant):
            before = tglib.snapshot(gw)
            with client("silent") as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                data, dt = read_to_close_notify(s, "idle timeout")
            check_eq(data, b"", "no data")
            check(0.9 <= dt <= 2.5 * tglib.SCALE, "closed after %.2fs, want ~1s" % dt)
            tglib.expect_delta(gw, before, {
                OK_HS: 1, "tlsgate_upstream_connects_total{result=ok}": 1,
                "tlsgate_connections_closed_total{reason=idle_timeout}": 1}, "idle timeout")

        with t.case("%s: an active connection outlives idle_timeout" % variant):
            before = tglib.snapshot(gw)
            c = tglib.BioTLS(gw.ports["echo"])
            t0 = time.monotonic()
            n = 0
            while time.monotonic() - t0 < 2.0:
                want = b"ping %d\n" % n
                c.send(want)
                got, closed = c.read_until_close(limit=len(want))
                check(closed is None, "connection closed while active after %.1fs"
                      % (time.monotonic() - t0))
                check_eq(got, want, "echo")
                n += 1
                time.sleep(0.3)
            c.close_notify()  # the upstream sees EOF and sends its trailer
            rest, notify = c.read_until_close()
            c.close()
            check(notify, "close_notify at the end")
            check(rest.startswith(b"\nUPSTREAM-EOF"), "upstream EOF trailer, got %r" % rest[:60])
            tglib.expect_delta(gw, before, {
                OK_HS: 1, "tlsgate_upstream_connects_total{result=ok}": 1,
                "tlsgate_connections_closed_total{reason=normal}": 1}, "active connection")

        with t.case("%s: still serving" % variant):
            tglib.still_serving(gw, port=gw.ports["echo"])
            st = gw.stats()
            check_eq(st("tlsgate_handshakes_total") - st("tlsgate_handshakes_total", result="ok"),
                     0, "no failed handshake in this test")
        gw.stop_ok()

    for c in fillers:
        c.close()
    lsock.close()
    dead.close()


tglib.run(main, timeout=120)
