/* sha256.h - SHA-256 (FIPS 180-4), so a model can record the exact bytes it
 * was trained on without linking a crypto library into the stage programs.
 *
 *     st_sha256 h; st_sha256_init(&h);
 *     st_sha256_update(&h, buf, len); ...
 *     char hex[65]; st_sha256_hex(&h, hex);
 */
#ifndef ST_SHA256_H
#define ST_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct st_sha256 {
    uint32_t state[8];
    uint64_t bytes; /* total bytes hashed */
    uint8_t block[64];
    size_t fill; /* bytes waiting in block */
} st_sha256;

void st_sha256_init(st_sha256 *h);
void st_sha256_update(st_sha256 *h, const void *data, size_t len);
/* Finishes the hash and writes 64 lowercase hex digits and a NUL to hex. */
void st_sha256_hex(st_sha256 *h, char hex[65]);

/* Hashes the file at path into hex; 0, or -1 naming the file. */
int st_sha256_file(const char *path, char hex[65], st_err *err);

#endif
