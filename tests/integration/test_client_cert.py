#!/usr/bin/env python3
"""Client certificates (mutual TLS, tls.client_certificate) with the real
binary and real clients: `openssl s_client -cert/-key`, curl
`--cert/--key`, Python's ssl.

The certificates come from a small CA made with the openssl command line
(tg_pki.py: `openssl req` for the roots, `openssl ca` for the rest, so that
dates can lie in the past or the future and certificates can be revoked).
The upstream of most listeners is tg_upstream.py in mode "proxy": it parses
the PROXY v2 header tlsgate sends with its own parser and answers what it
saw, so the client-certificate TLV content is checked by a reader that is
not tlsgate.

  - mode require: a good certificate (TLS 1.2 and 1.3) passes, the upstream
    gets PP2_TYPE_SSL with client = SSL|CERT_CONN|CERT_SESS, verify 0 and
    the CN; refused, each with its alert at the client and its reason in
    /stats: no certificate (certificate_required in TLS 1.3,
    handshake_failure in 1.2), another CA (unknown_ca), expired
    (certificate_expired), not yet valid (bad_certificate), revoked by the
    CRL (certificate_revoked), an intermediate's certificate without the
    intermediate (unknown_ca) or whose CA has no CRL (crl_error), a server-
    only certificate (bad_purpose);
  - the same with the deferred provider (signatures and key exchange
    paused and resumed): a good certificate, none, another CA's;
  - mode optional: no certificate passes (client = SSL, verify 1, no CN), a
    good one passes with its CN, a bad one is refused;
  - verify_depth 0 refuses an intermediate's certificate (chain_too_long)
    that depth 4 accepts;
  - curl --cert/--key through an HTTP upstream; without a certificate and
    with another CA's, refused;
  - session resumption (TLS 1.2 and 1.3): no certificate is sent, the
    identity is the session's (client = SSL|CERT_SESS, CN kept); a session
    is not resumed on another listener;
  - reloads: the CA file replaced (renamed over, the watcher reloads): the
    old CA's clients are refused, the new CA's accepted, a connection opened
    before goes on; a broken CA is refused by the reload (error counted, the
    previous CA keeps serving); a new CRL revoking a client applies;
  - bad configurations: `check-config` and `run` exit 2 with one line
    FILE:LINE:COL: path: message (missing CA file, a directory, a file that
    is no PEM, a PEM that does not parse, a bad mode, a CRL without a CA, a
    CRL whose signature does not verify).
"""
import json
import os
import re
import select
import subprocess
import time

import tg_alog
import tglib
import tg_pki
import tg_reload
from tglib import SCALE, check, check_eq

FAMILIES = tglib.OUTCOME_FAMILIES + ("tlsgate_client_certificates_total",)

# What s_client prints for the alert tlsgate sends.
ALERTS = {
    "certificate_required": "alert certificate required",
    "handshake_failure": "alert handshake failure",
    "unknown_ca": "alert unknown ca",
    "certificate_expired": "alert certificate expired",
    "bad_certificate": "alert bad certificate",
    "certificate_revoked": "alert certificate revoked",
    "unsupported_certificate": "alert unsupported certificate",
}


def read_until(f, pred, timeout):
    """Bytes from the pipe f until pred(bytes) or EOF; fails after timeout."""
    buf = b""
    deadline = time.monotonic() + timeout * SCALE
    fd = f.fileno()
    while not pred(buf):
        left = deadline - time.monotonic()
        check(left > 0, "timed out reading s_client's output (got %r)" % buf[-300:])
        r, _, _ = select.select([fd], [], [], left)
        if not r:
            continue
        d = os.read(fd, 65536)
        if not d:
            break
        buf += d
    return buf


def sclient_argv(port, cert=None, key=None, version="1.3", chain=None, extra=()):
    argv = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-servername", "a.test",
            "-brief", "-tls1_3" if version == "1.3" else "-tls1_2"]
    if cert:
        argv += ["-cert", cert, "-key", key]
    if chain:
        argv += ["-cert_chain", chain]
    return argv + list(extra)


