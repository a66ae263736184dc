/* bench_hash.c - timing entry point for scripts/bench-hash (not part of the build).
 *
 *     bench_hash file FILE            nj_hash_file() on one file
 *     bench_hash serial FILE...       nj_hash_file() on each file in turn
 *     bench_hash parallel FILE...     nj_hash_files() on all of them
 *
 * Prints "<bytes> <seconds> <GB/s> <hex of the first file> <cpu seconds>" on
 * stdout; cpu seconds (user + system, all threads) show what the hashing
 * costs even when other work shares the machine. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "nightjar/hash.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench_hash file|serial|parallel FILE...\n");
        return 2;
    }
    size_t n = (size_t)argc - 2;
    const char *const *paths = (const char *const *)argv + 2;
    nj_hash *hashes = calloc(n, sizeof(*hashes));
    uint64_t *sizes = calloc(n, sizeof(*sizes));
    nj_err err = {0};
    double start = now(), cpu_start = cpu();
    if (strcmp(argv[1], "parallel") == 0) {
        if (nj_hash_files(paths, n, hashes, sizes, NULL, &err) < 0) goto fail;
    } else {
        for (size_t i = 0; i < n; i++)
            if (nj_hash_file(paths[i], &hashes[i], &sizes[i], &err) < 0) goto fail;
    }
    double secs = now() - start, cpu_secs = cpu() - cpu_start;
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += sizes[i];
    char hex[NJ_HASH_HEX_SIZE];
    nj_hash_hex(&hashes[0], hex);
    printf("%llu %.3f %.2f %s %.3f\n", (unsigned long long)total, secs, (double)total / secs / 1e9,
           hex, cpu_secs);
    free(hashes);
    free(sizes);
    return 0;
fail:
    fprintf(stderr, "bench_hash: error: %s\n", err.msg);
    return 1;
}
