/*
 * tg_cmb_batch: batches of key operations through crypto_mb (tg_mbx.h), for
 * the `cryptomb` key provider: the arithmetic layer under the provider's
 * policy (tg_cryptomb.c).
 *
 * Each function takes up to TG_MBX_LANES operations of one kind and runs them
 * in one multi-buffer call (two for RSA with the fault check), whatever the
 * fill: lane i of the batch is ops[i]; lanes n..7 are left empty.
 *
 * Common contract
 *  - Thread: any thread, but on a normal thread stack: crypto_mb needs up to
 *    ~128 KiB of stack for RSA-4096 (measured: 70 KiB for RSA-2048, 98 KiB for
 *    3072, 125 KiB for 4096), up to ~20 KiB for EC (P-521 ECDSA), 4 KiB for
 *    X25519. Never inside an ASYNC job
 *    (32 KiB stacks). No locks; uses the default OpenSSL library context.
 *  - Inputs: the op fields named below; ops are not otherwise modified except
 *    op->out / op->outlen (outlen = 0 on failure; a failed lane's output is
 *    never released). The op's state, result and stats are the caller's:
 *    pass results[i] and reasons[i] to tg_keyop_complete().
 *  - Return: TG_OK when every lane got its own result (some may be errors);
 *    TG_EINVAL with nothing written when n > TG_MBX_LANES or an array is NULL;
 *    TG_EUNAVAIL when crypto_mb is not loaded or cannot do this kind of batch
 *    here (every lane then gets TG_EDEVICE / TG_FALLBACK_DEVICE_ERROR).
 *    n == 0 is a no-op returning TG_OK.
 *  - Per-lane results:
 *      TG_OK       out/outlen written.
 *      TG_EDEVICE  crypto_mb could not do this lane (lane status error, an
 *                  output left unwritten although the lane reported success
 *                  -- every output is zeroed before the call and an
 *                  all-zero signature, public key or shared secret is
 *                  refused --, fault check failed, a key or digest
 *                  crypto_mb cannot take):
 *                  finish it in software; reasons[i] says why
 *                  (TG_FALLBACK_LANE_ERROR or TG_FALLBACK_FAULT_CHECK).
 *      TG_EPROTO   the peer's fault (X25519 low-order point): fail the
 *                  handshake, no fallback (OpenSSL fails it too).
 *      TG_EINVAL   the caller broke the contract for this lane (wrong op
 *                  type, a key of another size/curve than lane 0's, bad
 *                  lengths); no overflow ever results.
 *      TG_ECRYPTO  OpenSSL failed locally (RNG, allocation, encoding).
 *    reasons[i] is TG_FALLBACK_REASON_COUNT ("none") unless results[i] is
 *    TG_EDEVICE; tg_keyop_complete() ignores it then.
 *  - Secrets: nonces, private scalars and the library's stack residue are
 *    wiped before return.
 */
#ifndef TG_CMB_BATCH_H
#define TG_CMB_BATCH_H

#include <stdbool.h>
#include <stddef.h>

#include "keyprov/tg_keyprov.h"
#include "providers/cryptomb/tg_mbx.h"
#include "keyprov/tg_pkey.h"

/*
 * Can crypto_mb sign with this certificate key here (loaded, algorithm
 * available, key shape usable)? TG_OK, or TG_EUNAVAIL with a reason:
 * RSA other than 2048/3072/4096 bits, RSA primes not both exactly
 * modulus/2 bits (crypto_mb's CRT requires it), a curve it lacks.
 * RSA keys with e != 65537 are supported (their fault check runs in scalar
 * OpenSSL: crypto_mb's public operation is for e = 65537 only).
 */
int tg_cmb_batch_key_supported(const struct tg_pkey *key, char *why, size_t whylen) TG_MUST_CHECK;
/* Can crypto_mb do key exchange (keygen and derive) for this group here? */
bool tg_cmb_batch_group_supported(enum tg_group g);

/*
 * RSA private-key signatures (TG_KEYOP_RSA_SIGN). Every op's pkey must be an
 * RSA key of the same modulus size as ops[0] (2048, 3072 or 4096; different
 * keys are fine). Reads pkey, md, rsa_padding, pss_saltlen, mgf1_md, in,
 * inlen; encodes with tg_rsa_pad (PKCS#1 v1.5 DigestInfo for SHA-1/2 family,
 * else TG_EDEVICE; PSS with a fresh salt), runs one
 * mbx_rsa_private_crt_ssl_mb8 call and verifies every signature whose lane
 * asks for it (check[i]; check NULL: every lane) with the public key before
 * release (one mbx_rsa_public_ssl_mb8 call for
 * e = 65537, scalar OpenSSL otherwise) against the encoded message: a
 * mismatch means a computation fault (Lenstra/Bellcore: a faulty CRT
 * signature reveals a prime factor), so the lane fails with TG_EDEVICE /
 * TG_FALLBACK_FAULT_CHECK and its output is wiped.
 * Output: out = signature, outlen = modulus bytes (big-endian, left-padded).
 */
