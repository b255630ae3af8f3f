#!/usr/bin/env python3
"""The access log's lines, with real clients (software and deferred providers):
  - text to a file: Python's ssl, openssl s_client (TLS 1.2, P-256, an ECDSA
    certificate chosen by -sigalgs, ALPN h2), curl (another SNI, another
    certificate) and tlsgate bench: one line per connection with the right
    listener, client address and port, SNI, ALPN, version, cipher, group,
    certificate (first name and index), key provider, upstream, byte counts
    and times, term "--"; lines = connections accepted;
  - an SNI of arbitrary bytes (space, quotes, backslash, a control byte,
    UTF-8, '=') is quoted and escaped in text and decodes back to the same
    bytes from JSON (\\u00XX per byte, the line stays ASCII);
  - JSON to a file: every line parses with Python's json, same fields;
  - key operations that fall back to software (deferred, fail_every 1,
    fail_mode error) are counted per line;
  - every termination code we can provoke on 127.0.0.1: -- UF UT (when the
    kernel lets us fill an accept queue) UR IT FT HT HF HC CD CT KF LR, and SD at
    the drain timeout (the lines written at shutdown); the lines of each code
    add up to the closed_total / rejected_total counters, nothing twice.
"""
import datetime
import json
import os
import signal
import socket
import ssl
import struct
import subprocess
import time

import tg_alog
import tglib
from tg_alog import parse_json, parse_text
from tglib import check, check_eq

REQ = b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"


def python_client(port, sni="a.test", alpn=("http/1.1",)):
    """One request with Python's ssl; returns what the access log must say."""
    ctx = tglib.client_ctx("1.3", alpn=list(alpn))
    with tglib.tls_connect(port, ctx, sni) as s:
        local = s.getsockname()[1]
        s.sendall(REQ)
        data = tglib.recv_all(s)
        info = {"client": "127.0.0.1:%d" % local, "tls": s.version(), "cipher": s.cipher()[0],
                "alpn": s.selected_alpn_protocol(), "bytes_in": len(REQ),
                "bytes_out": len(data)}
    check(data.startswith(b"HTTP/1.1 200"), "python client: %r" % data[:40])
    return info


def s_client(t, port, args, sni=b"a.test", data=REQ):
    # With a request: wait for the answer (-ign_eof); without: close at once.
    argv = [b"openssl", b"s_client", b"-connect", b"127.0.0.1:%d" % port, b"-servername", sni]
    argv += [b"-ign_eof"] if data else []
    argv += [a.encode() for a in args]
    r = t.run_cmd(argv, input=data, timeout=20)
    out = r.stdout.decode("latin-1")
    cipher = None
    for ln in out.splitlines():
        if "Cipher is " in ln:
            cipher = ln.split("Cipher is ")[1].strip()
    return out, cipher


def near_now(ts):
    t = datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc)
    return abs((datetime.datetime.now(datetime.timezone.utc) - t).total_seconds()) < 120


def ms(v):
    return float(v)


