#!/usr/bin/env bash
# openssl s_client against tlsgate, for every key provider variant (software,
# deferred with asynchronous key exchange, deferred with delay: 5ms):
# TLS 1.2 and 1.3 x RSA-2048 and ECDSA P-256 certificates x X25519 and P-256
# key exchange. Checks the negotiated version, cipher, signature type and
# group, that an HTTP request reaches the upstream and its answer comes back,
# configured cipher_list / cipher_suites, min_version: TLSv1.3 and an old
# TLS 1.1 client being refused, and the /stats counters of each.
. "$(dirname "$0")/lib.sh"
tg_init 120

read -r RSA_CERT RSA_KEY < <(tg_cert rsa a.test)
read -r EC_CERT EC_KEY < <(tg_cert ec a.test)
tg_bench_serve

tg__protoerr() { [ "$(tg_stat tlsgate_handshakes_total result=protocol_error)" -ge "$1" ]; }

REQ=$'GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n'

# sclient PORT OUT ARGS...: one request through s_client -brief; output in OUT.
sclient() {
    local port=$1 out=$2
    shift 2
    printf '%s' "$REQ" | tg_run 15 openssl s_client -connect "127.0.0.1:$port" -servername a.test \
        -brief -ign_eof "$@" > "$out" 2>&1
}

for prov in $TG_PROVIDERS; do
    tg_config "gw-$prov.yaml" <<EOF
admin: { address: 127.0.0.1:0 }
listeners:
  - name: rsa
    address: 127.0.0.1:0
    tls:
      certificates:
        - certificate_chain: { filename: $RSA_CERT }
          private_key: { filename: $RSA_KEY }
$(tg_provider_yaml "$prov" 10)
    upstream: { address: $UP_ADDR }
  - name: ec
    address: 127.0.0.1:0
    tls:
      certificates:
        - certificate_chain: { filename: $EC_CERT }
          private_key: { filename: $EC_KEY }
$(tg_provider_yaml "$prov" 10)
    upstream: { address: $UP_ADDR }
  - name: ciphers
    address: 127.0.0.1:0
    tls:
      certificates:
        - certificate_chain: { filename: $RSA_CERT }
          private_key: { filename: $RSA_KEY }
$(tg_provider_yaml "$prov" 10)
      cipher_list: ECDHE-RSA-CHACHA20-POLY1305
      cipher_suites: TLS_CHACHA20_POLY1305_SHA256
    upstream: { address: $UP_ADDR }
  - name: tls13only
    address: 127.0.0.1:0
    tls:
      certificates:
        - certificate_chain: { filename: $RSA_CERT }
          private_key: { filename: $RSA_KEY }
$(tg_provider_yaml "$prov" 10)
      min_version: TLSv1.3
    upstream: { address: $UP_ADDR }
