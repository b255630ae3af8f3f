#!/usr/bin/env python3
"""The key server end to end: `tlsgate keyserver` holding an RSA-2048 key
(cryptomb, software under valgrind) and an ECDSA P-256 key (software), a
gateway with two workers whose certificates name them with
provider_name: keyserver, and real clients.

  1. handshakes with openssl s_client (TLS 1.2 RSA PKCS#1 v1.5, TLS 1.3
     RSA-PSS, ECDSA), Python's ssl (a request through to the upstream) and
     tlsgate bench -c 8; both sides' counters agree: every signature the
     gateway asked for, the key server answered, none failed; the key server
     batched requests of both workers in one connection each;
  2. `tlsgate keyserver --check`: a good configuration, a bad one
     (FILE:LINE:COL); the operator warnings of a gateway apply to a key
     server's file (a key file others can read, an admin endpoint on every
     address), and admin.allowed_sources is enforced;
  3. a gateway whose certificate the key server does not hold: exit 2 with
     the reason; a gateway started before its key server: it starts, warns,
     and serves once the key server is up;
  4. the key server stopped with SIGTERM and started again: the gateway
     reconnects by itself, nothing fails (the timeout outlasts the
     restart), and both exit 0 on SIGTERM (sanitizer and valgrind clean);
  5. a reload (SIGHUP) that adds a listener whose key is in a second key
     server, first named by the new configuration: its handshakes work (each
     worker connects to it on first use), the first key server's are not
     disturbed;
  6. the examples in deploy/ (the systemd pair's configurations, the
     sidecar's ConfigMap) load, with their paths and users pointed at this
     test's files: what the documentation shows works.
"""
import os
import re
import signal
import socket
import sys

sys.path.insert(0, os.path.join(os.environ.get("TG_SRC_DIR", os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "../../../..")), "tests", "integration"))
import tglib  # noqa: E402
import tgcluster  # noqa: E402
import tgks  # noqa: E402
from tglib import check, check_eq  # noqa: E402

CALLS = 40 if tglib.VALGRIND else 400


def gw_cfg(t, sock, certs, up, timeout="10s"):
    listeners = [tglib.listener([tgks.remote_cert(c, sock, timeout=timeout)], up.addr, name=n)
                 for n, c in certs]
    hs = "%ds" % int(30 * tglib.SCALE)
    return tglib.gw_config(listeners, concurrency=2, limits={"handshake_timeout": hs})


def s_client(t, port, args):
    r = t.run_cmd(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
                   "-servername", "a.test"] + args, input=b"Q\n")
    out = r.stdout.decode("utf-8", "replace")
    check("Cipher is (NONE)" not in out and "Cipher is" in out,
          "s_client %s: no handshake: %s %s" % (args, out[-400:], r.stderr.decode()[-400:]))
    return out


def embedded(path, key):
    """The text of a ConfigMap's data key (a `key: |` block)."""
    lines, out, on = open(path).read().splitlines(), [], False
    for ln in lines:
        if on and (ln.startswith("    ") or not ln.strip()):
            out.append(ln[4:])
        elif on:
            break
        on = on or ln == "  %s: |" % key
    check(out, "no %s in %s" % (key, path))
    return "\n".join(out) + "\n"


def localize(t, text, files, sock):
    """An example configuration with its files, socket, users and ports
    replaced by this test's."""
    def repl(m):
        path = m.group(2)
        return m.group(1) + files["key" if path.endswith(".key") else "cert"]
    text = re.sub(r"(filename: )(/\S+?)(?= \}|$)", repl, text, flags=re.M)
    text = re.sub(r"/run/tlsgate-keys/keys\.sock", sock, text)
    text = re.sub(r"(allowed_uids: )\[[^]]*\]", r"\g<1>[0]", text)
    text = re.sub(r"(socket_group: )\S+", r"\g<1>0", text)
    text = re.sub(r"(address: )(0\.0\.0\.0|127\.0\.0\.1):(443|99\d\d)\b", r"\g<1>127.0.0.1:0",
                  text)
    text = re.sub(r"backend\.default\.svc\.cluster\.local:3000", "127.0.0.1:9", text)
    return text