int tg_cmb_batch_rsa_sign(struct tg_keyop *const ops[], size_t n, int results[],
                          enum tg_fallback_reason reasons[], const bool check[]) TG_MUST_CHECK;

/*
 * ECDSA signatures (TG_KEYOP_ECDSA_SIGN), P-256, P-384 or P-521; every
 * pkey on ops[0]'s curve. Reads pkey and in/inlen (the digest, 0..64 bytes,
 * any hash). The digest is converted to the integer e as ECDSA prescribes
 * (leftmost order-bits bits, e.g. the first 32 bytes of a SHA-512 digest for
 * P-256; shorter digests are taken whole), then reduced mod n because
 * crypto_mb requires 0 < e < n; e == 0 (probability 2^-256) goes to software
 * (TG_EDEVICE). The nonce k is uniform in [1, n-1] from OpenSSL's private
 * RNG (BN_priv_rand_range_ex) and wiped afterwards. Every signature whose
 * lane asks for it (check[i]; check NULL: every lane) is verified with the
 * key's public point before it is released: one mbx_nistp*_ecdsa_verify_ssl_mb8 call when the
 * library has it, else OpenSSL (tg_keyop_verify_sw). A signature that does not verify (a
 * computation fault, a lane crypto_mb got wrong) fails its lane with TG_EDEVICE /
 * TG_FALLBACK_FAULT_CHECK and is never written to out. Output: out = DER ECDSA-Sig-Value
 * (i2d_ECDSA_SIG), outlen = its length.
 */
int tg_cmb_batch_ecdsa_sign(struct tg_keyop *const ops[], size_t n, int results[],
                            enum tg_fallback_reason reasons[], const bool check[]) TG_MUST_CHECK;

/*
 * Ephemeral key pairs for one group (X25519, P-256, P-384, P-521), one per
 * keys[i] (caller-owned; any previous content is wiped and its software twin
 * freed). X25519: 32 random bytes, clamped as OpenSSL stores them (crypto_mb
 * clamps again internally), public = mbx_x25519_public_key_mb8. EC: private
 * scalar uniform in [1, n-1], public from mbx_nistp*_ecpublic_key_ssl_mb8 in
 * affine form, stored uncompressed (04 || X || Y).
 * On TG_OK fills group, priv/privlen, pub/publen, has_priv, has_pub.
 * Per-lane results: TG_OK, TG_EDEVICE (lane error: generate it in software),
 * TG_EINVAL (keys[i] NULL), TG_ECRYPTO (RNG). Used for ops and for refilling a
 * pool of pre-generated keys.
 */
int tg_cmb_batch_keygen(struct tg_kxkey *const keys[], size_t n, enum tg_group group,
                        int results[]) TG_MUST_CHECK;

/*
 * Shared secrets (TG_KEYOP_KX_DERIVE): op->kx is our key (has_priv), op->peer
 * the peer's share (has_pub; EC points were validated on the curve by
 * tg_kxkey_set_public), both of ops[0]'s group.
 * X25519: mbx_x25519_mb8; a low-order peer point (one of the encodings
 * whose secret is all zero for every key) is TG_EPROTO before the call, as
 * OpenSSL refuses it; any other all-zero result (or crypto_mb's low-order
 * flag) goes to software (TG_EDEVICE), which answers as OpenSSL does. Peer
 * values with a run of >= 32 equal
 * bits (never from an honest peer) go to software (TG_EDEVICE): crypto_mb
 * 1.0.14 computes some such values wrongly (see tg_cmb_batch_kx.c).
 * EC: mbx_nistp*_ecdh_ssl_mb8 with the
 * peer in affine form; a lane crypto_mb refuses goes to software (TG_EDEVICE),
 * which gives the definitive answer.
 * Output: out = the x-coordinate / u-coordinate, outlen = 32, 32, 48, 66
 * (fixed length, like OpenSSL's ECDH/X25519 derive).
 */
int tg_cmb_batch_derive(struct tg_keyop *const ops[], size_t n, int results[],
                        enum tg_fallback_reason reasons[]) TG_MUST_CHECK;

#endif
