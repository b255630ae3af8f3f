#!/usr/bin/env bash
# test_systemd_unit: deploy/tlsgate.service is a valid unit (systemd-analyze
# verify, on a copy whose commands point at the built binary; skipped with a
# message where systemd-analyze is missing) that hands the key over with
# LoadCredential= to a DynamicUser, and the hand-over works with tlsgate: a
# configuration naming the credential copies (mode 0400, as systemd makes
# them) passes check-config without a key warning, while the same key
# readable by everyone is warned about.
TG_SRC_DIR=${TG_SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$TG_SRC_DIR/tests/integration/lib.sh"
tg_init 60

unit=$TG_SRC_DIR/deploy/tlsgate.service

tg_case "the unit: LoadCredential for the key and the certificate, a dynamic user"
tg_expect_grep '^LoadCredential=tls\.key:/etc/tlsgate/tls\.key$' "$unit" "key credential"
tg_expect_grep '^LoadCredential=tls\.crt:/etc/tlsgate/tls\.crt$' "$unit" "certificate credential"
tg_expect_grep '^DynamicUser=yes$' "$unit" "dynamic user"
tg_expect_grep 'filename: /run/credentials/tlsgate\.service/tls\.key' "$unit" \
    "the configuration line for the key, in the unit's comment"

tg_case "systemd-analyze verify"
if command -v systemd-analyze >/dev/null 2>&1; then
    sed "s|/usr/local/bin/tlsgate|$TLSGATE|g" "$unit" > "$TG_TMP/tlsgate.service"
    systemd-analyze verify "$TG_TMP/tlsgate.service" > "$TG_TMP/verify.out" 2>&1 ||
        { cat "$TG_TMP/verify.out"; tg_fail "systemd-analyze verify failed"; }
    # verify prints problems without failing for some of them.
    [ ! -s "$TG_TMP/verify.out" ] || { cat "$TG_TMP/verify.out"; tg_fail "systemd-analyze: output"; }
else
    echo "    SKIPPED: systemd-analyze is not installed"
fi

tg_case "credential copies (0400) pass check-config without a key warning"
read -r CERT KEY < <(tg_cert ec a.test)
creds=$TG_TMP/credentials/tlsgate.service
mkdir -p "$creds"
install -m 0400 "$KEY" "$creds/tls.key"
install -m 0400 "$CERT" "$creds/tls.crt"
conf() {
    printf 'certificate_expiry_warning: 0s\nlisteners:\n  - address: 127.0.0.1:0\n    tls:\n'
    printf '      certificates:\n        - certificate_chain: { filename: %s }\n' "$1"
    printf '          private_key: { filename: %s }\n' "$2"
    printf '    upstream: { address: 127.0.0.1:1 }\n'
}
conf "$creds/tls.crt" "$creds/tls.key" > "$TG_TMP/creds.yaml"
"$TLSGATE" check-config "$TG_TMP/creds.yaml" > "$TG_TMP/creds.out" 2> "$TG_TMP/creds.err" ||
    { cat "$TG_TMP/creds.err"; tg_fail "check-config with the credential copies"; }
tg_expect_nogrep 'warning' "$TG_TMP/creds.err" "no warning"

tg_case "the same key readable by everyone: warned"
cp "$KEY" "$TG_TMP/open.key"
chmod 0644 "$TG_TMP/open.key"
conf "$creds/tls.crt" "$TG_TMP/open.key" > "$TG_TMP/open.yaml"
"$TLSGATE" check-config "$TG_TMP/open.yaml" > "$TG_TMP/open.out" 2> "$TG_TMP/open.err" ||
    { cat "$TG_TMP/open.err"; tg_fail "check-config exit status"; }
tg_expect_grep "^tlsgate: warning: .*open\.yaml:7:36: listeners\[0\]\.tls\.certificates\[0\]\.private_key: '.*open\.key' \(mode 0644\) can be read by every user of this machine" \
    "$TG_TMP/open.err" "key warning"

tg_pass
