/*
 * digest - SHA-256 through OpenSSL's EVP interface (hardware-accelerated
 * where the CPU allows), one-shot or incremental, with hex output.
 */
#ifndef SEKISHO_DIGEST_H
#define SEKISHO_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#define DIGEST_SHA256_LEN 32
#define DIGEST_SHA256_HEX (2 * DIGEST_SHA256_LEN + 1)

typedef struct digest digest;

digest *digest_sha256_new(void);
void digest_update(digest *d, const void *p, size_t n);
/* Finishes and writes 32 raw bytes to out; the context is freed. */
void digest_final(digest *d, uint8_t out[DIGEST_SHA256_LEN]);
void digest_free(digest *d);
void digest_sha256(const void *p, size_t n, uint8_t out[DIGEST_SHA256_LEN]);
/* Lower-case hex of n bytes into out (2n+1 bytes). */
void digest_hex(const uint8_t *p, size_t n, char *out);

#endif