EOF
    tg_gateway "gw-$prov.yaml"
    n_rsa=0 n_ec=0
    for kind in rsa ec; do
        port=$(tg_listener_port "$kind")
        for ver in 1.2 1.3; do
            for group in X25519 P-256; do
                tg_case "$prov: $kind certificate, TLS $ver, $group"
                out=$TG_TMP/out-$prov-$kind-$ver-$group
                groups=$group
                # TLS 1.2 ECDSA: the certificate's curve must be among the
                # client's groups (RFC 8422); the server still prefers X25519.
                [ "$kind$ver$group" = ec1.2X25519 ] && groups=X25519:P-256
                sclient "$port" "$out" "-tls${ver/./_}" -groups "$groups" ||
                    { cat "$out"; tg_fail "s_client failed"; }
                tg_expect_grep "^Protocol version: TLSv$ver\$" "$out" "version"
                tg_expect_grep "^Peer certificate: $(tg_cn_re a.test)\$" "$out" "certificate"
                if [ "$ver" = 1.2 ]; then
                    if [ "$kind" = rsa ]; then want=ECDHE-RSA-AES128-GCM-SHA256; else want=ECDHE-ECDSA-AES128-GCM-SHA256; fi
                    tg_expect_grep "^Ciphersuite: $want\$" "$out" "TLS 1.2 cipher (server preference)"
                else
                    tg_expect_grep '^Ciphersuite: TLS_AES_256_GCM_SHA384$' "$out" "TLS 1.3 cipher suite"
                fi
                if [ "$kind" = rsa ]; then
                    tg_expect_grep "^Signature type: $TG_SIG_RSA_PSS\$" "$out" "signature type"
                else
                    tg_expect_grep "^Signature type: $TG_SIG_ECDSA\$" "$out" "signature type"
                fi
                if [ "$group" = X25519 ]; then
                    tg_expect_grep "^$TG_TEMP_KEY: X25519, " "$out" "key exchange group"
                else
                    tg_expect_grep "^$TG_TEMP_KEY: ECDH, prime256v1, " "$out" "key exchange group"
                fi
                tg_expect_grep '^hello from tlsgate upstream$' "$out" "upstream answer"
                tg_expect_grep '^HTTP/1.1 200 OK' "$out" "upstream status line"
                if [ "$kind" = rsa ]; then n_rsa=$((n_rsa + 1)); else n_ec=$((n_ec + 1)); fi
            done
        done
    done

    tg_case "$prov: configured cipher_list / cipher_suites"
    port=$(tg_listener_port ciphers)
    sclient "$port" "$TG_TMP/c12" -tls1_2 || { cat "$TG_TMP/c12"; tg_fail "s_client failed"; }
    tg_expect_grep '^Ciphersuite: ECDHE-RSA-CHACHA20-POLY1305$' "$TG_TMP/c12" "cipher_list"
    sclient "$port" "$TG_TMP/c13" -tls1_3 || { cat "$TG_TMP/c13"; tg_fail "s_client failed"; }
    tg_expect_grep '^Ciphersuite: TLS_CHACHA20_POLY1305_SHA256$' "$TG_TMP/c13" "cipher_suites"
    tg_expect_grep '^hello from tlsgate upstream$' "$TG_TMP/c13" "upstream answer"
    n_rsa=$((n_rsa + 2))

    tg_case "$prov: min_version TLSv1.3 refuses TLS 1.2; TLS 1.1 refused by default"
    failed0=$(tg_stat tlsgate_handshakes_total result=protocol_error)
    port=$(tg_listener_port tls13only)
    if sclient "$port" "$TG_TMP/m12" -tls1_2; then cat "$TG_TMP/m12"; tg_fail "TLS 1.2 accepted by min_version: TLSv1.3"; fi
    tg_expect_nogrep 'hello from tlsgate upstream' "$TG_TMP/m12" "no data after a refused handshake"
    sclient "$port" "$TG_TMP/m13" -tls1_3 || { cat "$TG_TMP/m13"; tg_fail "TLS 1.3 refused"; }
    n_rsa=$((n_rsa + 1))
    port=$(tg_listener_port rsa)
    if sclient "$port" "$TG_TMP/m11" -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0'; then
        cat "$TG_TMP/m11"; tg_fail "TLS 1.1 accepted"
    fi
    tg_wait_for 5 "2 protocol errors" tg__protoerr $((failed0 + 2))

    tg_case "$prov: /stats"
    tg_settle
    total=$((n_rsa + n_ec))
    tg_expect_eq "$(tg_stat tlsgate_handshakes_total result=ok)" "$total" "handshakes ok"
    tg_expect_eq "$(tg_stat tlsgate_upstream_connects_total result=ok)" "$total" "upstream connects"
    tg_expect_eq "$(tg_stat tlsgate_handshakes_by_version_total version=TLSv1.3)" $((total / 2 + 1)) "TLS 1.3 handshakes"
    if [ "${prov#deferred}" != "$prov" ]; then
        tg_expect_eq "$(tg_stat tlsgate_keyprov_operations_total provider=deferred type=rsa_sign)" "$n_rsa" "deferred rsa_sign"
        tg_expect_eq "$(tg_stat tlsgate_keyprov_operations_total provider=deferred type=ecdsa_sign)" "$n_ec" "deferred ecdsa_sign"
        tg_expect_ge "$(tg_stat tlsgate_keyprov_operations_total provider=deferred type=kx_keygen)" "$total" "deferred kx_keygen"
        tg_expect_ge "$(tg_stat tlsgate_keyprov_operations_total provider=deferred type=kx_derive)" "$total" "deferred kx_derive"
        tg_expect_eq "$(tg_stat tlsgate_keyprov_operations_failed_total provider=deferred)" 0 "deferred failures"
        tg_expect_grep "key provider 'deferred'" "$GW_LOG" "startup log names the provider"
        tg_expect_grep "key exchange: deferred" "$GW_LOG" "startup log: key exchange through the provider"
    elif [ "$prov" = software ]; then
        tg_expect_grep "key exchange: software" "$GW_LOG" "startup log: inline key exchange"
    fi
    tg_gateway_stop
done
tg_pass
