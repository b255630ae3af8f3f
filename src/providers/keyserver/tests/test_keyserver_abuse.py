#!/usr/bin/env python3
"""The key server survives bad peers while it serves a good gateway.

A gateway (two workers) signs through the key server under tlsgate bench
while other peers, speaking the protocol by hand (tgks.py), misbehave:

  1. garbage: random bytes on 20 connections: each gets an ERROR (when the
     bytes cannot start a frame) and is closed, counted as protocol_error;
  2. half messages: a hello and half a SIGN, then silence, on 10
     connections: closed after request_timeout (5 s here: long enough for
     the flood's writer below, which a loaded machine may leave waiting
     between two halves of a frame), counted;
  3. a flood: 20000 SIGN requests pipelined on one connection that does not
     read its replies: the key server stops reading it (its memory stays
     bounded) and keeps serving the gateway; once the flooder reads, every
     request is answered exactly once;
  4. too many connections: those over max_connections get an ERROR and are
     closed, counted;
  5. a peer whose uid is not allowed (run as nobody; needs root): ERROR
     not_allowed, counted.

The gateway's bench must not lose a single call, and both processes exit 0
(sanitizer and valgrind clean).
"""
import os
import random
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.environ.get("TG_SRC_DIR", os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "../../../..")), "tests", "integration"))
import tglib  # noqa: E402
import tgcluster  # noqa: E402
import tgks  # noqa: E402
from tglib import check, check_eq  # noqa: E402

FLOOD = 1000 if tglib.VALGRIND else 20000
BENCH = 100 if tglib.VALGRIND else 1500


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
    return 0