def fields_case(t, variant, up):
    rsa, ec, b = t.cert("rsa", "a.test"), t.cert("ec", "a.test"), t.cert("rsa", "b.test")
    path = t.path("access-%s.log" % variant)
    cfg = tglib.gw_config([tglib.listener([rsa, ec, b], up.addr, variant, name="main",
                                          tls={"alpn": ["h2", "http/1.1"]})])
    cfg["access_log"] = {"path": path}
    gw = t.gateway(cfg)
    port = gw.port
    prov = tglib.PROVIDERS[variant]["provider_name"]

    py = python_client(port)
    out, ec_cipher = s_client(t, port, ["-tls1_2", "-groups", "P-256", "-sigalgs",
                                        "ECDSA+SHA256", "-alpn", "h2"])
    check("HTTP/1.1 200" in out and ec_cipher, "s_client: %s" % out[-400:])
    r = t.run_cmd(["curl", "-sk", "--http1.1", "--resolve", "b.test:%d:127.0.0.1" % port,
                   "-o", os.devnull, "-w", "%{local_port} %{http_code}",
                   "https://b.test:%d/" % port])
    curl_port, code = r.stdout.decode().split()
    check_eq(code, "200", "curl status")
    r = t.run_cmd([tglib.tlsgate_path(), "bench", "-k", "-n", "20", "-c", "4", "--quiet",
                   "--sni", "a.test", "https://127.0.0.1:%d/" % port], timeout=60)
    check_eq(r.returncode, 0, "tlsgate bench: %s" % r.stderr.decode()[-300:])
    tglib.settle(gw)
    a = tg_alog.wait_written(gw)
    lines = tg_alog.read_lines(path)
    check_eq(len(lines), 23, "one line per connection")
    recs = [parse_text(ln) for ln in lines]
    check_eq((a["lines"], a["accepted"], a["full"]), (23, 23, 0), "lines = connections")
    for d in recs:
        check(near_now(d["time"].decode()), "time %r" % d["time"])
        check_eq(d["listener"], b"main", "listener")
        check_eq(d["term"], b"--", "term")
        check_eq(d["upstream"], up.addr.encode(), "upstream")
        check_eq(d["key_provider"], prov.encode(), "key provider")
        check_eq(d["key_fallbacks"], b"0", "fallbacks")
        check_eq(d["resumed"], b"false", "resumed")
        check(ms(d["connect_ms"]) >= 0 and ms(d["handshake_ms"]) > 0, "times %r" % d)
        check(ms(d["duration_ms"]) >= ms(d["handshake_ms"]) + ms(d["connect_ms"]) - 0.002,
              "duration >= handshake + connect: %r" % d)
        check(d["client"].startswith(b"127.0.0.1:"), "client %r" % d["client"])
        check_eq(d["peer"], d["client"], "no PROXY header: the peer is the client")
        check_eq((d["upstream_host"], d["attempts"]), (up.addr.encode(), b"1"),
                 "one endpoint, one attempt")

    by_client = {d["client"]: d for d in recs}
    d = by_client[py["client"].encode()]
    check_eq((d["sni"], d["alpn"], d["tls"], d["cipher"], d["group"], d["cert"]),
             (b"a.test", b"http/1.1", py["tls"].encode(), py["cipher"].encode(), b"x25519",
              b"a.test"), "python client's line")
    check(d["cert_index"] in (b"0", b"1"), "cert_index %r" % d["cert_index"])
    check_eq((d["bytes_in"], d["bytes_out"]), (b"%d" % py["bytes_in"], b"%d" % py["bytes_out"]),
             "python client's bytes")
    d = by_client[b"127.0.0.1:" + curl_port.encode()]
    check_eq((d["sni"], d["alpn"], d["tls"], d["cert"], d["cert_index"]),
             (b"b.test", b"http/1.1", b"TLSv1.3", b"b.test", b"2"), "curl's line")
    tls12 = [d for d in recs if d["tls"] == b"TLSv1.2"]
    check_eq(len(tls12), 1, "one TLS 1.2 line (s_client)")
    d = tls12[0]
    check_eq((d["sni"], d["alpn"], d["cipher"], d["group"], d["cert"], d["cert_index"],
              d["bytes_in"]),
             (b"a.test", b"h2", ec_cipher.encode(), b"secp256r1", b"a.test", b"1",
              b"%d" % len(REQ)), "s_client's line (ECDSA certificate)")
    bench = [d for d in recs if d["alpn"] is None]
    check_eq(len(bench), 20, "tlsgate bench's lines (no ALPN)")

    # An SNI of arbitrary bytes: quoted and escaped in text.
    weird = b'we "ird"\\ \x01caf\xc3\xa9=-'
    s_client(t, port, [], sni=weird, data=b"")
    lines = tg_alog.wait_lines(path, 24)
    check_eq(lines[23].count(" sni="), 1, "one sni= in the line")
    check('sni="we \\"ird\\"\\\\ \\x01caf\\xc3\\xa9=-" ' in lines[23], "escaped: %s" % lines[23])
    check_eq(parse_text(lines[23])["sni"], weird, "the SNI decodes back")
    gw.stop_ok()
    return weird