def sclient_ok(t, port, cert=None, key=None, version="1.3", chain=None):
    """s_client passes: sends a line, gets the upstream's description of the
    PROXY header and the line back, closes (close_notify). Returns the
    description."""
    p = subprocess.Popen(sclient_argv(port, cert, key, version, chain), stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=t.dir)
    try:
        p.stdin.write(b"ping\n")
        p.stdin.flush()
        out = read_until(p.stdout, lambda b: b"ping\n" in b.split(b"}\n", 1)[-1], 20)
        p.stdin.close()
        rc = p.wait(20 * SCALE)
        err = p.stderr.read().decode("utf-8", "replace")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
    check(b"PROXY-ERROR" not in out, "the upstream refused the header: %r" % out)
    check_eq(rc, 0, "s_client exit status (stderr: %s)" % err[-400:])
    m = re.search(rb"^\{.*\}$", out, re.M)
    check(m is not None, "no description from the upstream in %r" % out)
    return json.loads(m.group(0))


def sclient_refused(t, port, alert, cert=None, key=None, version="1.3", chain=None):
    """s_client is refused with `alert`. Its stdin stays open: in TLS 1.3 the
    client has finished before the server says no, and only a read shows it."""
    p = subprocess.Popen(sclient_argv(port, cert, key, version, chain), stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=t.dir)
    try:
        rc = p.wait(20 * SCALE)
    except subprocess.TimeoutExpired:
        raise tglib.TestFailure("s_client still connected: the handshake was not refused")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
    out = (p.stdout.read() + p.stderr.read()).decode("utf-8", "replace")
    p.stdin.close()
    check(rc != 0, "s_client exit status 0 for a refused certificate")
    check(ALERTS[alert] in out, "s_client did not get the alert %s: %s" % (alert, out[-500:]))


def assert_ssl(info, client, verify, cn, version):
    ssl_tlv = info["ssl"]
    check(ssl_tlv is not None, "no PP2_TYPE_SSL in %r" % info)
    check_eq(ssl_tlv["client"], client, "PP2_TYPE_SSL client flags")
    check_eq(ssl_tlv["verify"], verify, "PP2_TYPE_SSL verify")
    check_eq(ssl_tlv.get("cn"), cn, "PP2_SUBTYPE_SSL_CN")
    check_eq(ssl_tlv["version"], "TLSv" + version, "PP2_SUBTYPE_SSL_VERSION")
    check_eq(ssl_tlv["sub"], [0x21, 0x23] + ([0x22] if cn else []), "SSL sub-TLVs, in order")


def ok_delta(result="verified", n=1, resumed=False):
    d = {'tlsgate_handshakes_total{result=ok}': n,
         'tlsgate_upstream_connects_total{result=ok}': n,
         'tlsgate_connections_closed_total{reason=normal}': n}
    if not resumed:
        d['tlsgate_client_certificates_total{result=%s}' % result] = n
    return d


def refused_delta(reason, n=1):
    return {'tlsgate_handshakes_total{result=client_certificate}': n,
            'tlsgate_connections_closed_total{reason=handshake_failed}': n,
            'tlsgate_client_certificates_total{result=%s}' % reason: n}


def py_ctx(version, cert=None, key=None):
    ctx = tglib.client_ctx(version)
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def py_header(port, ctx, session=None):
    """A Python ssl connection: the upstream's description of the header,
    one round trip, and the socket (still open)."""
    s = tglib.tls_connect(port, ctx, session=session)
    s.sendall(b"ping\n")
    buf = b""
    while not buf.endswith(b"ping\n"):
        d = s.recv(4096)
        check(d, "connection ended early: %r" % buf)
        buf += d
    line = buf.split(b"\n", 1)[0]
    check(not line.startswith(b"PROXY-ERROR"), "the upstream refused the header: %r" % line)
    return json.loads(line), s


def close_clean(s):
    s.unwrap()  # close_notify both ways: a normal close, and a resumable session
    s.close()


