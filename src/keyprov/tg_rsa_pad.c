/*
 * EMSA-PKCS1-v1_5 and EMSA-PSS encodings (RFC 8017, sections 9.1 and 9.2).
 */
#include "keyprov/tg_rsa_pad.h"

#include <openssl/crypto.h>
#include <openssl/obj_mac.h>
#include <openssl/rand.h>
#include <stdint.h>
#include <string.h>

#include "keyprov/tg_keyprov.h"

/* DER of DigestInfo ::= SEQUENCE { AlgorithmIdentifier { OID, NULL }, OCTET
 * STRING (digest) } up to the digest (RFC 8017 9.2, note 1). */
struct tg_digestinfo {
    int nid;
    size_t len;
    unsigned char der[19];
};

static const struct tg_digestinfo tg_digestinfos[] = {
    {NID_sha1,
     15,
     {0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14}},
    {NID_sha224,
     19,
     {0x30, 0x2d, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x04,
      0x05, 0x00, 0x04, 0x1c}},
    {NID_sha256,
     19,
     {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
      0x05, 0x00, 0x04, 0x20}},
    {NID_sha384,
     19,
     {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02,
      0x05, 0x00, 0x04, 0x30}},
    {NID_sha512,
     19,
     {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03,
      0x05, 0x00, 0x04, 0x40}},
};

/* k must be exactly the modulus length: the raw operation reads k bytes. */
static int tg_rsa_pad_check_k(size_t k, int mod_bits)
{
    if (mod_bits < 512 || mod_bits > TG_RSA_PAD_MAX_BITS)
        return TG_EINVAL;
    return k == ((size_t)mod_bits + 7) / 8 ? TG_OK : TG_EINVAL;
}

int tg_rsa_pad_pkcs1(unsigned char *em, size_t k, int mod_bits, const EVP_MD *md,
                     const unsigned char *digest, size_t dlen)
{
    if (em == NULL || md == NULL || digest == NULL)
        return TG_EINVAL;
    TG_GUARD(tg_rsa_pad_check_k(k, mod_bits));
    const struct tg_digestinfo *di = NULL;
    int nid = EVP_MD_get_type(md);
    for (size_t i = 0; i < TG_ARRAY_LEN(tg_digestinfos); i++) {
        if (tg_digestinfos[i].nid == nid)
            di = &tg_digestinfos[i];
    }
    int hlen = EVP_MD_get_size(md);
    if (di == NULL) {
        memset(em, 0, k);
        return TG_EUNAVAIL;
    }
    /* The last DigestInfo octet is the digest length. */
    if (hlen <= 0 || dlen != (size_t)hlen || di->der[di->len - 1] != (unsigned char)hlen)
        goto inval;
    size_t tlen = di->len + dlen;
    if (k < tlen + 11) /* 00 01, at least 8 octets of FF, 00 */
        goto inval;
    size_t pslen = k - tlen - 3;
    em[0] = 0x00;
    em[1] = 0x01;
    memset(em + 2, 0xff, pslen);
    em[2 + pslen] = 0x00;
    memcpy(em + 3 + pslen, di->der, di->len);
    memcpy(em + 3 + pslen + di->len, digest, dlen);
    return TG_OK;
inval:
    memset(em, 0, k);
    return TG_EINVAL;
}

int tg_rsa_pad_pss_max_saltlen(int mod_bits, const EVP_MD *md)
{
    if (md == NULL || mod_bits < 512 || mod_bits > TG_RSA_PAD_MAX_BITS)
        return -1;
    int hlen = EVP_MD_get_size(md);
    int emlen = (mod_bits - 1 + 7) / 8;
    if (hlen <= 0 || emlen < hlen + 2)
        return -1;
    return emlen - hlen - 2;
}