def main(t):
    ec_cert, ec_key = t.cert("ec", "a.test")
    sock = t.path("keys.sock")
    os.chmod(t.dir, 0o755)  # nobody must reach the socket (case 5)
    ks = tgks.KeyServer(t, tgks.ks_config(
        sock, [(ec_key, ec_cert, None)], allowed_uids=[0], socket_mode="0666",
        max_connections=40, max_in_flight=16, max_queue=64,
        request_timeout="%ds" % int(5 * tglib.SCALE)))
    up = tgcluster.serve(t)
    cfg = tglib.gw_config([tglib.listener([tgks.remote_cert(ec_cert, sock, timeout="10s")],
                                          up.addr)], concurrency=2)
    gw = t.gateway(cfg)
    key_id = tgks.key_id_of_cert(ec_cert)
    bench, bench_out = tgcluster.bench_start(t, gw.port, BENCH, conns=4)

    with t.case("garbage"):
        rnd = random.Random(1234)
        for i in range(20):
            c = tgks.Client(sock)
            if i % 2:
                c.send(tgks.hello())
            junk = bytes(rnd.randrange(256) for _ in range(rnd.randrange(4, 3000)))
            # A first byte that makes the length impossible: always refused.
            c.send(b"\xee" + junk)
            check(c.eof(), "connection %d still open after garbage" % i)
            c.close()

    with t.case("half messages"):
        half = []
        for i in range(10):
            c = tgks.Client(sock)
            c.send(tgks.hello())
            c.read_frame()
            c.send(tgks.sign(1, key_id, bytes(32))[:20 + i])
            half.append(c)
        for c in half:
            err = c.error()
            check(err is not None and "timeout" in err[1], "half message: %r" % (err,))
            check(c.eof(), "half message: still open")
            c.close()

    with t.case("a flood from a peer that does not read"):
        before = rss_kb(ks.pid)
        c = tgks.Client(sock, timeout=120)
        granted = c.hello(max_in_flight=65535)
        check_eq(granted, 16, "granted in flight")
        sent = [0]

        def writer():
            chunk = b"".join(tgks.sign(i + 1, key_id, struct.pack(">I", i) * 8)
                             for i in range(FLOOD))
            c.s.sendall(chunk)
            sent[0] = FLOOD
        w = threading.Thread(target=writer, daemon=True)
        w.start()
        # The key server stops reading this peer (its socket buffers fill):
        # the writer is stuck, and the gateway is still served meanwhile.
        tglib.wait_until(lambda: ks.stats()("tlsgate_keyserver_requests_total", type="sign",
                                            status="ok") > 0, 20, "the flood to start")
        rep = tgcluster.bench(t, gw.port, calls=50, conns=2, name="bench-during-flood")
        check_eq(rep["ok"], 50, "the gateway during the flood: %r" % tgcluster.errors(rep))
        if not tglib.VALGRIND:
            check(w.is_alive(), "the whole flood was taken without reading the replies")
            grew = rss_kb(ks.pid) - before
            check(grew < 64 * 1024, "the key server grew by %d kB under the flood" % grew)
        seen = set()
        while len(seen) < FLOOD:
            ident, status, _ = c.sign_reply()
            check(ident not in seen and 1 <= ident <= FLOOD, "reply id %d" % ident)
            check(status in ("ok", "busy"), "status %s" % status)
            seen.add(ident)
        w.join(30 * tglib.SCALE)
        check_eq(sent[0], FLOOD, "the writer finished")
        c.close()

    with t.case("too many connections"):
        tglib.wait_until(lambda: ks.stats()("tlsgate_keyserver_connections_active") == 2, 20,
                         "only the gateway's connections left")
        conns = [tgks.Client(sock) for _ in range(45)]
        # 40 allowed in all: the gateway's two and 38 of these.
        tglib.wait_until(lambda: ks.stats()("tlsgate_keyserver_connections_refused_total",
                                            reason="max_connections") == 7, 20,
                         "7 refusals")
        tglib.wait_until(lambda: ks.stats()("tlsgate_keyserver_connections_active") == 40, 20,
                         "40 connections")
        refused = 0
        for c in conns:
            c.s.setblocking(False)
            try:
                f = c.read_frame()
            except BlockingIOError:
                continue  # accepted: nothing to read
            check(f is not None and f[0] == tgks.ERROR and tgks.STATUS[f[2][0]] == "limit",
                  "a refused connection's frame: %r" % (f,))
            refused += 1
        check_eq(refused, 7, "connections told they are over max_connections")
        for c in conns:
            c.close()

    with t.case("a uid that is not allowed"):
        if os.geteuid() != 0:
            print("    (not root: skipped)")
        else:
            script = ("import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(%r)\n"
                      "sys.stdout.write(s.recv(200)[12:].decode('latin1'))\n" % sock)
            r = t.run_cmd(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
                           sys.executable, "-c", script])
            out = r.stdout.decode("latin1")
            check(r.returncode == 0 and "uid 65534" in out and "not allowed" in out,
                  "nobody's connection: %r %r" % (out, r.stderr[-300:]))

    with t.case("the gateway lost nothing; counters"):
        rep = tgcluster.bench_finish(bench, bench_out, timeout=300)
        check_eq(rep["ok"], BENCH, "bench: %r" % tgcluster.errors(rep))
        st = ks.stats()
        check(st("tlsgate_keyserver_connections_closed_total", reason="protocol_error") >= 20,
              "garbage closes counted")
        check_eq(st("tlsgate_keyserver_connections_closed_total", reason="request_timeout"), 10,
                 "half messages counted")
        check_eq(st("tlsgate_keyserver_connections_refused_total", reason="max_connections"), 7,
                 "refusals counted")
        if os.geteuid() == 0:
            check_eq(st("tlsgate_keyserver_connections_refused_total", reason="not_allowed"), 1,
                     "not allowed counted")
        tglib.wait_until(lambda: ks.stats()("tlsgate_keyserver_connections_active") == 2, 20,
                         "only the gateway's connections left")
        gst = gw.stats()
        check_eq(gst("tlsgate_keyserver_client_failures_total"), 0, "gateway failures")
        check_eq(gst("tlsgate_keyserver_client_connects_total"), 2, "no reconnect needed")

    with t.case("clean exits"):
        gw.stop_ok()
        ks.stop_ok()


if __name__ == "__main__":
    tglib.run(main, timeout=560 if tglib.VALGRIND else 240)
