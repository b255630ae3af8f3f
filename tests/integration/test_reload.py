#!/usr/bin/env python3
"""Certificate rotation under load: nothing dropped.

`tlsgate bench -c 64 --keepalive=false` (a new TLS connection per call) runs
for the whole test against two workers and a listener served by the
asynchronous `deferred` provider, while the certificate is rotated 20 times (a new key and serial
each time), four ways in turn:

  1. SIGHUP, after pointing the configuration at a new file;
  2. a new combined certificate+key file renamed over the watched one
     (certbot, cert-manager, mv): reload.watch picks it up, no signal;
  3. `tlsgate reload` (the pid file), after pointing the configuration at a
     Kubernetes-style Secret directory;
  4. that directory's `..data` symlink swapped atomically to a new version,
     as the kubelet does (the files tlsgate opened never change).

Each step changes only files that are not watched at that moment, or exactly
one watched name, so each makes exactly one reload: the test waits for
tlsgate_config_reloads_total{result="ok"} to move by one (and fails if
{result="error"} moves), then `openssl s_client` must be served the new
serial. A proxied keep-alive connection opened before the first reload
still passes a request after the last. At the end: bench counted no failed
call, the old generations are all freed once the long connection closes,
/stats shows one certificate (the current serial), SIGTERM exits 0 and the
pid file is gone.

TG_RELOADS sets the number of reloads (default 20; 8 under valgrind, with 8
client connections instead of 64).
"""
import json
import os
import re
import signal

import tglib
import tg_reload as R
from tglib import check, check_eq

RELOADS = int(os.environ.get("TG_RELOADS") or (8 if tglib.VALGRIND else 20))
CONNS = 8 if tglib.VALGRIND else 64


def config(up, cert, key):
    return """concurrency: 2
admin: { address: 127.0.0.1:0 }
reload: { watch: true, debounce: 200ms }
listeners:
  - name: l0
    address: 127.0.0.1:0
    tls:
      certificates:
        - certificate_chain: { filename: %s }
          private_key: { filename: %s }
          private_key_provider: { provider_name: deferred }
    upstream: { address: %s }
""" % (cert, key, up)


def http_get(s):
    """One keep-alive GET on an open TLS socket; the response body."""
    s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        d = s.recv(4096)
        check(d, "the long-lived connection closed (got %r)" % data[:80])
        data += d
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.search(rb"Content-Length: (\d+)", head)
    check(head.startswith(b"HTTP/1.1 200") and m, "bad response %r" % head[:80])
    while len(body) < int(m.group(1)):
        body += s.recv(4096)
    return body


