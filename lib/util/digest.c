/*
 * digest - SHA-256 over OpenSSL EVP. See digest.h.
 */
#include "digest.h"
#include "msg.h"

#include <openssl/evp.h>
#include <stdlib.h>

struct digest {
    EVP_MD_CTX *ctx;
};

digest *digest_sha256_new(void)
{
    digest *d = xmalloc(sizeof *d);
    d->ctx = EVP_MD_CTX_new();
    if (d->ctx == NULL || EVP_DigestInit_ex(d->ctx, EVP_sha256(), NULL) != 1)
        msg_fatal("OpenSSL: cannot initialise SHA-256");
    return d;
}

void digest_update(digest *d, const void *p, size_t n)
{
    if (n && EVP_DigestUpdate(d->ctx, p, n) != 1)
        msg_fatal("OpenSSL: SHA-256 update failed");
}

void digest_final(digest *d, uint8_t out[DIGEST_SHA256_LEN])
{
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(d->ctx, out, &len) != 1 || len != DIGEST_SHA256_LEN)
        msg_fatal("OpenSSL: SHA-256 final failed");
    digest_free(d);
}

void digest_free(digest *d)
{
    if (d == NULL)
        return;
    EVP_MD_CTX_free(d->ctx);
    free(d);
}

void digest_sha256(const void *p, size_t n, uint8_t out[DIGEST_SHA256_LEN])
{
    digest *d = digest_sha256_new();
    digest_update(d, p, n);
    digest_final(d, out);
}

void digest_hex(const uint8_t *p, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[p[i] >> 4];
        out[2 * i + 1] = hex[p[i] & 15];
    }
    out[2 * n] = 0;
}