def admin_bytes(port):
    """What a GET /ready gets back: bytes, b"" for a close, None for a reset."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5 * tglib.SCALE) as s:
            s.sendall(b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while True:
                d = s.recv(4096)
                if not d:
                    return data
                data += d
    except (ConnectionResetError, BrokenPipeError):
        return None


def main(t):
    rsa_cert, rsa_key = t.cert("rsa", "a.test")
    ec_cert, ec_key = t.cert("ec", "a.test")
    other_cert, other_key = t.cert("ec", "a.test", name="other")
    sock = t.path("keys.sock")
    ks_cfg = tgks.ks_config(sock, [
        (rsa_key, rsa_cert, {"provider_name": "cryptomb", "fallback": True}),
        (ec_key, None, None)])
    up = tgcluster.serve(t)

    with t.case("handshakes through the key server, counters on both sides"):
        ks = tgks.KeyServer(t, ks_cfg)
        gw = t.gateway(gw_cfg(t, sock, [("rsa", rsa_cert), ("ec", ec_cert)], up))
        log = gw.log()
        check("holds key" in log, "the start-up check did not find the key: %s" % log[-800:])
        rsa_port, ec_port = gw.ports["rsa"], gw.ports["ec"]
        out = s_client(t, rsa_port, ["-tls1_2", "-sigalgs", "RSA+SHA256"])
        tglib.check_sigtype(out, tglib.SIG_RSA_PKCS1, "TLS 1.2 PKCS#1")
        out = s_client(t, rsa_port, ["-tls1_3"])
        tglib.check_sigtype(out, tglib.SIG_RSA_PSS, "TLS 1.3 PSS")
        out = s_client(t, ec_port, ["-tls1_3"])
        tglib.check_sigtype(out, tglib.SIG_ECDSA, "ECDSA")
        status, _, _ = tglib.http_request(ec_port)
        check_eq(status, 200, "a request through the gateway")
        for port in (rsa_port, ec_port):
            rep = tgcluster.bench(t, port, calls=CALLS, conns=8)
            check_eq(rep["ok"], CALLS, "bench calls ok: %r" % tgcluster.errors(rep))
        tglib.settle(gw)
        st, kst = gw.stats(), ks.stats()
        sent = st("tlsgate_keyserver_client_requests_total")
        answered = kst("tlsgate_keyserver_requests_total", type="sign", status="ok")
        check_eq(sent, answered, "signatures asked == signatures made")
        check(sent >= 2 * CALLS + 4, "every handshake signed remotely (%d)" % sent)
        check_eq(st("tlsgate_keyserver_client_failures_total"), 0, "failures")
        check_eq(st("tlsgate_keyprov_unrecoverable_total"), 0, "unrecoverable")
        check_eq(st("tlsgate_handshakes_total", result="ok"), st("tlsgate_handshakes_total"),
                 "every handshake ok")
        check_eq(st("tlsgate_keyserver_client_connected"), 2, "one connection per worker")
        check_eq(kst("tlsgate_keyserver_connections_active"), 2, "the key server sees two")
        check_eq(kst("tlsgate_keyserver_requests_total", type="lookup", status="ok"), 2,
                 "start-up lookups")
        check(kst("tlsgate_keyserver_sign_seconds_count") >= answered, "latency recorded")
        check(st("tlsgate_keyserver_client_rtt_seconds_count") >= sent, "round trips recorded")

    with t.case("tlsgate keyserver --check"):
        r = t.run_cmd([tglib.tlsgate_path(), "keyserver", "--config", ks.cfg_path, "--check"])
        check_eq(r.returncode, 0, "check of a good file: %s" % r.stderr.decode())
        check("configuration OK (2 key(s))" in r.stdout.decode(), r.stdout.decode())
        bad = t.unique_path("bad", ".yaml")
        with open(bad, "w") as f:
            f.write("keyserver:\n  socket: %s\n  socket_mode: \"0999\"\nkeys: []\n" % sock)
        r = t.run_cmd([tglib.tlsgate_path(), "keyserver", "--config", bad, "--check"])
        check_eq(r.returncode, 2, "check of a bad file")
        check("bad.yaml:3:16: keyserver.socket_mode:" in r.stderr.decode(), r.stderr.decode())

    with t.case("key server warnings: a key file others can read, an open admin endpoint"):
        check("can be read by" not in ks.log(), "a warning about a 0600 key: %s" % ks.log())
        os.chmod(rsa_key, 0o644)
        try:
            r = t.run_cmd([tglib.tlsgate_path(), "keyserver", "--config", ks.cfg_path, "--check"])
        finally:
            os.chmod(rsa_key, 0o600)
        err = r.stderr.decode()
        check_eq(r.returncode, 0, "a warning does not fail the check: %s" % err)
        check(re.search(r"tlsgate: warning: \S+\.yaml:\d+:\d+: keys\[0\]\.private_key: '%s' "
                        r"\(mode 0644\) can be read by every user of this machine"
                        % re.escape(rsa_key), err), "key mode warning: %s" % err)
        # allowed_sources is enforced by the key server's admin endpoint too.
        open_cfg = dict(ks_cfg, admin={"address": "0.0.0.0:0"})
        open_cfg["keyserver"] = dict(ks_cfg["keyserver"], socket=t.path("keys-open.sock"))
        ks_open = tgks.KeyServer(t, open_cfg, name="ks-open")
        check(re.search(r"admin\.address: 0\.0\.0\.0:0 is not a loopback address",
                        ks_open.log()), "admin warning in the log: %s" % ks_open.log()[-800:])
        ks_open.stop()
        shut_cfg = dict(open_cfg, admin={"address": "127.0.0.1:0",
                                         "allowed_sources": ["10.0.0.0/8"]})
        ks_shut = tgks.KeyServer(t, shut_cfg, name="ks-shut")
        check("not a loopback" not in ks_shut.log(), "warned: %s" % ks_shut.log()[-800:])
        got = admin_bytes(ks_shut.admin_port)
        check(got is None or got == b"", "a client outside allowed_sources got %r" % (got,))
        ks_shut.stop()

    with t.case("tlsgate doctor --config: the key server answers"):
        r = t.run_cmd([tglib.tlsgate_path(), "doctor", "--config", gw.cfg_path])
        out = r.stdout.decode()
        check("private_key_provider: %s answers (tlsgate keyserver " % sock in out, out[-1500:])

    with t.case("a certificate the key server does not hold: exit 2"):
        cfg = gw_cfg(t, sock, [("other", other_cert)], up)
        p = tglib.Gateway(t, cfg, name="gw-unknown", wait=False)
        rc = p.wait(30)
        check_eq(rc, 2, "exit status")
        check("does not hold this certificate's key" in p.log(), p.log()[-600:])

    with t.case("SIGTERM and a restart of the key server: the gateway reconnects"):
        before = gw.stats()
        ks.stop_ok()
        tglib.wait_until(lambda: gw.stats()("tlsgate_keyserver_client_connected") == 0, 10,
                         "the gateway to see the key server gone")
        ks = tgks.KeyServer(t, ks_cfg, name="keyserver-2")
        tglib.wait_until(lambda: gw.stats()("tlsgate_keyserver_client_connected") == 2, 20,
                         "both workers to reconnect")
        rep = tgcluster.bench(t, ec_port, calls=CALLS // 2, conns=4)
        check_eq(rep["ok"], CALLS // 2, "bench after the restart: %r" % tgcluster.errors(rep))
        st = gw.stats()
        check_eq(st("tlsgate_keyserver_client_failures_total"), 0, "failures")
        check(st("tlsgate_keyserver_client_connects_total")
              >= before("tlsgate_keyserver_client_connects_total") + 2, "reconnected")
        check_eq(st("tlsgate_keyserver_client_disconnects_total", reason="server_shutdown"), 2,
                 "the goodbye was seen by both workers")

    with t.case("a reload names a second key server"):
        sock2 = t.path("keys2.sock")
        ks2 = tgks.KeyServer(t, tgks.ks_config(sock2, [(other_key, other_cert, None)]),
                             name="keyserver-second")
        cfg = gw_cfg(t, sock, [("rsa", rsa_cert), ("ec", ec_cert)], up)
        cfg["listeners"].append(tglib.listener([tgks.remote_cert(other_cert, sock2)], up.addr,
                                               name="other"))
        with open(gw.cfg_path, "w") as f:
            f.write(tglib.to_yaml(cfg) + "\n")
        import tg_reload  # noqa: E402 (the reload tests' helpers)
        before = tg_reload.reloads(gw)
        gw.signal(signal.SIGHUP)
        tg_reload.wait_reload(gw, before, "adding a key server")
        port = None
        tglib.wait_until(lambda: re.search(r"listener other: listening on \S+?:(\d+),", gw.log()),
                         20, "the new listener")
        port = int(re.findall(r"listener other: listening on \S+?:(\d+),", gw.log())[-1])
        rep = tgcluster.bench(t, port, calls=40, conns=4)
        check_eq(rep["ok"], 40, "bench on the new key server: %r" % tgcluster.errors(rep))
        rep = tgcluster.bench(t, ec_port, calls=40, conns=4)
        check_eq(rep["ok"], 40, "bench on the first one: %r" % tgcluster.errors(rep))
        st = gw.stats()
        check_eq(st("tlsgate_keyserver_client_connected", socket=sock2), 2,
                 "both workers connected to the second key server")
        check_eq(st("tlsgate_keyserver_client_failures_total"), 0, "failures")
        check_eq(ks2.stats()("tlsgate_keyserver_requests_total", type="sign", status="ok") >= 40,
                 True, "the second key server signed")
        ks2.stop_ok()

    with t.case("a gateway started before its key server"):
        ks.stop_ok()
        gw2 = t.gateway(gw_cfg(t, sock, [("ec", ec_cert)], up), name="gw-early")
        check("not reachable at start-up" in gw2.log(), gw2.log()[-600:])
        ks = tgks.KeyServer(t, ks_cfg, name="keyserver-3")
        tglib.wait_until(lambda: gw2.stats()("tlsgate_keyserver_client_connected") == 2, 20,
                         "the early gateway to connect")
        rep = tgcluster.bench(t, gw2.ports["ec"], calls=20, conns=2)
        check_eq(rep["ok"], 20, "bench: %r" % tgcluster.errors(rep))
        gw2.stop_ok()

    with t.case("clean exits"):
        gw.stop_ok()
        ks.stop_ok()
        check(not os.path.exists(sock), "the key server removed its socket")

    with t.case("the examples in deploy/ load"):
        src = os.environ.get("TG_SRC_DIR", os.path.join(os.path.dirname(
            os.path.abspath(__file__)), "../../../.."))
        files = {"key": rsa_key, "cert": rsa_cert}
        cm = os.path.join(src, "deploy/kubernetes/keyserver/configmap.yaml")
        for label, ks_text, gw_text in [
                ("systemd", open(os.path.join(src, "deploy/keyserver/keyserver.yaml")).read(),
                 open(os.path.join(src, "deploy/keyserver/tlsgate.yaml")).read()),
                ("sidecar", embedded(cm, "keyserver.yaml"), embedded(cm, "tlsgate.yaml"))]:
            ex_sock = t.path("%s.sock" % label)
            ks_path = t.unique_path("example-ks-" + label, ".yaml")
            with open(ks_path, "w") as f:
                f.write(localize(t, ks_text, files, ex_sock))
            r = t.run_cmd([tglib.tlsgate_path(), "keyserver", "--config", ks_path, "--check"])
            check_eq(r.returncode, 0, "%s key server example: %s" % (label, r.stderr.decode()))
            exks = tgks.KeyServer(t, open(ks_path).read(), name="example-ks-" + label)
            gw_path = t.unique_path("example-gw-" + label, ".yaml")
            with open(gw_path, "w") as f:
                f.write(localize(t, gw_text, files, ex_sock))
            r = t.run_cmd([tglib.tlsgate_path(), "check-config", gw_path])
            check_eq(r.returncode, 0, "%s gateway example: %s" % (label, r.stderr.decode()))
            check("holds key" in r.stderr.decode(), "%s: the key server was asked: %s"
                  % (label, r.stderr.decode()[-400:]))
            exks.stop_ok()


if __name__ == "__main__":
    tglib.run(main, timeout=600 if tglib.VALGRIND else 240)