def json_case(t, variant, up, weird):
    pair = t.cert("rsa", "a.test")
    path = t.path("access-%s.json" % variant)
    cfg = tglib.gw_config([tglib.listener([pair], up.addr, variant, name="json-l",
                                          tls={"alpn": ["http/1.1"]})])
    cfg["access_log"] = {"path": path, "format": "json", "buffer": "64KiB"}
    gw = t.gateway(cfg)
    py = python_client(gw.port)
    s_client(t, gw.port, ["-tls1_2"], sni=weird, data=b"")
    r = t.run_cmd([tglib.tlsgate_path(), "bench", "-k", "-n", "10", "-c", "2", "--quiet",
                   "--alpn", "http/1.1", "https://127.0.0.1:%d/" % gw.port], timeout=60)
    check_eq(r.returncode, 0, "tlsgate bench")
    tglib.settle(gw)
    recs = [parse_json(ln) for ln in tg_alog.wait_lines(path, 12)]
    check_eq(len(recs), 12, "JSON lines")
    for d in recs:
        check_eq((d["listener"], d["client_addr"], d["term"], d["upstream"], d["cert"],
                  d["cert_index"], d["resumed"]),
                 ("json-l", "127.0.0.1", "--", up.addr, "a.test", 0, False), "JSON fields")
        check(isinstance(d["client_port"], int) and isinstance(d["bytes_in"], int), "types")
        check_eq((d["peer_addr"], d["peer_port"], d["upstream_host"], d["attempts"]),
                 (d["client_addr"], d["client_port"], up.addr, 1), "peer, upstream_host, attempts")
        check(isinstance(d["handshake_ms"], float) and isinstance(d["duration_ms"], float),
              "times are numbers")
    d = [d for d in recs if d["client_port"] == int(py["client"].split(":")[1])][0]
    check_eq((d["sni"], d["alpn"], d["tls"], d["cipher"], d["group"], d["bytes_in"],
              d["bytes_out"]),
             ("a.test", "http/1.1", py["tls"], py["cipher"], "x25519", py["bytes_in"],
              py["bytes_out"]), "python client's JSON line")
    d = [d for d in recs if d["tls"] == "TLSv1.2"][0]
    check_eq(d["sni"].encode("latin-1"), weird, "arbitrary SNI bytes survive JSON")
    check_eq((d["alpn"], d["bytes_in"], d["bytes_out"]), (None, 0, 0), "s_client's JSON line")
    gw.stop_ok()


def fallback_case(t, up):
    pair = t.cert("rsa", "a.test")
    path = t.path("access-fallback.log")
    prov = {"provider_name": "deferred",
            "typed_config": {"fail_every": 1, "fail_mode": "error", "key_exchange": False}}
    cfg = tglib.gw_config([tglib.listener([tglib.cert_entry(pair[0], pair[1], prov)], up.addr)])
    cfg["access_log"] = {"path": path}
    gw = t.gateway(cfg)
    for _ in range(3):
        python_client(gw.port)
    tglib.settle(gw)
    for d in map(parse_text, tg_alog.wait_lines(path, 3)):
        check_eq((d["key_provider"], d["key_fallbacks"], d["term"]), (b"deferred", b"1", b"--"),
                 "one signature finished in software")
    gw.stop_ok()


def raw(port, data=b"", close="fin", read=True, timeout=10):
    """A plain TCP client: send data, then FIN / RST / nothing; read until EOF."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout * tglib.SCALE)
    try:
        if data:
            s.sendall(data)
        if close == "rst":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        if close == "fin":
            s.shutdown(socket.SHUT_WR)
        if read:
            try:
                while s.recv(4096):
                    pass
            except (ConnectionResetError, socket.timeout):
                pass
    finally:
        s.close()


def full_backlog_listener():
    """A listener that never accepts, with a full accept queue (the kernel
    drops further SYNs: connects time out); None where loopback accepts anyway."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    fillers = []
    for _ in range(3):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(lsock.getsockname())
        fillers.append(c)
    time.sleep(0.1)
    probe = socket.socket()
    probe.settimeout(0.3)
    try:
        probe.connect(lsock.getsockname())
        ok = False
    except (socket.timeout, OSError):
        ok = True
    finally:
        probe.close()
    return (lsock, fillers) if ok else None