def main(t):
    pki = t.path("pki")
    root = tg_pki.CA(pki, "root", "Test Root CA")
    other = tg_pki.CA(pki, "other", "Other CA")
    inter = root.sub_ca("inter", "Test Intermediate CA")
    alice = root.issue("alice", "alice", sans=["DNS:alice.test", "URI:spiffe://t/alice"])
    carol = root.issue("carol", "carol")
    old = root.issue("old", "old", start="20200101000000Z", end="20200201000000Z")
    future = root.issue("future", "future", start="20400101000000Z", end="20400201000000Z")
    mallory = root.issue("mallory", "mallory")
    srv_only = root.issue("srvonly", "srvonly", ext="server_only")
    eve = other.issue("eve", "eve")
    bob = inter.issue("bob", "bob")
    root.revoke(mallory[0])
    crl_dir = t.path("crl")
    os.makedirs(crl_dir)
    crl = root.crl(os.path.join(crl_dir, "root.crl"))
    # The CA file of listener "rot" lives in its own directory: it is
    # replaced there (renamed over) and the watcher reloads.
    rot_dir = t.path("rotca")
    os.makedirs(rot_dir)
    rot_ca = tg_pki.concat(os.path.join(rot_dir, "ca.pem"), root.cert)
    with open(root.cert) as f:
        root_pem = f.read()

    cert, key = t.cert("ec", "a.test")
    up = t.upstream("proxy")
    web = t.upstream("http")
    pp2 = {"proxy_protocol": "v2"}

    def lst(name, cc, upstream=up.addr, extra=pp2, prov="software"):
        return tglib.listener([(cert, key)], upstream, name=name, upstream_extra=extra,
                              tls={"client_certificate": cc}, prov=prov)
    gw = t.gateway(tglib.gw_config([
        lst("req", {"ca": {"filename": root.cert}, "mode": "require", "crl": {"filename": crl}}),
        lst("opt", {"ca": {"filename": root.cert}, "mode": "optional"}),
        lst("deep", {"ca": {"inline_string": root_pem}, "verify_depth": 0}),
        lst("rot", {"ca": {"filename": rot_ca}}),
        lst("web", {"ca": {"filename": root.cert}}, upstream=web.addr, extra=None),
        # Signatures and key exchange through the asynchronous provider.
        lst("async", {"ca": {"filename": root.cert}}, prov="deferred-5ms"),
    ], extra={"reload": {"debounce": "50ms"},
              "access_log": {"path": t.path("access.log"), "format": "json"}}))
    req, opt, deep, rot, webp, asy = (gw.ports[n]
                                      for n in ("req", "opt", "deep", "rot", "web", "async"))
    check("listener req: client certificates: required, 1 CA certificate(s), 1 CRL(s)"
          in gw.log(), "start-up log line of the client certificates")

    def expect(before, want, what):
        tglib.expect_delta(gw, before, want, what, families=FAMILIES)

    def snap():
        tglib.settle(gw)
        return tglib.snapshot(gw, FAMILIES)

    for v in ("1.3", "1.2"):
        with t.case("require, TLS %s: a good certificate; the CN to the upstream" % v):
            b = snap()
            info = sclient_ok(t, req, *alice, version=v)
            assert_ssl(info, 7, 0, "alice", v)
            expect(b, ok_delta(), "good certificate")

        refusals = [
            ("no certificate", None, "certificate_required" if v == "1.3" else "handshake_failure",
             "missing"),
            ("another CA's certificate", eve, "unknown_ca", "unknown_ca"),
            ("an expired certificate", old, "certificate_expired", "expired"),
            ("a certificate not valid yet", future, "bad_certificate", "not_yet_valid"),
            ("a certificate the CRL revokes", mallory, "certificate_revoked", "revoked"),
            ("an intermediate's certificate without the intermediate", bob, "unknown_ca",
             "unknown_ca"),
            ("a certificate for servers only", srv_only, "unsupported_certificate", "bad_purpose"),
        ]
        for what, c, alert, reason in refusals:
            with t.case("require, TLS %s: %s is refused (%s)" % (v, what, alert)):
                b = snap()
                sclient_refused(t, req, alert, *(c or (None, None)), version=v)
                expect(b, refused_delta(reason), what)

        with t.case("require, TLS %s: the intermediate sent, but its CA has no CRL: crl_error" % v):
            b = snap()
            sclient_refused(t, req, "unknown_ca", *bob, version=v, chain=inter.cert)
            expect(b, refused_delta("crl_error"), "CRL missing for the intermediate")

        with t.case("deferred provider (key operations paused), TLS %s: good, missing, bad" % v):
            b = snap()
            assert_ssl(sclient_ok(t, asy, *alice, version=v), 7, 0, "alice", v)
            expect(b, ok_delta(), "good certificate, deferred")
            b = snap()
            sclient_refused(t, asy, "certificate_required" if v == "1.3" else "handshake_failure",
                            version=v)
            sclient_refused(t, asy, "unknown_ca", *eve, version=v)
            want = refused_delta("missing")
            want.update(refused_delta("unknown_ca"))
            want['tlsgate_handshakes_total{result=client_certificate}'] = 2
            want['tlsgate_connections_closed_total{reason=handshake_failed}'] = 2
            expect(b, want, "refusals, deferred")

        with t.case("optional, TLS %s: none, a good one, a bad one" % v):
            b = snap()
            info = sclient_ok(t, opt, version=v)
            assert_ssl(info, 1, 1, None, v)
            expect(b, ok_delta("absent"), "no certificate, optional")
            b = snap()
            info = sclient_ok(t, opt, *alice, version=v)
            assert_ssl(info, 7, 0, "alice", v)
            expect(b, ok_delta(), "good certificate, optional")
            b = snap()
            sclient_refused(t, opt, "unknown_ca", *eve, version=v)
            expect(b, refused_delta("unknown_ca"), "bad certificate, optional")

    with t.case("access log: the verified client's subject, SAN and fingerprint"):
        fp = subprocess.run(["openssl", "x509", "-in", alice[0], "-noout", "-fingerprint",
                             "-sha256"], check=True, capture_output=True, text=True).stdout
        fp = fp.strip().split("=", 1)[1].replace(":", "").lower()

        def alice_line(ln):
            return '"listener":"req"' in ln and "CN=alice" in ln
        recs = [tg_alog.parse_json(ln) for ln in tg_alog.wait_lines(t.path("access.log"), 2,
                                                                     pred=alice_line)]
        for d in recs:
            check_eq((d["listener"], d["client_fingerprint"]), ("req", fp), "alice's line")
            check("CN=alice" in d["client_subject"], "subject %r" % d["client_subject"])
            check_eq(d["client_san"], "DNS:alice.test,URI:spiffe://t/alice", "SAN")
        # Without a client certificate (optional listener): null fields.
        sclient_ok(t, opt)
        d = tg_alog.parse_json(tg_alog.wait_lines(
            t.path("access.log"), 1, pred=lambda ln: '"listener":"opt"' in ln
            and '"term":"--"' in ln)[-1])
        check_eq((d["client_subject"], d["client_san"], d["client_fingerprint"]),
                 (None, None, None), "no client certificate")

    with t.case("verify_depth 0 (CA given inline): the intermediate's client is refused"):
        b = snap()
        sclient_refused(t, deep, "unknown_ca", *bob, chain=inter.cert)
        expect(b, refused_delta("chain_too_long"), "verify_depth 0")
        b = snap()
        info = sclient_ok(t, deep, *alice)
        assert_ssl(info, 7, 0, "alice", "1.3")
        expect(b, ok_delta(), "a CA's own client, verify_depth 0")
        b = snap()
        info = sclient_ok(t, opt, *bob, chain=inter.cert)
        assert_ssl(info, 7, 0, "bob", "1.3")
        expect(b, ok_delta(), "verify_depth 4 (the default)")

    with t.case("curl --cert/--key"):
        b = snap()
        r = t.run_cmd(["curl", "-sS", "-k", "--cert", alice[0], "--key", alice[1], "--resolve",
                       "a.test:%d:127.0.0.1" % webp, "https://a.test:%d/hello" % webp])
        check_eq(r.returncode, 0, "curl with a good certificate: %s" % r.stderr.decode()[-300:])
        check_eq(json.loads(r.stdout)["path"], "/hello", "the upstream's answer")
        expect(b, ok_delta(), "curl, good certificate")
        for what, c, reason in (("no certificate", None, "missing"),
                                ("another CA's", eve, "unknown_ca"),
                                ("an expired one", old, "expired")):
            b = snap()
            argv = ["curl", "-sS", "-k", "--resolve", "a.test:%d:127.0.0.1" % webp,
                    "https://a.test:%d/hello" % webp]
            if c:
                argv[3:3] = ["--cert", c[0], "--key", c[1]]
            r = t.run_cmd(argv)
            check(r.returncode != 0, "curl with %s got through: %r" % (what, r.stdout[:200]))
            expect(b, refused_delta(reason), "curl, %s" % what)

    for v in ("1.3", "1.2"):
        with t.case("TLS %s session resumption keeps the verified identity" % v):
            ctx = py_ctx(v, *alice)
            b = snap()
            info, s = py_header(req, ctx)
            assert_ssl(info, 7, 0, "alice", v)
            check(not s.session_reused, "first connection resumed")
            sess = s.session
            close_clean(s)
            info, s = py_header(req, ctx, session=sess)
            check(s.session_reused, "the session was not resumed")
            # Nothing presented on this connection: CERT_SESS only.
            assert_ssl(info, 5, 0, "alice", v)
            close_clean(s)
            d = ok_delta(n=1)
            for k, n in ok_delta(n=1, resumed=True).items():
                d[k] += n
            expect(b, d, "a full handshake and a resumed one")
            # Another listener: its own sessions only, a full handshake.
            b = snap()
            info, s = py_header(opt, ctx, session=sess)
            check(not s.session_reused, "a session of listener req resumed on listener opt")
            assert_ssl(info, 7, 0, "alice", v)
            close_clean(s)
            expect(b, ok_delta(), "no resumption across listeners")

    with t.case("reload: the CA file replaced; clients of the old CA refused, of the new accepted"):
        ctx = py_ctx("1.3", *alice)
        snap()
        info, held = py_header(rot, ctx)  # opened before, must survive the reloads
        assert_ssl(info, 7, 0, "alice", "1.3")
        before = tg_reload.reloads(gw)
        tg_reload.write_atomic(rot_ca, open(other.cert).read())
        tg_reload.wait_reload(gw, before, "CA replaced")
        b = tglib.snapshot(gw, FAMILIES)  # no settle: `held` stays open
        sclient_refused(t, rot, "unknown_ca", *alice)
        info = sclient_ok(t, rot, *eve)
        assert_ssl(info, 7, 0, "eve", "1.3")
        want = refused_delta("unknown_ca")
        want.update(ok_delta())
        expect(b, want, "after the CA change")
        held.sendall(b"still\n")
        got = b""
        while not got.endswith(b"still\n"):
            d = held.recv(100)
            check(d, "the connection opened before the reload ended")
            got += d

    with t.case("reload: a broken CA file is refused, the current CA keeps serving"):
        before = tg_reload.reloads(gw)
        tg_reload.write_atomic(rot_ca, "-----BEGIN CERTIFICATE-----\nnot base64!\n"
                                       "-----END CERTIFICATE-----\n")
        tglib.wait_until(lambda: tg_reload.reloads(gw)[1] == before[1] + 1, 30,
                         "the failed reload to be counted")
        check(re.search(r"reload failed: \S+:\d+:\d+: listeners\[3\]\.tls\.client_certificate\.ca: "
                        r"cannot parse CA certificate 1", gw.log()),
              "the failed reload's message: %s" % gw.log()[-600:])
        info = sclient_ok(t, rot, *eve)
        assert_ssl(info, 7, 0, "eve", "1.3")

    with t.case("reload: both CAs in one file"):
        before = tg_reload.reloads(gw)
        tg_reload.write_atomic(rot_ca, open(root.cert).read() + open(other.cert).read())
        tg_reload.wait_reload(gw, before, "CA bundle")
        assert_ssl(sclient_ok(t, rot, *alice), 7, 0, "alice", "1.3")
        assert_ssl(sclient_ok(t, rot, *eve), 7, 0, "eve", "1.3")
        held.sendall(b"again\n")
        got = b""
        while not got.endswith(b"again\n"):
            d = held.recv(100)
            check(d, "the connection opened before the reloads ended")
            got += d
        close_clean(held)

    with t.case("reload: a new CRL revokes carol"):
        assert_ssl(sclient_ok(t, req, *carol), 7, 0, "carol", "1.3")
        root.revoke(carol[0])
        before = tg_reload.reloads(gw)
        new_crl = root.crl(os.path.join(crl_dir, ".new.crl"))
        os.rename(new_crl, crl)
        tg_reload.wait_reload(gw, before, "CRL replaced")
        b = snap()
        sclient_refused(t, req, "certificate_revoked", *carol)
        expect(b, refused_delta("revoked"), "carol revoked")
        assert_ssl(sclient_ok(t, req, *alice), 7, 0, "alice", "1.3")

    with t.case("/stats: every reason has its series"):
        st = gw.stats()
        for r in ("verified", "absent", "missing", "unknown_ca", "expired", "not_yet_valid",
                  "revoked", "crl_error", "chain_too_long", "bad_purpose", "invalid"):
            check(st.get("tlsgate_client_certificates_total", result=r) is not None,
                  "no series for %s" % r)
        check(st("tlsgate_client_certificates_total", result="invalid") == 0,
              "a refusal fell into 'invalid'")

    gw.stop_ok()

    with t.case("bad configurations: exit 2, one line FILE:LINE:COL: path: message"):
        garbage = t.path("garbage.pem")
        with open(garbage, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n")
        forged = t.path("forged.crl")
        # Root's name on a CRL signed by another key: the issuer's name is in
        # `ca`, its signature does not verify.
        forger = tg_pki.CA(pki, "forger", "Test Root CA")
        forger.crl(forged)
        head = ("listeners:\n  - address: 127.0.0.1:0\n    upstream: { address: 127.0.0.1:9 }\n"
                "    tls:\n      certificates:\n"
                "        - { certificate_chain: { filename: %s }, private_key: { filename: %s } }\n"
                "      client_certificate:\n" % (cert, key))
        cc = "listeners[0].tls.client_certificate"
        cases = [
            ("        ca: { filename: %s }\n" % t.path("nope.pem"),
             "8:25: %s.ca.filename: cannot read '%s': No such file or directory"
             % (cc, t.path("nope.pem"))),
            ("        ca: { filename: %s }\n" % pki,
             "8:25: %s.ca.filename: cannot read '%s': Is a directory" % (cc, pki)),
            ("        ca: { filename: %s }\n" % root.key,
             "8:25: %s.ca.filename: '%s' contains no PEM CA certificate "
             "('-----BEGIN CERTIFICATE-----')" % (cc, root.key)),
            ("        ca: { filename: %s }\n" % garbage,
             "8:25: %s.ca: cannot parse CA certificate 1: " % cc),
            ("        ca: { filename: %s }\n        mode: sometimes\n" % root.cert,
             "9:15: %s.mode: invalid mode 'sometimes' (valid: require, optional)" % cc),
            ("        crl: { filename: %s }\n" % crl,
             "8:9: %s.crl: 'crl' needs 'ca': client certificates are verified against the CA "
             "certificates in 'ca', and a CRL only revokes some of them" % cc),
            ("        ca: { filename: %s }\n        crl: { filename: %s }\n" % (root.cert, forged),
             "9:26: %s.crl: CRL 1: its signature does not verify with the key of "
             "'CN=Test Root CA,O=tlsgate tests' in 'ca'" % cc),
        ]
        for i, (block, want) in enumerate(cases):
            path = t.path("bad%d.yaml" % i)
            with open(path, "w") as f:
                f.write(head + block)
            for argv in (["check-config", path], ["run", "--config", path, "--pid-file",
                                                  t.path("bad.pid")]):
                r = t.run_cmd([tglib.tlsgate_path()] + argv)
                err = r.stderr.decode("utf-8", "replace")
                lines = [ln for ln in err.splitlines() if "tlsgate: " in ln]
                check_eq(r.returncode, 2, "%s exit status for case %d (%s)" % (argv[0], i, err))
                check_eq(len(lines), 1, "one error line for case %d: %r" % (i, err))
                check(lines[0].startswith("tlsgate: %s:%s" % (path, want)),
                      "case %d, %s:\n got: %s\nwant: tlsgate: %s:%s" % (i, argv[0], lines[0],
                                                                        path, want))


if __name__ == "__main__":
    tglib.run(main, timeout=240)
