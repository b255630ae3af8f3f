#!/usr/bin/env bash
# curl through tlsgate to the upstream, for every key provider variant
# (buffer_size smaller than a TLS record: see test_small_buffers.py):
#   - a short GET to `tlsgate bench --serve` (body checked), TLS 1.2 and 1.3;
#   - three requests on one kept-alive connection (one handshake);
#   - a 1 MiB response (bench --serve --response-size: Content-Length and
#     size) and a 1 MiB deterministic response from the Python upstream
#     (sha256 compared with the expected bytes);
#   - a 1 MiB POST body: the upstream reports the sha256 it received.
. "$(dirname "$0")/lib.sh"
tg_init 120

command -v curl > /dev/null || tg_skip "curl not installed"
read -r CERT KEY < <(tg_cert rsa a.test)
tg_bench_serve bench-small
SMALL=$UP_ADDR
tg_bench_serve bench-big --response-size 1048576
BIG=$UP_ADDR
tg_upstream http
PYHTTP=$UP_ADDR

head -c 1048576 /dev/urandom > "$TG_TMP/body.bin"
BODY_SHA=$(sha256sum < "$TG_TMP/body.bin" | awk '{print $1}')
WANT_SHA=$(python3 -c "import sys; sys.path.insert(0, '$TG_LIB_DIR'); import tg_upstream, hashlib; print(hashlib.sha256(tg_upstream.pattern_bytes(1048576)).hexdigest())")

listener() { # NAME UPSTREAM PROVIDER BUFSIZE
    cat <<EOF
  - name: $1
    address: 127.0.0.1:0
    tls:
      certificates:
        - certificate_chain: { filename: $CERT }
          private_key: { filename: $KEY }
$(tg_provider_yaml "$3" 10)
    upstream: { address: $2 }
EOF
}

c() { # PORT PATH [curl args...]: curl -sk to https://a.test:PORT/PATH
    local port=$1 path=$2
    shift 2
    tg_run 30 curl -sSk --resolve "a.test:$port:127.0.0.1" "$@" "https://a.test:$port$path"
}

for prov in $TG_PROVIDERS; do
    bufsize=16384
    tg_config "gw.yaml" <<EOF
admin: { address: 127.0.0.1:0 }
limits: { buffer_size: $bufsize }
listeners:
$(listener small "$SMALL" "$prov")
$(listener big "$BIG" "$prov")
$(listener py "$PYHTTP" "$prov")
EOF
    tg_gateway gw.yaml
    ps=$(tg_listener_port small) pb=$(tg_listener_port big) pp=$(tg_listener_port py)

    tg_case "$prov buffer_size $bufsize: GET, TLS 1.2 and 1.3"
    tg_expect_eq "$(c "$ps" / --tlsv1.2 --tls-max 1.2)" "hello from tlsgate upstream" "TLS 1.2 body"
    tg_expect_eq "$(c "$ps" / --tlsv1.3)" "hello from tlsgate upstream" "TLS 1.3 body"
    tg_expect_eq "$(c "$ps" / -o /dev/null -w '%{http_version} %{http_code} %{ssl_verify_result}')" "1.1 200 18" \
        "HTTP version, status, verify result (18 = self-signed)"

    tg_case "$prov buffer_size $bufsize: three requests on one connection"
    hs0=$(tg_stat tlsgate_handshakes_total result=ok)
    out=$(tg_run 30 curl -sSk --resolve "a.test:$ps:127.0.0.1" "https://a.test:$ps/1" "https://a.test:$ps/2" "https://a.test:$ps/3")
    tg_expect_eq "$(grep -c 'hello from tlsgate upstream' <<< "$out")" 3 "three bodies"
    tg_expect_eq "$(tg_stat tlsgate_handshakes_total result=ok)" $((hs0 + 1)) "one handshake for three requests"

    tg_case "$prov buffer_size $bufsize: 1 MiB response"
    c "$pb" / -o "$TG_TMP/big.out" -D "$TG_TMP/big.hdr"
    tg_expect_grep '^Content-Length: 1048576' "$TG_TMP/big.hdr" "Content-Length"
    tg_expect_eq "$(stat -c %s "$TG_TMP/big.out")" 1048576 "bytes received"
    c "$pp" /bytes/1048576 -o "$TG_TMP/py.out"
    tg_expect_eq "$(sha256sum < "$TG_TMP/py.out" | awk '{print $1}')" "$WANT_SHA" "sha256 of the 1 MiB response"

    tg_case "$prov buffer_size $bufsize: 1 MiB POST body"
    tg_settle
    resp=$(c "$pp" /upload --data-binary "@$TG_TMP/body.bin" -H 'Content-Type: application/octet-stream' -H 'Expect:')
    tg_expect_eq "$(python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print(j["method"], j["body_len"], j["body_sha256"])' "$resp")" \
        "POST 1048576 $BODY_SHA" "upstream saw the whole body"
    tg_settle
    tg_expect_ge "$(tg_stat tlsgate_bytes_total direction=client_to_upstream)" 1048576 "bytes client->upstream"
    tg_expect_ge "$(tg_stat tlsgate_bytes_total direction=upstream_to_client)" $((2 * 1048576)) "bytes upstream->client"
    tg_expect_eq "$(tg_stat tlsgate_handshakes_total result=ok)" 7 "handshakes ok"
    tg_gateway_stop
done

tg_pass
