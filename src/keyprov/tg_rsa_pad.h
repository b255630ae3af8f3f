/*
 * tg_rsa_pad: RSA signature encodings (RFC 8017), for providers that run
 * the raw private-key operation themselves (crypto_mb, QAT).
 *
 * OpenSSL's RSA_padding_add_* helpers are deprecated (and hidden by our
 * OPENSSL_NO_DEPRECATED), so the two encodings TLS uses are written here:
 *   EMSA-PKCS1-v1_5 (RFC 8017 9.2), DigestInfo for SHA-1/224/256/384/512;
 *   EMSA-PSS (RFC 8017 9.1.1), MGF1, random salt from RAND_bytes_ex.
 *
 * Output: the encoded message as a big-endian integer of exactly the modulus
 * length k = ceil(mod_bits / 8), smaller than the modulus, ready for the raw
 * private operation (s = em^d mod n).
 *
 * Nothing here is secret (the digest is public and the salt is sent in the
 * clear), so the code is not constant-time; it never reads or writes out of
 * bounds: every length is validated first, and on error em is zeroed.
 *
 * Thread-safe (no state); uses the default library context.
 */
#ifndef TG_RSA_PAD_H
#define TG_RSA_PAD_H

#include <openssl/evp.h>
#include <stddef.h>

#include "core/tg_err.h"

/* Largest modulus supported (bits); em buffers need at most bytes of it. */
#define TG_RSA_PAD_MAX_BITS 16384

/*
 * EMSA-PKCS1-v1_5: em = 00 01 FF..FF 00 DigestInfo(md) || digest, k bytes.
 *   em, k:     output buffer and its length; k must be ceil(mod_bits/8)
 *   mod_bits:  modulus size in bits (>= 512)
 *   md:        SHA-1, SHA-224, SHA-256, SHA-384 or SHA-512
 *   digest:    dlen bytes, dlen == EVP_MD_get_size(md)
 * Returns TG_OK; TG_EUNAVAIL for any other digest (no DigestInfo here:
 * finish such a signature in software); TG_EINVAL for wrong lengths (digest
 * length, k too small for the DigestInfo + 11 octets, k not matching mod_bits).
 */
int tg_rsa_pad_pkcs1(unsigned char *em, size_t k, int mod_bits, const EVP_MD *md,
                     const unsigned char *digest, size_t dlen) TG_MUST_CHECK;

/*
 * EMSA-PSS-ENCODE with emBits = mod_bits - 1 and emLen = ceil(emBits/8):
 * when mod_bits - 1 is a multiple of 8, emLen = k - 1 and em[0] = 0.
 *   md:        hash of the message and of M' (any fetchable digest)
 *   mgf1_md:   MGF1 hash (NULL: md)
 *   digest:    mHash, dlen == EVP_MD_get_size(md)
 *   saltlen:   salt length in bytes, 0 <= saltlen <= emLen - hLen - 2
 * Returns TG_OK, TG_EINVAL (lengths, salt), TG_ECRYPTO (RNG or hash failure).
 */
int tg_rsa_pad_pss(unsigned char *em, size_t k, int mod_bits, const EVP_MD *md,
                   const EVP_MD *mgf1_md, const unsigned char *digest, size_t dlen,
                   int saltlen) TG_MUST_CHECK;

/* Largest PSS salt for this modulus and digest, or -1 if none fits. */
int tg_rsa_pad_pss_max_saltlen(int mod_bits, const EVP_MD *md);

/*
 * Dispatch on the padding mode as struct tg_keyop carries it:
 * padding TG_RSA_PAD_PKCS1 (1) or TG_RSA_PAD_PSS (6); TG_EINVAL otherwise.
 */
int tg_rsa_pad_encode(unsigned char *em, size_t k, int mod_bits, int padding, const EVP_MD *md,
                      const EVP_MD *mgf1_md, int saltlen, const unsigned char *digest,
                      size_t dlen) TG_MUST_CHECK;

#endif