/* maskedDB = DB xor MGF1(seed, dblen), in place. */
static int tg_mgf1_xor(unsigned char *db, size_t dblen, const EVP_MD *mgf1_md,
                       const unsigned char *seed, size_t seedlen)
{
    unsigned char t[EVP_MAX_MD_SIZE];
    int mlen = EVP_MD_get_size(mgf1_md);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int rc = TG_ECRYPTO;
    if (ctx == NULL || mlen <= 0)
        goto out;
    for (uint32_t c = 0, done = 0; done < dblen; c++) {
        unsigned char cnt[4] = {(unsigned char)(c >> 24), (unsigned char)(c >> 16),
                                (unsigned char)(c >> 8), (unsigned char)c};
        if (EVP_DigestInit_ex2(ctx, mgf1_md, NULL) != 1 ||
            EVP_DigestUpdate(ctx, seed, seedlen) != 1 || EVP_DigestUpdate(ctx, cnt, 4) != 1 ||
            EVP_DigestFinal_ex(ctx, t, NULL) != 1)
            goto out;
        size_t n = dblen - done < (size_t)mlen ? dblen - done : (size_t)mlen;
        for (size_t i = 0; i < n; i++)
            db[done + i] ^= t[i];
        done += (uint32_t)n;
    }
    rc = TG_OK;
out:
    EVP_MD_CTX_free(ctx);
    return rc;
}

int tg_rsa_pad_pss(unsigned char *em, size_t k, int mod_bits, const EVP_MD *md,
                   const EVP_MD *mgf1_md, const unsigned char *digest, size_t dlen, int saltlen)
{
    static const unsigned char zeros[8] = {0};
    EVP_MD_CTX *ctx = NULL;
    int rc = TG_EINVAL;
    if (em == NULL || md == NULL || digest == NULL)
        return TG_EINVAL;
    TG_GUARD(tg_rsa_pad_check_k(k, mod_bits));
    if (mgf1_md == NULL)
        mgf1_md = md;
    int hlen = EVP_MD_get_size(md);
    size_t embits = (size_t)mod_bits - 1;
    size_t emlen = (embits + 7) / 8;
    /* RFC 8017 9.1.1 step 3: emLen >= hLen + sLen + 2. */
    if (hlen <= 0 || dlen != (size_t)hlen || saltlen < 0 ||
        emlen < (size_t)hlen + (size_t)saltlen + 2)
        goto out;
    /* emLen is k or k - 1 (modBits - 1 a multiple of 8): then the integer
     * has a leading zero octet. */
    unsigned char *out = em;
    if (emlen < k) {
        em[0] = 0x00;
        out = em + 1;
    }
    size_t dblen = emlen - (size_t)hlen - 1;
    size_t slen = (size_t)saltlen;
    unsigned char *salt = out + dblen - slen; /* DB = PS || 0x01 || salt */
    unsigned char *h = out + dblen;           /* EM = maskedDB || H || 0xbc */
    memset(out, 0, dblen - slen - 1);
    out[dblen - slen - 1] = 0x01;
    rc = TG_ECRYPTO;
    if (slen > 0 && RAND_bytes_ex(NULL, salt, slen, 0) != 1)
        goto out;
    /* H = Hash(00 x 8 || mHash || salt) */
    ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_DigestInit_ex2(ctx, md, NULL) != 1 ||
        EVP_DigestUpdate(ctx, zeros, sizeof(zeros)) != 1 ||
        EVP_DigestUpdate(ctx, digest, dlen) != 1 ||
        (slen > 0 && EVP_DigestUpdate(ctx, salt, slen) != 1) ||
        EVP_DigestFinal_ex(ctx, h, NULL) != 1)
        goto out;
    if (tg_mgf1_xor(out, dblen, mgf1_md, h, (size_t)hlen) != TG_OK)
        goto out;
    /* Clear the leftmost 8 * emLen - emBits bits. */
    out[0] &= (unsigned char)(0xffu >> (8 * emlen - embits));
    out[emlen - 1] = 0xbc;
    rc = TG_OK;
out:
    EVP_MD_CTX_free(ctx);
    if (rc != TG_OK)
        memset(em, 0, k);
    return rc;
}

int tg_rsa_pad_encode(unsigned char *em, size_t k, int mod_bits, int padding, const EVP_MD *md,
                      const EVP_MD *mgf1_md, int saltlen, const unsigned char *digest, size_t dlen)
{
    switch (padding) {
    case TG_RSA_PAD_PKCS1:
        return tg_rsa_pad_pkcs1(em, k, mod_bits, md, digest, dlen);
    case TG_RSA_PAD_PSS:
        return tg_rsa_pad_pss(em, k, mod_bits, md, mgf1_md, digest, dlen, saltlen);
    default:
        if (em != NULL && tg_rsa_pad_check_k(k, mod_bits) == TG_OK)
            memset(em, 0, k);
        return TG_EINVAL;
    }
}