def codes_case(t, up):
    """Every code we can provoke, then the lines reconciled with the counters."""
    pair = t.cert("rsa", "a.test")
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))  # bound, not listening: connect -> refused
    dead_addr = "127.0.0.1:%d" % dead.getsockname()[1]
    full = full_backlog_listener()
    reset_up, silent_up = t.upstream("reset"), t.upstream("silent")
    L = tglib.listener
    ls = [L([pair], up.addr, name="ok"), L([pair], dead_addr, name="refused"),
          L([pair], reset_up.addr, name="reset"), L([pair], silent_up.addr, name="silent"),
          L([pair], silent_up.addr, name="strict", tls={"require_close_notify": True}),
          L([tglib.cert_entry(pair[0], pair[1], {
              "provider_name": "deferred",
              "typed_config": {"fail_every": 1, "fail_mode": "fatal", "key_exchange": False}})],
            up.addr, name="keyfail")]
    if full:
        ls.append(L([pair], "127.0.0.1:%d" % full[0].getsockname()[1], name="full",
                    upstream_extra={"connect_timeout": "300ms"}))
    path = t.path("access-codes.log")
    # Timeouts long enough that no step but the one waiting for it meets them.
    # Scaled where everything is slower (valgrind: a handshake can take a
    # second there).
    S = tglib.SCALE
    cfg = tglib.gw_config(ls, limits={"first_byte_timeout": "%gs" % S,
                                      "handshake_timeout": "%gs" % (2 * S),
                                      "idle_timeout": "%gs" % (4 * S),
                                      "drain_timeout": "%gms" % (500 * S)})
    cfg["access_log"] = {"path": path}
    gw = t.gateway(cfg)
    P = gw.ports
    want = {}

    def expect(code, n=1):
        want[code] = want.get(code, 0) + n

    python_client(P["ok"])
    expect("--")
    for name, code in (("refused", "UF"), ("silent", "IT")):
        with tglib.tls_connect(P[name]) as s:
            if name == "silent":
                s.sendall(REQ)
            tglib.recv_all(s)
        expect(code)
    if full:
        with tglib.tls_connect(P["full"]) as s:
            tglib.recv_all(s)
        expect("UT")
    with tglib.tls_connect(P["reset"]) as s:
        try:
            tglib.recv_all(s)
        except (ConnectionResetError, ssl.SSLError):
            pass
    expect("UR|UF")  # a RST before the connect completed is a failed connect
    raw(P["ok"], b"", "none")  # silence: first-byte timeout
    expect("FT")
    raw(P["ok"], tglib.client_hello()[:60], "none")  # half a ClientHello, then silence
    expect("HT")
    raw(P["ok"], b"GET / HTTP/1.1\r\n\r\n")  # plaintext: protocol error
    expect("HF")
    raw(P["ok"], tglib.client_hello()[:60], "fin")  # half a ClientHello, then FIN
    expect("HC")
    with socket.create_connection(("127.0.0.1", P["keyfail"])) as s:
        try:
            tglib.client_ctx().wrap_socket(s, server_hostname="a.test").close()
        except (ssl.SSLError, OSError):
            pass
    expect("KF")
    # CD: a client that resets while proxying: only once its byte reached
    # the upstream (a reset that races the end of the handshake is another
    # story).
    with silent_up.lock:
        n0 = len(silent_up.conns)
    s = tglib.tls_connect(P["silent"])
    s.sendall(b"x")

    def forwarded():
        with silent_up.lock:
            return len(silent_up.conns) > n0 and bytes(silent_up.conns[n0].received) == b"x"
    tglib.wait_until(forwarded, 10, "the CD client's byte at the upstream")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    expect("CD")
    # CT: a FIN without close_notify where require_close_notify is set.
    with silent_up.lock:
        n0 = len(silent_up.conns)
    c = tglib.BioTLS(P["strict"], "1.3")
    try:
        c.send(b"z")
        tglib.wait_until(lambda: len(silent_up.conns) > n0
                         and bytes(silent_up.conns[n0].received) == b"z", 10,
                         "the CT client's byte at the upstream")
        c.sock.shutdown(socket.SHUT_WR)
        try:
            c.read_until_close()
        except (ssl.SSLError, OSError):
            pass  # tlsgate may answer the truncation with an alert or a reset
    finally:
        c.close()
    expect("CT")
    tglib.settle(gw)
    # Reconcile: lines by code against the counters.
    a = tg_alog.wait_written(gw)
    recs = [parse_text(ln) for ln in tg_alog.read_lines(path)]
    check_eq((len(recs), a["lines"], a["full"]), (a["ended"], a["ended"], 0),
             "one line per connection ended or refused")
    got = {}
    for d in recs:
        got[d["term"].decode()] = got.get(d["term"].decode(), 0) + 1
    # "UR|UF": either; the two groups sharing UF are checked together.
    for code, n in want.items():
        if "|" not in code and code != "UF":
            check_eq(got.get(code, 0), n, "lines with term %s (all: %r)" % (code, got))
    check_eq(got.get("UF", 0) + got.get("UR", 0), want["UF"] + want["UR|UF"],
             "lines with term UF or UR (all: %r)" % got)
    check_eq(len(recs), sum(want.values()), "lines (all: %r)" % got)
    st = gw.stats()

    def closed(reason):
        return st("tlsgate_connections_closed_total", reason=reason)
    for codes, counter in ((("--",), closed("normal")), (("CD",), closed("client_error")),
                           (("CT",), closed("client_truncated")),
                           (("HF", "HC", "KF"), closed("handshake_failed")),
                           (("HT",), closed("handshake_timeout")),
                           (("UF", "UT"), closed("upstream_connect_failed")),
                           (("UR",), closed("upstream_error")), (("IT",), closed("idle_timeout")),
                           (("SD",), closed("shutdown")), (("IE",), closed("internal")),
                           (("FT",), closed("first_byte_timeout")), (("EV",), closed("evicted")),
                           (("LR",), st("tlsgate_connections_rejected_total",
                                        reason="max_connections"))):
        check_eq(sum(got.get(c, 0) for c in codes), counter, "lines %s = counter" % (codes,))
    check_eq(sum(got.get(c, 0) for c in ("HC", "HF", "KF")),
             st("tlsgate_handshakes_total", result="client_closed")
             + st("tlsgate_handshakes_total", result="protocol_error")
             + st("tlsgate_handshakes_total", result="key_operation_failed"), "handshake lines")
    check_eq(got.get("KF", 0), st("tlsgate_handshakes_total", result="key_operation_failed"),
             "KF lines")
    by = {c: [d for d in recs if d["term"].decode() == c] for c in got}
    d = by["UF"][0]
    check(d["upstream"] in (dead_addr.encode(), reset_up.addr.encode()) and d["connect_ms"],
          "UF line: upstream and connect time: %r" % d)
    d = by["HT"][0]
    check_eq((d["tls"], d["handshake_ms"], d["upstream"]), (None, None, None), "HT line")
    check(ms(d["duration_ms"]) >= 1900 * S, "HT after the handshake timeout: %r"
          % d["duration_ms"])
    d = by["FT"][0]
    check(d["tls"] is None and 900 * S <= ms(d["duration_ms"]) < 1900 * S,
          "FT after the first-byte timeout: %r" % d)
    check_eq(by["KF"][0]["key_provider"], b"deferred", "KF line names the provider")

    # SD: connections open at the drain timeout; their lines are written at exit.
    n_before = len(recs)
    open_ = [tglib.tls_connect(P["silent"]) for _ in range(2)]
    for s in open_:
        s.sendall(b"y")
    tglib.wait_until(lambda: gw.stats()("tlsgate_connections_active") == 2, 10, "2 open")
    gw.stop_ok(signal.SIGTERM)
    for s in open_:
        s.close()
    recs = [parse_text(ln) for ln in tg_alog.read_lines(path)]
    check_eq(len(recs), n_before + 2, "the SD lines were written at shutdown")
    check_eq([d["term"] for d in recs[n_before:]], [b"SD", b"SD"], "SD")
    dead.close()
    if full:
        full[0].close()
        for c in full[1]:
            c.close()
    else:
        print("    (no UT: this kernel accepts on a full listen(0) queue)")


