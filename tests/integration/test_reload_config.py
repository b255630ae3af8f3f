#!/usr/bin/env python3
"""Reload: what fails and what changes.

Failed reloads keep the running configuration serving and are reported
(a log line `reload failed: FILE:LINE:COL: path: message`, and
tlsgate_config_reloads_total{result="error"}):
  - a broken certificate renamed over the watched file (no signal);
  - a key that does not match its certificate;
  - a YAML error;
  - settings that need a restart (concurrency, the admin address), even
    together with a new certificate: nothing of it applies.
Then what a reload changes, each through SIGHUP:
  - a listener added (serves at once), changed (new upstream, same socket;
    a new address: new port serves, old port refuses, a connection opened
    before still works), removed (its port refuses, its open connection
    finishes, the old generations are then freed);
  - the key provider: software -> deferred -> cryptomb (fallback: true, so
    software where cryptomb cannot run);
  - the pid file: a second `tlsgate run` with it is refused while the first
    runs; `tlsgate reload` without a live holder fails; removed at exit.
"""
import os
import re
import signal
import socket

import tglib
import tg_reload as R
from tglib import check, check_eq


def listener_yaml(name, addr, cert, key, up, provider="{ provider_name: software }"):
    return """  - name: %s
    address: %s
    tls:
      certificates:
        - certificate_chain: { filename: %s }
          private_key: { filename: %s }
          private_key_provider: %s
    upstream: { address: %s }
""" % (name, addr, cert, key, provider, up)


def config(listeners, head="concurrency: 1\nadmin: { address: 127.0.0.1:0 }\n"):
    return head + "reload: { watch: true, debounce: 100ms }\nlisteners:\n" + "".join(listeners)


def last_port(gw, name):
    """The port of listener `name` from the last line that opened it."""
    ports = re.findall(r"listener %s: listening on \S+:(\d+)," % re.escape(name), gw.log())
    check(ports, "no 'listening on' line for %s" % name)
    return int(ports[-1])


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        return False
    except ConnectionRefusedError:
        return True


def get(port, sni="a.test"):
    """Body of one GET through the gateway (a new connection)."""
    st, body, _ = tglib.http_request(port, server_name=sni)
    check_eq(st, 200, "HTTP status through port %d" % port)
    return body


def error_logged(gw, pattern, what):
    lines = [ln for ln in gw.log().splitlines() if "reload failed: " in ln]
    check(lines and re.search(pattern, lines[-1]),
          "%s: want the last 'reload failed' line to match %r, got %r"
          % (what, pattern, lines[-1] if lines else None))


def sighup(gw):
    gw.signal(signal.SIGHUP)


