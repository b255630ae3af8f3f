#!/usr/bin/env python3
"""Graceful shutdown (SIGTERM and SIGINT), software and deferred providers.
  - no connection open: exits 0 at once;
  - open connections (echo upstream), drain_timeout 2s: after the signal
    /ready answers 503, new connections are refused, the open ones keep
    working; the clients that finish are closed normally; the one that stays
    is closed at the drain timeout with a close_notify (reason "shutdown");
    exit status 0, about 2 s after the signal;
  - every client finishes early: exit well before a 30 s drain_timeout;
  - a second SIGTERM during the drain stops at once.
"""
import signal
import socket
import time

import tglib
from tglib import check, check_eq


def echo(c, msg):
    c.send(msg)
    got, closed = c.read_until_close(limit=len(msg))
    check(closed is None, "connection closed during the drain")
    check_eq(got, msg, "echo during the drain")


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return False
    except (ConnectionRefusedError, ConnectionResetError):
        return True


def main(t):
    up = t.upstream("echo")
    pair = t.cert("rsa", "a.test")
    sigs = (("SIGTERM", signal.SIGTERM), ("SIGINT", signal.SIGINT))

    def gateway(variant, drain):
        return t.gateway(tglib.gw_config([tglib.listener([pair], up.addr, variant)],
                                         limits={"drain_timeout": drain}))

    for variant in ("software", "deferred"):
        for signame, sig in sigs:
            with t.case("%s %s: no connection open" % (variant, signame)):
                gw = gateway(variant, "30s")
                t0 = time.monotonic()
                gw.stop_ok(sig, timeout=10)
                check(time.monotonic() - t0 < 5 * tglib.SCALE, "slow exit without connections")

            with t.case("%s %s: drain with open connections, drain_timeout 2s" % (variant, signame)):
                gw = gateway(variant, "2s")
                clients = [tglib.BioTLS(gw.port) for _ in range(3)]
                for i, c in enumerate(clients):
                    echo(c, b"before %d\n" % i)
                t0 = time.monotonic()
                gw.signal(sig)
                tglib.wait_until(lambda: gw.http_admin("/ready")[0] == 503, 2, "/ready = 503")
                tglib.wait_until(lambda: refused(gw.port), 2, "the listener to close")
                for i, c in enumerate(clients):
                    echo(c, b"during %d\n" % i)
                # Two clients finish: close_notify; the upstream answers with its trailer.
                for c in clients[:2]:
                    c.close_notify()
                    rest, notify = c.read_until_close()
                    check(notify and rest.startswith(b"\nUPSTREAM-EOF"),
                          "a finishing client during the drain: %r %r" % (notify, rest[:40]))
                    c.close()
                # The third stays until the drain timeout closes it with a close_notify.
                rest, notify = clients[2].read_until_close()
                dt = time.monotonic() - t0
                clients[2].close()
                check_eq(rest, b"", "no data at the drain timeout")
                check(notify, "close_notify at the drain timeout")
                check(1.8 <= dt <= 5 * tglib.SCALE, "closed %.1fs after the signal, want ~2s" % dt)
                rc = gw.wait(10)
                check_eq(rc, 0, "exit status")
                check(time.monotonic() - t0 < 6 * tglib.SCALE, "slow exit after the drain timeout")
                log = gw.log()
                check("draining 3 connection(s)" in log, "drain logged with 3 connections")
                check("drain timeout: closing 1 remaining connection(s)" in log,
                      "one connection left at the drain timeout")
                gw.stop_ok()

        with t.case("%s: every client finishes early: exit before drain_timeout 30s" % variant):
            gw = gateway(variant, "30s")
            clients = [tglib.BioTLS(gw.port) for _ in range(2)]
            for c in clients:
                echo(c, b"x\n")
            t0 = time.monotonic()
            gw.signal(signal.SIGTERM)
            tglib.wait_until(lambda: gw.http_admin("/ready")[0] == 503, 2, "/ready = 503")
            time.sleep(0.3)
            check(gw.alive(), "exited while connections were open")
            for c in clients:
                c.close_notify()
                c.read_until_close()
                c.close()
            rc = gw.wait(10)
            check_eq(rc, 0, "exit status")
            check(time.monotonic() - t0 < 5 * tglib.SCALE, "waited for the drain timeout")
            gw.stop_ok()

        with t.case("%s: a second SIGTERM during the drain stops at once" % variant):
            gw = gateway(variant, "30s")
            c = tglib.BioTLS(gw.port)
            echo(c, b"x\n")
            gw.signal(signal.SIGTERM)
            tglib.wait_until(lambda: gw.http_admin("/ready")[0] == 503, 2, "/ready = 503")
            # Wait for the worker itself to be draining: a second signal that
            # arrives before the worker handled the first is lost today (both
            # stop requests are one coalesced ev_async; see README.md, bugs).
            tglib.wait_until(lambda: "draining 1 connection(s)" in gw.log(), 5,
                             "the worker to start draining")
            t0 = time.monotonic()
            gw.signal(signal.SIGTERM)
            rc = gw.wait(10)
            check_eq(rc, 0, "exit status after a second SIGTERM")
            check(time.monotonic() - t0 < 3 * tglib.SCALE, "a second SIGTERM did not stop at once")
            rest, notify = c.read_until_close()
            c.close()
            check(notify, "close_notify to the open client")
            check("stopping now" in gw.log(), "second signal logged")
            gw.stop_ok()


tglib.run(main, timeout=120)
