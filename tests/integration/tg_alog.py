"""tg_alog: reading tlsgate's access log in the integration tests.

parse_text(line)  one key=value line -> {key: bytes}; checks the quoting
                  rules (bare values are printable ASCII without '"', '\\',
                  '='; quoted values use only \\" \\\\ \\xHH escapes)
parse_json(line)  one JSON line -> dict; checks it is ASCII only
read_lines(path)  the complete lines of a file (a partial last line is not
                  a line yet)
"""
import json
import os
import re

import tglib
from tglib import check

TEXT_KEYS = ["time", "listener", "client", "peer", "sni", "alpn", "tls", "cipher", "group",
             "cert", "cert_index", "key_provider", "key_fallbacks", "resumed", "handshake_ms",
             "upstream", "upstream_host", "attempts", "connect_ms", "bytes_in", "bytes_out",
             "duration_ms", "term", "client_subject", "client_san", "client_fingerprint"]
JSON_KEYS = ["time", "listener", "client_addr", "client_port", "peer_addr", "peer_port", "sni",
             "alpn", "tls", "cipher", "group", "cert", "cert_index", "key_provider",
             "key_fallbacks", "resumed", "handshake_ms", "upstream", "upstream_host", "attempts",
             "connect_ms", "bytes_in", "bytes_out", "duration_ms", "term", "client_subject",
             "client_san", "client_fingerprint"]
CODES = ("--", "CD", "CT", "HC", "KF", "HF", "HT", "FT", "EV", "SL", "PT", "PH", "UT", "UF", "NH",
         "UR", "IT", "SD", "IE", "LR", "LS")
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
_PAIR = re.compile(rb'([a-z_]+)=("(?:[^"\\]|\\["\\]|\\x[0-9a-f]{2})*"|[!#-<>-\[\]-~]+)( |$)')
_ESC = re.compile(rb'\\(["\\]|x[0-9a-f]{2})')


def _unescape(m):
    e = m.group(1)
    return e if e in (b'"', b"\\") else bytes([int(e[1:], 16)])


def parse_text(line):
    """{key: bytes} of one text line (no trailing newline); None for '-'."""
    if isinstance(line, str):
        line = line.encode("latin-1")
    out, keys, pos = {}, [], 0
    while pos < len(line):
        m = _PAIR.match(line, pos)
        check(m is not None, "bad access-log text at byte %d: %r" % (pos, line[pos:pos + 60]))
        k, v = m.group(1).decode(), m.group(2)
        if v.startswith(b'"'):
            v = _ESC.sub(_unescape, v[1:-1])
        elif v == b"-":
            v = None
        out[k] = v
        keys.append(k)
        pos = m.end()
    check(keys == TEXT_KEYS, "text keys %r" % keys)
    check(TIME_RE.match(out["time"].decode()), "time %r" % out["time"])
    check(out["term"].decode() in CODES, "term %r" % out["term"])
    return out


def parse_json(line):
    check(all(32 <= b < 127 for b in line.encode("latin-1")), "non-ASCII JSON line: %r" % line)
    d = json.loads(line)
    check(list(d) == JSON_KEYS, "JSON keys %r" % list(d))
    check(TIME_RE.match(d["time"]), "time %r" % d["time"])
    check(d["term"] in CODES, "term %r" % d["term"])
    return d


def read_lines(path):
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    return [ln.decode("latin-1") for ln in lines[:-1]]


def wait_lines(path, n, timeout=10, pred=None):
    """Wait until path holds at least n lines (bounded); returns them."""
    def enough():
        ls = [ln for ln in read_lines(path) if pred is None or pred(ln)]
        return ls if len(ls) >= n else None
    return tglib.wait_until(enough, timeout, "%d access-log line(s) in %s" % (n, path))


def access_stats(gw):
    st = gw.stats()
    return {"lines": st("tlsgate_access_log_lines_total"),
            "full": st("tlsgate_access_log_dropped_total", reason="buffer_full"),
            "lost": st("tlsgate_access_log_dropped_total", reason="write_error"),
            "ended": (st("tlsgate_connections_closed_total")
                      + st("tlsgate_connections_rejected_total")),
            "accepted": st("tlsgate_connections_accepted_total"),
            "rejected": st("tlsgate_connections_rejected_total")}


def wait_written(gw, timeout=10):
    """Wait until every connection that ended has its line written (or
    counted as dropped); returns access_stats."""
    last = {}

    def done():
        last["a"] = a = access_stats(gw)
        return a["lines"] + a["full"] + a["lost"] == a["ended"] and a
    try:
        return tglib.wait_until(done, timeout, "every line written")
    except tglib.TestFailure:
        raise tglib.TestFailure("access-log lines never caught up: %r" % last.get("a")) from None