def main(t):
    up = t.spawn("upstream", R.tlsgate_cmd("bench", "--serve", "127.0.0.1:0"))
    m = tglib.wait_until(lambda: re.search(r"serving on (\S+)", up.log()), 10, "the upstream")
    upstream = m.group(1)

    watched = t.path("watched")      # combined cert+key, replaced by rename
    secret = t.path("secret")        # a Kubernetes Secret volume
    staging = t.path("staging")      # where new pairs are made (never watched)
    os.makedirs(watched)
    os.makedirs(secret)
    state = {"n": 0, "ts": None}

    def fresh_pair():
        state["n"] += 1
        return R.new_cert(t, staging, "pair-%d" % state["n"])

    def secret_version(cert, key):
        """Write a new ..<version> directory in the Secret and swap ..data to it."""
        ts = "..v%d" % state["n"]
        os.makedirs(os.path.join(secret, ts))
        for src, name in ((cert, "tls.crt"), (key, "tls.key")):
            with open(src, "rb") as f, open(os.path.join(secret, ts, name), "wb") as g:
                g.write(f.read())
        os.symlink(ts, os.path.join(secret, "..data_tmp"))
        os.rename(os.path.join(secret, "..data_tmp"), os.path.join(secret, "..data"))
        for name in ("tls.crt", "tls.key"):
            link = os.path.join(secret, name)
            if not os.path.islink(link):
                os.symlink(os.path.join("..data", name), link)
        old, state["ts"] = state["ts"], ts
        return old

    def drop_version(ts):
        """The kubelet removes the old version after the swap; here only once
        the reload has been counted, when it is no longer watched."""
        if ts:
            for name in ("tls.crt", "tls.key"):
                os.unlink(os.path.join(secret, ts, name))
            os.rmdir(os.path.join(secret, ts))

    def combined(cert, key):
        with open(cert) as f, open(key) as g:
            return f.read() + g.read()

    # Start on the Secret layout.
    cert, key, serial = fresh_pair()
    secret_version(cert, key)
    k_crt, k_key = os.path.join(secret, "tls.crt"), os.path.join(secret, "tls.key")
    w_pem = os.path.join(watched, "tls.pem")
    gw = t.gateway(config(upstream, k_crt, k_key))
    port = gw.port
    check_eq(R.served_serial(t, port), serial, "initial serial")

    with t.case("a keep-alive connection opened before the reloads"):
        long_conn = tglib.tls_connect(port)
        check(b"hello" in http_get(long_conn), "first request on the long-lived connection")

    jpath = t.path("bench.json")
    bench = t.spawn("bench", R.tlsgate_cmd(
        "bench", "-c", str(CONNS), "--keepalive=false", "-t", "0", "-k", "--quiet",
        "--timeout", "%ds" % int(30 * tglib.SCALE), "--json", jpath,
        "https://127.0.0.1:%d/" % port))
    tglib.wait_until(lambda: gw.stats()("tlsgate_handshakes_total", result="ok") >= 50, 30,
                     "bench to be under way")

    kinds = ("SIGHUP", "rename over the watched file", "tlsgate reload",
             "Kubernetes ..data swap")
    for i in range(RELOADS):
        kind = kinds[i % 4]
        with t.case("reload %d/%d: %s" % (i + 1, RELOADS, kind)):
            before = R.reloads(gw)
            cert, key, serial = fresh_pair()
            dropped = None
            if i % 4 == 0:
                # The Secret is watched now; W is not: write there, point the
                # configuration at it, then signal.
                R.write_atomic(w_pem, combined(cert, key))
                R.write_atomic(gw.cfg_path, config(upstream, w_pem, w_pem))
                gw.signal(signal.SIGHUP)
            elif i % 4 == 1:
                R.write_atomic(w_pem, combined(cert, key))
            elif i % 4 == 2:
                dropped = secret_version(cert, key)  # not watched now
                R.write_atomic(gw.cfg_path, config(upstream, k_crt, k_key))
                R.run_reload_cmd(t, gw)
            else:
                dropped = secret_version(cert, key)
            R.wait_reload(gw, before, kind)
            drop_version(dropped)
            check_eq(R.served_serial(t, port), serial, "serial served after the reload")
            check(bench.alive(), "bench is still running")

    with t.case("the long-lived connection still works"):
        check(b"hello" in http_get(long_conn), "a request after %d reloads" % RELOADS)

    with t.case("bench: no failed call"):
        bench.signal(signal.SIGINT)
        check_eq(bench.wait(60), 0, "bench exit status")
        with open(jpath) as f:
            j = json.load(f)
        print("    bench: %d calls, %d ok, %d errors, during %d reloads"
              % (j["calls"], j["ok"], j["errors"]["total"], RELOADS), flush=True)
        if j["errors"]["total"] != 0:
            print("    first errors: %r" % (j.get("first_errors"),))
        check_eq(j["errors"]["total"], 0, "failed calls")
        check_eq(j["ok"], j["calls"], "ok calls")
        check(j["calls"] >= RELOADS, "calls made during the reloads")

    with t.case("old generations are freed; /stats shows the current certificate"):
        long_conn.close()
        st = gw.stats()
        check_eq(int(st("tlsgate_config_reloads_total", result="ok")), RELOADS, "reloads ok")
        check_eq(int(st("tlsgate_config_reloads_total", result="error")), 0, "reloads failed")
        check_eq(int(st("tlsgate_config_generation")), RELOADS + 1, "generation")
        tglib.wait_until(lambda: gw.stats()("tlsgate_config_generations_active") == 1, 30,
                         "every old generation to be freed")
        series = R.cert_series(gw)
        check_eq(len(series), 1, "certificate series")
        check_eq(series[0][0], {"listener": "l0", "names": "a.test", "serial": serial},
                 "certificate labels")
        check_eq(int(st("tlsgate_handshakes_total", result="key_operation_failed")), 0,
                 "key operations failed")

    with t.case("SIGTERM: exit 0, pid file removed"):
        check(os.path.exists(gw.pid_path), "pid file while running")
        gw.stop_ok()
        check(not os.path.exists(gw.pid_path), "pid file removed at exit")


tglib.run(main, timeout=300)