def limit_case(t, up):
    """LR: a connection refused at accept (limits.max_connections) has a line;
    EV: at the limit, a connection still silent in its handshake is evicted
    for a new one (established connections never are)."""
    pair = t.cert("rsa", "a.test")
    path = t.path("access-limit.log")
    cfg = tglib.gw_config([tglib.listener([pair], up.addr, name="lim")],
                          limits={"max_connections": 2, "handshake_timeout": "60s",
                                  "first_byte_timeout": "60s"})
    cfg["access_log"] = {"path": path, "format": "json"}
    gw = t.gateway(cfg)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    # Established (handshake done): not evictable, so the third is refused.
    held = [ctx.wrap_socket(socket.create_connection(("127.0.0.1", gw.port)),
                            server_hostname="a.test") for _ in range(2)]
    # The server's side of a TLS 1.3 handshake ends when it has read the
    # client's Finished, which can be after wrap_socket returned: until
    # then a held connection is still handshaking, and evictable.
    tglib.wait_until(lambda: gw.stats()("tlsgate_handshakes_total", result="ok") == 2,
                     10 * tglib.SCALE, "2 held, their handshakes done")
    s = socket.create_connection(("127.0.0.1", gw.port))
    local = s.getsockname()[1]
    raw_wait_eof(s)
    d = parse_json(tg_alog.wait_lines(path, 1)[0])
    check_eq((d["term"], d["listener"], d["client_addr"], d["client_port"], d["handshake_ms"],
              d["tls"], d["duration_ms"]), ("LR", "lim", "127.0.0.1", local, None, None, 0.0),
             "LR line")
    check_eq(gw.stats()("tlsgate_connections_rejected_total"), 1, "rejected_total")
    for h in held:
        h.close()
    tglib.settle(gw)
    tg_alog.wait_lines(path, 3)
    # Silent ones (no byte sent): the oldest makes room for a new one.
    silent = [socket.create_connection(("127.0.0.1", gw.port)) for _ in range(2)]
    tglib.wait_until(lambda: gw.stats()("tlsgate_connections_active") == 2, 10, "2 silent")
    oldest = silent[0].getsockname()[1]
    late = socket.create_connection(("127.0.0.1", gw.port))
    raw_wait_eof(silent[0])
    recs = [parse_json(ln) for ln in tg_alog.wait_lines(path, 4)]
    ev = [d for d in recs if d["term"] == "EV"]
    check_eq([(d["client_port"], d["tls"]) for d in ev], [(oldest, None)], "EV line")
    for x in silent[1:] + [late]:
        x.close()
    tglib.settle(gw)
    check_eq(gw.stats()("tlsgate_connections_rejected_total"), 1, "rejected_total after eviction")
    gw.stop_ok()


def raw_wait_eof(s):
    s.settimeout(10 * tglib.SCALE)
    try:
        while s.recv(4096):
            pass
    except ConnectionResetError:
        pass
    s.close()


def main(t):
    up = t.upstream("http")
    for variant in ("software", "deferred"):
        with t.case("%s: text lines from python, s_client, curl, tlsgate bench" % variant):
            weird = fields_case(t, variant, up)
        with t.case("%s: JSON lines parse, arbitrary SNI bytes survive" % variant):
            json_case(t, variant, up, weird)
    with t.case("key operations that fall back to software are counted per line"):
        fallback_case(t, up)
    with t.case("termination codes, reconciled with the counters; SD at shutdown"):
        codes_case(t, up)
    with t.case("LR: refused at accept (max_connections); EV: a silent one evicted at the limit"):
        limit_case(t, up)


if __name__ == "__main__":
    tglib.run(main, timeout=240)
