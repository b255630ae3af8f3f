#!/usr/bin/env bash
# SNI and ALPN with openssl s_client, for every key provider variant.
#   one listener, four certificates:
#     a.test RSA            (first: the default)
#     b.test RSA + b.test ECDSA (same names: chosen by the client's -sigalgs)
#     c.test ECDSA with server_names [c.test, "*.wild.test"] (overrides its SANs)
#   -servername picks the certificate (subject and SAN of the presented one are
#   checked), an unknown name and no SNI at all get the first one.
#   ALPN [h2, http/1.1]: -alpn http/1.1 -> http/1.1, h2,http/1.1 -> h2 (server
#   order), no overlap -> no ALPN and the connection still works; a listener
#   without alpn negotiates none.
. "$(dirname "$0")/lib.sh"
tg_init 120

read -r A_CERT A_KEY < <(tg_cert rsa a.test)
read -r B_CERT B_KEY < <(tg_cert rsa b.test b.test www.b.test)
read -r BE_CERT BE_KEY < <(tg_cert ec b.test b.test www.b.test)
read -r C_CERT C_KEY < <(tg_cert ec c.test c.test)
tg_bench_serve

REQ=$'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'

# sclient PORT OUT ARGS...: full (non-brief) s_client output in OUT.
sclient() {
    local port=$1 out=$2
    shift 2
    printf '%s' "$REQ" | tg_run 15 openssl s_client -connect "127.0.0.1:$port" -ign_eof "$@" > "$out" 2>&1 ||
        { cat "$out"; tg_fail "s_client $* failed"; }
    tg_expect_grep '^hello from tlsgate upstream$' "$out" "upstream answer"
}

# san OUT: the subjectAltName of the certificate the server presented.
san() {
    sed -n '/-----BEGIN CERTIFICATE-----/,/-----END CERTIFICATE-----/p' "$1" |
        openssl x509 -noout -ext subjectAltName | tail -n +2 | tr -d ' '
}

for prov in $TG_PROVIDERS; do
    tg_config "gw-$prov.yaml" <<EOF
admin: { address: 127.0.0.1:0 }
listeners:
  - name: sni
    address: 127.0.0.1:0
    tls:
      certificates:
        - certificate_chain: { filename: $A_CERT }
          private_key: { filename: $A_KEY }
$(tg_provider_yaml "$prov" 10)
        - certificate_chain: { filename: $B_CERT }
          private_key: { filename: $B_KEY }
$(tg_provider_yaml "$prov" 10)
        - certificate_chain: { filename: $BE_CERT }
          private_key: { filename: $BE_KEY }
$(tg_provider_yaml "$prov" 10)
        - certificate_chain: { filename: $C_CERT }
          private_key: { filename: $C_KEY }
          server_names: [c.test, "*.wild.test"]
$(tg_provider_yaml "$prov" 10)
      alpn: [h2, http/1.1]
    upstream: { address: $UP_ADDR }
  - name: noalpn
    address: 127.0.0.1:0
    tls:
      certificates:
        - certificate_chain: { filename: $A_CERT }
          private_key: { filename: $A_KEY }
$(tg_provider_yaml "$prov" 10)
    upstream: { address: $UP_ADDR }
EOF
    tg_gateway "gw-$prov.yaml"
    port=$(tg_listener_port sni)
    o=$TG_TMP/out

    for ver in 1.2 1.3; do
        v="-tls${ver/./_}"
        tg_case "$prov TLS $ver: SNI a.test / unknown / none -> a.test (the first certificate)"
        for args in "-servername a.test" "-servername unknown.test" "-noservername"; do
            # shellcheck disable=SC2086
            sclient "$port" "$o" $v $args
            tg_expect_grep "^subject=$(tg_cn_re a.test)\$" "$o" "certificate for '$args'"
            tg_expect_eq "$(san "$o")" "DNS:a.test" "SAN for '$args'"
        done

        tg_case "$prov TLS $ver: SNI b.test: RSA or ECDSA by -sigalgs"
        sclient "$port" "$o" $v -servername b.test -sigalgs 'rsa_pss_rsae_sha256:RSA+SHA256'
        tg_expect_grep "^subject=$(tg_cn_re b.test)\$" "$o" "b.test certificate (RSA)"
        tg_expect_grep '^Server public key is 2048 bit$' "$o" "RSA key"
        tg_expect_grep "^Peer signature type: $TG_SIG_RSA\$" "$o" "RSA signature"
        tg_expect_eq "$(san "$o")" "DNS:b.test,DNS:www.b.test" "SAN of b.test (RSA)"
        sclient "$port" "$o" $v -servername www.b.test -sigalgs 'ECDSA+SHA256'
        tg_expect_grep "^subject=$(tg_cn_re b.test)\$" "$o" "b.test certificate (ECDSA)"
        tg_expect_grep '^Server public key is 256 bit$' "$o" "ECDSA key"
        tg_expect_grep "^Peer signature type: $TG_SIG_ECDSA\$" "$o" "ECDSA signature"
        tg_expect_eq "$(san "$o")" "DNS:b.test,DNS:www.b.test" "SAN of b.test (ECDSA)"

        tg_case "$prov TLS $ver: server_names override: c.test, *.wild.test"
        sclient "$port" "$o" $v -servername c.test
        tg_expect_grep "^subject=$(tg_cn_re c.test)\$" "$o" "c.test certificate"
        sclient "$port" "$o" $v -servername x.wild.test
        tg_expect_grep "^subject=$(tg_cn_re c.test)\$" "$o" "wildcard server_names"
        sclient "$port" "$o" $v -servername a.b.wild.test
        tg_expect_grep "^subject=$(tg_cn_re a.test)\$" "$o" "a wildcard matches one label only"

        tg_case "$prov TLS $ver: ALPN"
        sclient "$port" "$o" $v -servername a.test -alpn http/1.1
        tg_expect_grep '^ALPN protocol: http/1.1$' "$o" "ALPN http/1.1"
        sclient "$port" "$o" $v -servername a.test -alpn h2,http/1.1
        tg_expect_grep '^ALPN protocol: h2$' "$o" "ALPN h2 (server preference)"
        sclient "$port" "$o" $v -servername a.test -alpn http/1.1,h2
        tg_expect_grep '^ALPN protocol: h2$' "$o" "ALPN h2 (server preference, client order reversed)"
        sclient "$port" "$o" $v -servername a.test -alpn foo,bar
        tg_expect_grep '^No ALPN negotiated$' "$o" "no ALPN overlap"
        sclient "$port" "$o" $v -servername a.test
        tg_expect_grep '^No ALPN negotiated$' "$o" "client without ALPN"
        sclient "$(tg_listener_port noalpn)" "$o" $v -servername a.test -alpn h2
        tg_expect_grep '^No ALPN negotiated$' "$o" "listener without alpn"
    done

    tg_case "$prov: /stats"
    tg_settle
    tg_expect_eq "$(tg_stat tlsgate_handshakes_total result=ok)" 28 "handshakes ok"
    tg_expect_eq "$(tg_stat tlsgate_connections_closed_total reason=normal)" 28 "closed normally"
    if [ "${prov#deferred}" != "$prov" ]; then
        tg_expect_eq "$(tg_stat tlsgate_keyprov_operations_total provider=deferred type=ecdsa_sign)" 6 "deferred ecdsa_sign"
        tg_expect_eq "$(tg_stat tlsgate_keyprov_operations_total provider=deferred type=rsa_sign)" 22 "deferred rsa_sign"
    fi
    tg_gateway_stop
done

tg_pass
