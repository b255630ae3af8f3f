#!/usr/bin/env python3
"""Connection limits an idle flood cannot use to lock everyone out.

  - max_connections 40, one worker and two: 40 silent connections fill it;
    legitimate clients still get served, each closing the connection heard
    from longest ago (reason="evicted", the flood's first one first); nothing
    refused; the max_connections warning is logged once per 10 s, not once
    per eviction.
  - max_connections_per_source 3: a 4th connection from 127.0.0.2 is refused
    at accept, 127.0.0.1 is not affected, a closed one makes room; on a
    proxy_protocol listener the source is the header's (198.51.100.7 refused
    at its 4th, 198.51.100.8 accepted).
  - first_byte_timeout 1s with handshake_timeout 600s: a silent connection
    is closed (reason="first_byte_timeout"), one that has sent half a
    ClientHello stays; also after a PROXY header.
  - out of descriptors (RLIMIT_NOFILE 64): accept pauses every 100 ms
    (tlsgate_accept_pauses_total), the warning is logged once per 10 s.
Every wait is on a condition with a generous deadline; the only timing
checked is that warnings are not more frequent than one per 10 s (their
count is bounded by the time that really elapsed).
"""
import os
import resource
import socket
import time

import tglib
from tglib import check, check_eq

CLOSED = "tlsgate_connections_closed_total"
REJECTED = "tlsgate_connections_rejected_total"


def echo_conn(port, msg=b"ping\n", timeout=10):
    """An established TLS connection that has echoed msg (left open)."""
    s = tglib.tls_connect(port, timeout=timeout)
    s.sendall(msg)
    got = b""
    while len(got) < len(msg):
        d = s.recv(100)
        check(d, "closed before the echo")
        got += d
    check_eq(got, msg, "echo")
    return s


def served(port):
    """A client gets through: handshake and a round trip."""
    echo_conn(port).close()
    return True


def ended(s):
    """The socket sees EOF or a reset (non-blocking look)."""
    s.setblocking(False)
    try:
        return s.recv(100) == b""
    except BlockingIOError:
        return False
    except (ConnectionResetError, OSError):
        return True
    finally:
        s.setblocking(True)