def main(t):
    ups = []
    for i, size in enumerate((5, 7)):
        p = t.spawn("upstream%d" % i, R.tlsgate_cmd("bench", "--serve", "127.0.0.1:0",
                                                     "--response-size", str(size)))
        m = tglib.wait_until(lambda: re.search(r"serving on (\S+)", p.log()), 10, "upstream")
        ups.append(m.group(1))
    d = t.path("certs")
    a_crt, a_key, a_serial = R.new_cert(t, d, "a1")
    b_crt, b_key, _ = R.new_cert(t, d, "b1", cn="b.test")
    # The watched pair: l0 reads these two paths throughout.
    crt, key = os.path.join(d, "l0.crt"), os.path.join(d, "l0.key")
    R.write_atomic(crt, open(a_crt).read())
    R.write_atomic(key, open(a_key).read())
    l0 = listener_yaml("l0", "127.0.0.1:0", crt, key, ups[0])
    gw = t.gateway(config([l0]))
    port0 = gw.port
    check_eq(R.served_serial(t, port0), a_serial, "initial serial")

    with t.case("a broken certificate renamed over the watched file"):
        before = R.reloads(gw)
        R.write_atomic(crt, "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n"
                            "-----END CERTIFICATE-----\n")
        R.wait_reload_error(gw, before, "broken certificate")
        error_logged(gw, r"reload failed: \S+\.yaml:\d+:\d+: listeners\[0\]\.tls\.certificates\[0\]"
                     r"\.certificate_chain: cannot parse the certificate", "broken certificate")
        check_eq(R.served_serial(t, port0), a_serial, "old certificate still served")

    with t.case("a key that does not match its certificate"):
        R.write_atomic(crt, open(a_crt).read())  # repaired: one good reload
        R.wait_reload(gw, (before[0], before[1] + 1), "repaired certificate")
        before = R.reloads(gw)
        R.write_atomic(key, open(b_key).read())
        R.wait_reload_error(gw, before, "key of another certificate")
        error_logged(gw, r"reload failed: \S+\.yaml:\d+:\d+: listeners\[0\]\.tls\.certificates\[0\]"
                     r"\.private_key: does not match the certificate", "mismatched key")
        check_eq(R.served_serial(t, port0), a_serial, "old certificate still served")
        R.write_atomic(key, open(a_key).read())
        R.wait_reload(gw, (before[0], before[1] + 1), "repaired key")

    with t.case("a YAML error"):
        before = R.reloads(gw)
        R.write_atomic(gw.cfg_path, config([l0]) + "  - name: [unclosed\n")
        sighup(gw)
        R.wait_reload_error(gw, before, "YAML error")
        error_logged(gw, r"reload failed: \S+\.yaml:\d+:\d+: (invalid YAML|listeners)",
                     "YAML error")
        check_eq(R.served_serial(t, port0), a_serial, "old certificate still served")
        check_eq(tglib.http_request(port0)[0], 200, "still proxying")

    with t.case("restart-only settings refuse the whole reload"):
        c_crt, c_key, c_serial = R.new_cert(t, d, "a2")
        moved = listener_yaml("l0", "127.0.0.1:0", c_crt, c_key, ups[0])
        for head, pattern in (
                ("concurrency: 2\nadmin: { address: 127.0.0.1:0 }\n",
                 r"\S+\.yaml:1:14: concurrency: changed from 1 to 2: the number of workers "
                 r"changes only at a restart \(nothing was reloaded\)"),
                ("concurrency: 1\nadmin: { address: 127.0.0.1:1 }\n",
                 r"\S+\.yaml:2:19: admin\.address: changed from 127\.0\.0\.1:0 to 127\.0\.0\.1:1: "
                 r"the admin endpoint moves only at a restart"),
                ("concurrency: 1\n",
                 r"\S+\.yaml: admin: changed from 127\.0\.0\.1:0 to none")):
            before = R.reloads(gw)
            R.write_atomic(gw.cfg_path, config([moved], head))
            sighup(gw)
            R.wait_reload_error(gw, before, head.split(":")[0])
            error_logged(gw, pattern, "restart-only setting")
            check_eq(R.served_serial(t, port0), a_serial, "the new certificate did not apply")
        before = R.reloads(gw)
        R.write_atomic(gw.cfg_path, config([moved]))
        sighup(gw)
        R.wait_reload(gw, before, "the same without the restart-only change")
        check_eq(R.served_serial(t, port0), c_serial, "now the new certificate applies")

    l0 = listener_yaml("l0", "127.0.0.1:0", c_crt, c_key, ups[0])
    with t.case("a listener added serves at once"):
        before = R.reloads(gw)
        l1 = listener_yaml("l1", "127.0.0.1:0", b_crt, b_key, ups[0])
        R.write_atomic(gw.cfg_path, config([l0, l1]))
        sighup(gw)
        R.wait_reload(gw, before, "listener added")
        port1 = last_port(gw, "l1")
        check(re.search(r"listener l0: keeps 127\.0\.0\.1:%d," % port0, gw.log()),
              "l0 keeps its socket")
        check_eq(len(get(port1, "b.test")), 5, "l1 proxies to upstream 0")

    with t.case("a listener changed: new upstream on the same socket"):
        before = R.reloads(gw)
        l1 = listener_yaml("l1", "127.0.0.1:0", b_crt, b_key, ups[1])
        R.write_atomic(gw.cfg_path, config([l0, l1]))
        sighup(gw)
        R.wait_reload(gw, before, "upstream changed")
        check_eq(len(get(port1, "b.test")), 7, "l1 proxies to upstream 1 now")
        check(re.search(r"listener l1: keeps 127\.0\.0\.1:%d," % port1, gw.log()),
              "l1 keeps its socket")

    with t.case("a listener changed: new address"):
        # A port held by us with SO_REUSEPORT (bound, not listening): free
        # for tlsgate's SO_REUSEPORT sockets, and no one else takes it.
        hold = socket.socket()
        hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        hold.bind(("127.0.0.1", 0))
        new_port = hold.getsockname()[1]
        before_conn = tglib.tls_connect(port1, server_name="b.test")
        before = R.reloads(gw)
        l1 = listener_yaml("l1", "127.0.0.1:%d" % new_port, b_crt, b_key, ups[1])
        R.write_atomic(gw.cfg_path, config([l0, l1]))
        sighup(gw)
        R.wait_reload(gw, before, "address changed")
        check_eq(last_port(gw, "l1"), new_port, "l1's new port")
        check_eq(len(get(new_port, "b.test")), 7, "l1 serves on its new port")
        check(refused(port1), "the old port refuses")
        before_conn.sendall(b"GET / HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
        check(tglib.recv_all(before_conn).startswith(b"HTTP/1.1 200"),
              "a connection opened before the change still works")
        before_conn.close()
        hold.close()

    with t.case("a listener removed: its port refuses, its open connection finishes"):
        open_conn = tglib.tls_connect(new_port, server_name="b.test")
        before = R.reloads(gw)
        R.write_atomic(gw.cfg_path, config([l0]))
        sighup(gw)
        R.wait_reload(gw, before, "listener removed")
        check("listener l1: removed; its open connections finish" in gw.log(), "removal logged")
        check(refused(new_port), "the removed listener's port refuses")
        check(gw.stats()("tlsgate_config_generations_active") >= 2, "the old generation lives")
        open_conn.sendall(b"GET / HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
        check(tglib.recv_all(open_conn).startswith(b"HTTP/1.1 200"),
              "the open connection of the removed listener still works")
        open_conn.close()
        tglib.wait_until(lambda: gw.stats()("tlsgate_config_generations_active") == 1, 20,
                         "the old generations to be freed")
        series = R.cert_series(gw)
        check_eq([lb["listener"] for lb, _ in series], ["l0"], "certificate series of l0 only")

    def provider_ops(name):
        return gw.stats().get("tlsgate_keyprov_operations_total", provider=name) or 0

    for prov, names in (("deferred", ("deferred",)), ("cryptomb", ("cryptomb", "software"))):
        with t.case("the key provider changes to %s" % prov):
            block = "{ provider_name: %s, fallback: true }" % prov
            before = R.reloads(gw)
            ops = sum(provider_ops(n) for n in names)
            R.write_atomic(gw.cfg_path, config([listener_yaml("l0", "127.0.0.1:0", c_crt, c_key,
                                                              ups[0], block)]))
            sighup(gw)
            R.wait_reload(gw, before, "provider %s" % prov)
            check_eq(len(get(port0)), 5, "proxying with %s" % prov)
            check(sum(provider_ops(n) for n in names) > ops,
                  "key operations went to %s" % "/".join(names))
            check(re.search(r"listener l0: certificate 0: EC 256-bit, names \[a\.test\], key "
                            r"provider '(%s)'" % "|".join(names), gw.log()),
                  "the provider is logged")

    with t.case("pid file: a second instance is refused; reload needs a live holder"):
        r = t.run_cmd(R.tlsgate_cmd("run", "--config", gw.cfg_path, "--pid-file", gw.pid_path))
        check_eq(r.returncode, 1, "second instance exit status")
        check("another tlsgate (pid %d) runs with pid file %s" % (gw.pid, gw.pid_path)
              in r.stderr.decode(), "second instance: %r" % r.stderr.decode())
        r = t.run_cmd(R.tlsgate_cmd("reload", "--pid-file", t.path("nobody.pid")))
        check_eq(r.returncode, 1, "reload without a pid file")
        check("No such file or directory" in r.stderr.decode(), r.stderr.decode())
        gw.stop_ok()
        check(not os.path.exists(gw.pid_path), "pid file removed at exit")
        r = t.run_cmd(R.tlsgate_cmd("reload", "--pid-file", gw.pid_path))
        check_eq(r.returncode, 1, "reload after exit")


tglib.run(main, timeout=240)
