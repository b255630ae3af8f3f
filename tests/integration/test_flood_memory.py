#!/usr/bin/env python3
"""An idle flood leaves no memory behind.

One gateway (software provider, one worker). After a warm-up its resident
memory (VmRSS) is the baseline. A flood of idle connections is opened and
held until /stats counts every one of them open:
  - SILENT connections that send nothing,
  - HELLO connections mid-handshake (a ClientHello sent, the server's whole
    flight read, no Finished),
  - ESTABLISHED idle TLS connections (handshake done, upstream connected);
then all are reset at once. Once /stats counts 0 open connections, RSS must
come back within BOUND_MIB of the baseline (polled: the gateway gives the
memory back from its housekeeping, a few seconds later). Twice, so that a
second flood does not grow it either.

Before the fix, every connection got its SSL object and libssl's buffers at
accept (~42 KiB for one that never sends a byte) and the freed memory stayed
in the worker's malloc arena: RSS stayed ~100 MiB above the baseline after
the first flood and grew with the second.

Skipped under valgrind and the sanitizers (their allocators are not glibc's).
The descriptors it needs (SILENT + HELLO + 2 * ESTABLISHED in the gateway)
are within the soft limit it raises to 4096; with a lower hard limit the
flood is smaller.
"""
import os
import resource
import socket
import ssl
import struct

import tglib
from tglib import check

SILENT, HELLO, ESTABLISHED = 2000, 400, 300
BOUND_MIB = 8


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise tglib.TestFailure("no VmRSS for pid %d" % pid)


def sanitized(path):
    with open(path, "rb") as f:
        data = f.read()
    return b"__asan_init" in data or b"__tsan_init" in data


def client_hello(ctx):
    """A real ClientHello from Python's ssl, out of a memory BIO."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="a.test")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def flood(gw, silent, hello, established):
    """Open the connections; returns the sockets once /stats counts them."""
    socks = []
    for _ in range(silent):
        socks.append(socket.create_connection(("127.0.0.1", gw.port), timeout=30 * tglib.SCALE))
    ctx = tglib.client_ctx()
    for _ in range(hello):
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=30 * tglib.SCALE)
        s.sendall(client_hello(ctx))
        check(s.recv(1), "no answer to a ClientHello")  # the server's flight is on its way
        socks.append(s)
    for _ in range(established):
        socks.append(tglib.tls_connect(gw.port))
    total = silent + hello + established
    tglib.wait_until(lambda: gw.stats()("tlsgate_connections_active") == total, 60,
                     "%d connections open" % total)
    return socks


def close_all(gw, socks):
    for s in socks:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    tglib.wait_until(lambda: gw.stats()("tlsgate_connections_active") == 0, 60,
                     "every connection closed")


def main(t):
    if tglib.VALGRIND:
        raise tglib.TestSkip("RSS under valgrind measures valgrind")
    if sanitized(tglib.tlsgate_path()):
        raise tglib.TestSkip("RSS with a sanitizer's allocator is not what this measures")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))  # the gateway inherits it
    silent = min(SILENT, want - HELLO - 2 * ESTABLISHED - 300)
    if silent < 1000:
        raise tglib.TestSkip("descriptor limit %d too low for the flood" % want)

    up = t.upstream("echo")
    pair = t.cert("rsa", "a.test")
    gw = t.gateway(tglib.gw_config(
        [tglib.listener([pair], up.addr, "software", tls={"session_resumption": False})],
        limits={"max_connections": 10000, "handshake_timeout": "600s",
                "first_byte_timeout": "600s", "idle_timeout": "600s"}))
    pid = gw.pid
    # Warm-up: the first handshakes and proxied bytes make their one-time
    # allocations (OpenSSL's caches, the buffer pool).
    for _ in range(20):
        tglib.still_serving(gw)
    tglib.settle(gw)
    base = rss_kib(pid)
    print("    baseline RSS %d KiB" % base)

    for round_ in (1, 2):
        with t.case("flood %d: %d silent, %d mid-handshake, %d established; all closed"
                    % (round_, silent, HELLO, ESTABLISHED)):
            socks = flood(gw, silent, HELLO, ESTABLISHED)
            held = rss_kib(pid)
            close_all(gw, socks)
            after = [rss_kib(pid)]

            def back():
                after.append(rss_kib(pid))
                return after[-1] <= base + BOUND_MIB * 1024

            try:
                tglib.wait_until(back, 30, "RSS back near its baseline", interval=0.25)
            finally:
                print("    RSS: baseline %d KiB, held %d KiB (+%.1f MiB), after close %d KiB "
                      "(+%.1f MiB), last %d KiB (+%.1f MiB)"
                      % (base, held, (held - base) / 1024, after[0], (after[0] - base) / 1024,
                         after[-1], (after[-1] - base) / 1024))
            tglib.still_serving(gw)
    st = gw.stats()
    check(st("tlsgate_memory_trims_total") >= 1, "no heap trim counted")
    gw.stop_ok()


tglib.run(main, timeout=300)