def silent(port, src=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if src:
        s.bind((src, 0))
    s.settimeout(10 * tglib.SCALE)
    s.connect(("127.0.0.1", port))
    return s


def warnings(gw, text):
    return sum(1 for line in gw.log().splitlines() if text in line)


def at_most_one_per_10s(gw, text, since):
    n = warnings(gw, text)
    allowed = 1 + int((time.monotonic() - since) // 10)
    check(1 <= n <= allowed, "%d '%s' warning(s) in %.1fs (at most %d)"
          % (n, text, time.monotonic() - since, allowed))


def eviction(t, up, pair, workers):
    with t.case("max_connections 40, %d worker(s): a silent flood does not lock clients out"
                % workers):
        gw = t.gateway(tglib.gw_config(
            [tglib.listener([pair], up.addr)], concurrency=workers,
            limits={"max_connections": 40, "first_byte_timeout": "600s",
                    "handshake_timeout": "600s"}))
        t0 = time.monotonic()
        flood = []
        for i in range(40):
            flood.append(silent(gw.port))
            tglib.wait_until(lambda: gw.stats()("tlsgate_connections_active") == i + 1, 10,
                             "%d connections open" % (i + 1))
        # Clients that stay: each one needs a place.
        clients = [echo_conn(gw.port) for _ in range(8)]
        st = gw.stats()
        check_eq(st(REJECTED, reason="max_connections"), 0, "refused connections")
        check_eq(st(CLOSED, reason="evicted"), 8, "evicted connections")
        check_eq(st("tlsgate_handshakes_total", result="ok"), 8, "handshakes")
        if workers == 1:
            # The 8 heard from longest ago: the flood's first 8.
            for i, s in enumerate(flood[:8]):
                tglib.wait_until(lambda: ended(s), 10, "flood connection %d closed" % i)
            check(not any(ended(s) for s in flood[8:]), "a newer flood connection was closed")
        at_most_one_per_10s(gw, "limits.max_connections (40) reached", t0)
        for s in flood + clients:
            s.close()
        tglib.settle(gw)
        gw.stop_ok()


def per_source(t, up, pair):
    with t.case("max_connections_per_source 3: the 4th from 127.0.0.2 refused, others not"):
        gw = t.gateway(tglib.gw_config(
            [tglib.listener([pair], up.addr)],
            limits={"max_connections_per_source": 3, "first_byte_timeout": "600s"}))
        t0 = time.monotonic()
        held = [silent(gw.port, "127.0.0.2") for _ in range(3)]
        tglib.wait_until(lambda: gw.stats()("tlsgate_connections_active") == 3, 10,
                         "3 connections open")
        extra = silent(gw.port, "127.0.0.2")
        tglib.wait_until(lambda: ended(extra), 10, "the 4th connection from 127.0.0.2 closed")
        extra.close()
        st = gw.stats()
        check_eq(st(REJECTED, reason="max_connections_per_source"), 1, "refused per source")
        check_eq(st("tlsgate_connections_accepted_total"), 3, "accepted")
        check(served(gw.port), "127.0.0.1 not served")
        # One of 127.0.0.2's closes: room for one more, not two.
        held.pop().close()
        tglib.wait_until(lambda: gw.stats()("tlsgate_connections_active") == 2, 10,
                         "2 connections open")
        held.append(silent(gw.port, "127.0.0.2"))
        tglib.wait_until(lambda: gw.stats()("tlsgate_connections_active") == 3, 10,
                         "3 connections open again")
        extra = silent(gw.port, "127.0.0.2")
        tglib.wait_until(lambda: ended(extra), 10, "a 4th from 127.0.0.2 closed again")
        extra.close()
        check_eq(gw.stats()(REJECTED, reason="max_connections_per_source"), 2,
                 "refused per source")
        at_most_one_per_10s(gw, "limits.max_connections_per_source (3) reached by 127.0.0.2", t0)
        for s in held:
            s.close()
        tglib.settle(gw)
        gw.stop_ok()

    with t.case("max_connections_per_source 3 behind a load balancer: the PROXY header's source"):
        lst = tglib.listener([pair], up.addr)
        lst["proxy_protocol"] = True
        gw = t.gateway(tglib.gw_config(
            [lst], limits={"max_connections_per_source": 3, "first_byte_timeout": "600s"}))

        def via_lb(src):
            s = silent(gw.port)
            s.sendall(b"PROXY TCP4 %s 203.0.113.1 4242 443\r\n" % src)
            return s
        held = [via_lb(b"198.51.100.7") for _ in range(3)]
        tglib.wait_until(lambda: gw.stats()("tlsgate_proxy_protocol_headers_total",
                                            version="1") == 3, 10, "3 headers read")
        extra = via_lb(b"198.51.100.7")
        tglib.wait_until(lambda: ended(extra), 10, "a 4th from 198.51.100.7 closed")
        extra.close()
        held.append(via_lb(b"198.51.100.8"))
        tglib.wait_until(lambda: gw.stats()("tlsgate_proxy_protocol_headers_total",
                                            version="1") == 5, 10, "5 headers read")
        st = gw.stats()
        check_eq(st(REJECTED, reason="max_connections_per_source"), 1, "refused per source")
        check_eq(st(CLOSED, reason="max_connections_per_source"), 1, "closed per source")
        check_eq(st("tlsgate_connections_active"), 4, "open connections")
        check(not any(ended(s) for s in held), "a held connection was closed")
        for s in held:
            s.close()
        tglib.settle(gw)
        gw.stop_ok()


def first_byte(t, up, pair):
    with t.case("first_byte_timeout 1s, handshake_timeout 600s: silence closed, a start kept"):
        lpp = tglib.listener([pair], up.addr, name="pp")
        lpp["proxy_protocol"] = True
        gw = t.gateway(tglib.gw_config(
            [tglib.listener([pair], up.addr), lpp],
            limits={"first_byte_timeout": "1s", "handshake_timeout": "600s"}))
        pp_port = gw.ports["pp"]
        quiet = silent(gw.port)
        started = silent(gw.port)
        ch = tglib.client_hello()
        started.sendall(ch[:len(ch) // 2])
        after_header = silent(pp_port)
        after_header.sendall(b"PROXY TCP4 198.51.100.7 203.0.113.1 4242 443\r\n")
        tglib.wait_until(lambda: ended(quiet) and ended(after_header), 30,
                         "the silent connections closed")
        st = gw.stats()
        check_eq(st(CLOSED, reason="first_byte_timeout"), 2, "closed at first_byte_timeout")
        check_eq(st(CLOSED, reason="handshake_timeout"), 0, "closed at handshake_timeout")
        check_eq(st("tlsgate_handshakes_total", result="timeout"), 2, "handshake timeouts")
        check(not ended(started), "the connection that started its ClientHello was closed")
        check_eq(st("tlsgate_connections_active"), 1, "open connections")
        for s in (quiet, started, after_header):
            s.close()
        tglib.settle(gw)
        check(served(gw.port), "not served")
        gw.stop_ok()


def descriptors(t, up, pair):
    if tglib.VALGRIND:
        print("--- out of descriptors: skipped under valgrind (it keeps descriptors of its own)")
        return
    with t.case("out of descriptors: accept pauses, one warning per 10 s"):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        try:
            gw = t.gateway(tglib.gw_config(
                [tglib.listener([pair], up.addr)],
                limits={"first_byte_timeout": "600s", "handshake_timeout": "600s"}), wait=False)
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        gw.wait_ready()
        t0 = time.monotonic()
        flood = [silent(gw.port) for _ in range(100)]
        # /stats cannot answer now (no descriptor for it): watch the log and
        # the gateway's descriptors instead.
        tglib.wait_until(lambda: "pausing accept" in gw.log(), 30, "the first accept pause")
        tglib.wait_until(lambda: len(os.listdir("/proc/%d/fd" % gw.pid)) >= 60, 30,
                         "the gateway at its descriptor limit")
        # Stay out of descriptors for a while (accept retries every 100 ms);
        # the check below holds for whatever time really passed.
        t_full = time.monotonic()
        tglib.wait_until(lambda: time.monotonic() - t_full >= 1.5, 10, "1.5 s at the limit")
        for s in flood:
            s.close()
        tglib.wait_until(lambda: served(gw.port), 30, "served again")
        pauses = gw.stats()("tlsgate_accept_pauses_total")
        print("    %d accept pause(s) in %.1fs" % (pauses, time.monotonic() - t0))
        check(pauses >= 1, "no accept pause counted")
        at_most_one_per_10s(gw, "pausing accept for 100ms", t0)
        gw.stop_ok()


def main(t):
    up = t.upstream("echo")
    pair = t.cert("rsa", "a.test")
    eviction(t, up, pair, 1)
    eviction(t, up, pair, 2)
    per_source(t, up, pair)
    first_byte(t, up, pair)
    descriptors(t, up, pair)


tglib.run(main, timeout=240)
