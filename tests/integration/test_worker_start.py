#!/usr/bin/env python3
"""A worker that cannot start fails the start-up.

The deferred provider's `fail_worker_init: N` makes worker N's per-worker
provider initialisation fail, as a device provider's can (no instance left
for that thread, pinned memory refused). Each worker has its own
SO_REUSEPORT socket: a worker that does not run must not keep one (the
kernel would hand it a share of the new connections that nobody accepts),
and /ready must not say 200 while not every worker serves.

  - concurrency 2, worker 1 fails: tlsgate logs why (the provider, the
    worker, then that it stops), never logs "ready", /ready is never 200
    while it runs (polled until it exits), and it exits with status 1;
  - concurrency 1, its only worker fails: the same;
  - concurrency 2, fail_worker_init names a worker that does not exist:
    both start, /ready is 200, it serves, and it stops with status 0.
"""
import re

import tglib
from tglib import check, check_eq


def config(pair, up, workers, fail_worker):
    prov = tglib.provider("deferred", fail_worker_init=fail_worker)
    return tglib.gw_config([tglib.listener([tglib.cert_entry(pair[0], pair[1], prov)], up.addr)],
                           concurrency=workers)


def admin_port(gw):
    m = re.search(r"admin: listening on \S+ \(port (\d+)\)", gw.log())
    return int(m.group(1)) if m else None


def failed_start(t, pair, up, workers, fail_worker):
    gw = t.gateway(config(pair, up, workers, fail_worker), wait=False)
    statuses = set()

    def exited():
        if gw.admin_port is None:
            gw.admin_port = admin_port(gw)
        if gw.admin_port is not None and gw.alive():
            st, _ = gw.http_admin("/ready")
            statuses.add(st)  # None once it no longer listens
        return not gw.alive()
    tglib.wait_until(exited, 20, "tlsgate to exit")
    rc = gw.wait(5)
    if rc == 99 and tglib.VALGRIND:
        raise tglib.TestFailure("valgrind reported errors or definite leaks (exit 99)")
    check_eq(rc, 1, "exit status")
    log = gw.log()
    check("worker %d: provider 'deferred' failed to start" % fail_worker in log,
          "the log names the provider and the worker")
    check("worker %d cannot start its key providers" % fail_worker in log,
          "the log says the worker cannot start")
    check(re.search(r"1 of %d worker\(s\) stopped without being asked .*tlsgate stops "
                    r"\(exit status 1\)" % workers, log), "the log says tlsgate stops, and why")
    check(not re.search(r"tlsgate \S+ ready", log), "'ready' logged by a gateway that failed")
    check(200 not in statuses, "/ready said 200 while a worker had not started (%r)" % statuses)


def main(t):
    up = t.upstream("http")
    pair = t.cert("rsa", "a.test")
    with t.case("concurrency 2, worker 1 cannot start: exit status 1, never ready"):
        failed_start(t, pair, up, 2, 1)
    with t.case("concurrency 1, its worker cannot start: exit status 1, never ready"):
        failed_start(t, pair, up, 1, 0)
    with t.case("fail_worker_init names no existing worker: both start and serve"):
        gw = t.gateway(config(pair, up, 2, 5))
        check_eq(gw.http_admin("/ready")[0], 200, "/ready")
        st, body, _ = tglib.http_request(gw.port, path="/x")
        check_eq(st, 200, "a request through the gateway")
        gw.stop_ok()


tglib.run(main, timeout=120)
