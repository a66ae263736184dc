/* test_hash.c - sha256 vectors, file and tree hashing, manifests, parallel hashing. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nightjar/fs.h"
#include "nightjar/hash.h"
#include "nightjar/util.h"
#include "support.h"

TestSuite(hash, .init = nj_test_enter_tmpdir, .fini = nj_test_leave_tmpdir, .timeout = 30);

static const char *hex_of(const nj_hash *h)
{
    static char hex[4][NJ_HASH_HEX_SIZE];
    static int next;
    char *out = hex[next++ % 4];
    nj_hash_hex(h, out);
    return out;
}

static nj_hash buffer_hash(const void *data, size_t len)
{
    nj_hash h;
    nj_hash_buffer(data, len, &h);
    return h;
}

static nj_hash path_hash(const char *path)
{
    nj_err err = {0};
    nj_hash h;
    cr_assert_eq(nj_hash_path(path, NULL, &h, &err), 0, "%s", err.msg);
    return h;
}

static void write_bytes(const char *path, const void *data, size_t len)
{
    nj_err err = {0};
    cr_assert_eq(nj_fs_mkdirs_parent(path, &err), 0, "%s", err.msg);
    cr_assert_eq(nj_fs_write_atomic(path, data, len, &err), 0, "%s", err.msg);
}

/* A deterministic pseudo-random buffer. */
static unsigned char *pattern(size_t len, unsigned seed)
{
    unsigned char *p = nj_xmalloc(len ? len : 1);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        p[i] = (unsigned char)x;
    }
    return p;
}

Test(hash, known_sha256_vectors)
{
    nj_hash h = buffer_hash("abc", 3);
    cr_assert_str_eq(hex_of(&h),
                     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    h = buffer_hash("", 0);
    cr_assert_str_eq(hex_of(&h),
                     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    h = buffer_hash(two, strlen(two));
    cr_assert_str_eq(hex_of(&h),
                     "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");

    /* One million 'a', fed in uneven pieces through one reused hasher. */
    nj_hasher *hs = nj_hasher_new();
    nj_hasher_update(hs, "junk", 4);
    nj_hasher_final(hs, &h); /* resets */
    char *a = nj_xmalloc(1000000);
    memset(a, 'a', 1000000);
    for (size_t off = 0, step = 1; off < 1000000; off += step, step = step * 3 % 9973 + 1)
        nj_hasher_update(hs, a + off, off + step > 1000000 ? 1000000 - off : step);
    nj_hasher_final(hs, &h);
    cr_assert_str_eq(hex_of(&h),
                     "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    nj_hasher_free(hs);
    nj_hasher_free(NULL);
    free(a);
}

Test(hash, hex_round_trip_and_rejects_bad_input)
{
    nj_err err = {0};
    nj_hash h = buffer_hash("abc", 3), back;
    cr_assert_eq(nj_hash_from_hex(hex_of(&h), &back, &err), 0);
    cr_assert(nj_hash_equal(&h, &back));
    cr_assert_eq(
        nj_hash_from_hex("BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD", &back,
                         &err),
        0);
    cr_assert(nj_hash_equal(&h, &back));
    cr_assert_eq(nj_hash_from_hex("ba7816", &back, &err), NJ_EFORMAT);
    cr_assert(strstr(err.msg, "'ba7816'"), "%s", err.msg);
    cr_assert_eq(
        nj_hash_from_hex("za7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", &back,
                         &err),
        NJ_EFORMAT);
    cr_assert_eq(
        nj_hash_from_hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad0", &back,
                         &err),
        NJ_EFORMAT);
}

Test(hash, file_equals_buffer_across_block_boundaries)
{
    size_t sizes[] = {0, 1, 4095, 4096, 65537, (1u << 20), (3u << 20) + 7};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        unsigned char *data = pattern(sizes[i], (unsigned)i);
        write_bytes("f.bin", data, sizes[i]);
        nj_err err = {0};
        nj_hash fh, ph;
        uint64_t size = 12345;
        cr_assert_eq(nj_hash_file("f.bin", &fh, &size, &err), 0, "%s", err.msg);
        nj_hash bh = buffer_hash(data, sizes[i]);
        cr_assert(nj_hash_equal(&fh, &bh), "size %zu", sizes[i]);
        cr_assert_eq(size, sizes[i]);
        ph = path_hash("f.bin");
        cr_assert(nj_hash_equal(&ph, &bh));
        int fd = open("f.bin", O_RDONLY);
        cr_assert_eq(nj_hash_fd(fd, "f.bin", &fh, NULL, &err), 0);
        close(fd);
        cr_assert(nj_hash_equal(&fh, &bh));
        free(data);
    }
}

Test(hash, errors_name_the_path)
{
    nj_err err = {0};
    nj_hash h;
    cr_assert_eq(nj_hash_file("missing.bin", &h, NULL, &err), -ENOENT);
    cr_assert(strstr(err.msg, "'missing.bin'"), "%s", err.msg);
    cr_assert_eq(nj_fs_mkdirs("d", &err), 0);
    cr_assert_eq(nj_hash_file("d", &h, NULL, &err), -EISDIR);
    cr_assert(strstr(err.msg, "'d'"), "%s", err.msg);
    cr_assert_eq(mkfifo("pipe", 0600), 0);
    cr_assert_eq(nj_hash_file("pipe", &h, NULL, &err), -EINVAL, "a fifo is refused, not waited on");
    cr_assert_eq(nj_hash_path("pipe", NULL, &h, &err), -EINVAL);
    cr_assert_str_eq(err.msg, "cannot hash 'pipe': not a regular file, directory or symlink");
    cr_assert_eq(mkfifo("d/pipe", 0600), 0);
    cr_assert_eq(nj_hash_path("d", NULL, &h, &err), -EINVAL);
    cr_assert(strstr(err.msg, "'d/pipe'"), "%s", err.msg);
}

static void set_mtime(const char *path, time_t sec)
{
    struct timespec ts[2] = {{sec, 0}, {sec, 0}};
    cr_assert_eq(utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW), 0);
}

/* Builds the same tree in `dir`, creating files in order (forward) or reverse. */
static void make_tree(const char *dir, int reverse)
{
    const char *names[] = {"a.txt", "sub/b.txt", "sub/deep/c.bin", "z", "sub/a-b"};
    const char *texts[] = {"alpha", "beta", "gamma", "zeta", "dash"};
    for (int k = 0; k < 5; k++) {
        int i = reverse ? 4 - k : k;
        char *p = nj_xasprintf("%s/%s", dir, names[i]);
        nj_test_write(p, texts[i]);
        set_mtime(p, reverse ? 1000000 + i : 2000000 - i);
        free(p);
    }
}

Test(hash, tree_hash_ignores_mtime_and_creation_order)
{
    make_tree("one", 0);
    make_tree("two", 1);
    nj_hash a = path_hash("one"), b = path_hash("two");
    cr_assert(nj_hash_equal(&a, &b), "%s != %s", hex_of(&a), hex_of(&b));
    /* non-exec permission bits do not matter */
    cr_assert_eq(chmod("two/a.txt", 0600), 0);
    b = path_hash("two");
    cr_assert(nj_hash_equal(&a, &b));
}

Test(hash, tree_hash_changes_with_content_exec_bit_rename_and_links)
{
    make_tree("t", 0);
    nj_hash base = path_hash("t"), h;

    nj_test_write("t/sub/b.txt", "betA");
    h = path_hash("t");
    cr_assert_not(nj_hash_equal(&h, &base), "content change must change the hash");
    nj_test_write("t/sub/b.txt", "beta");
    h = path_hash("t");
    cr_assert(nj_hash_equal(&h, &base));

    cr_assert_eq(chmod("t/z", 0755), 0);
    h = path_hash("t");
    cr_assert_not(nj_hash_equal(&h, &base), "exec bit must change the hash");
    cr_assert_eq(chmod("t/z", 0644), 0);

    cr_assert_eq(rename("t/z", "t/y"), 0);
    h = path_hash("t");
    cr_assert_not(nj_hash_equal(&h, &base), "rename must change the hash");
    cr_assert_eq(rename("t/y", "t/z"), 0);
    h = path_hash("t");
    cr_assert(nj_hash_equal(&h, &base));

    cr_assert_eq(symlink("a.txt", "t/link"), 0);
    nj_hash with_link = path_hash("t");
    cr_assert_not(nj_hash_equal(&with_link, &base));
    cr_assert_eq(unlink("t/link"), 0);
    cr_assert_eq(symlink("z", "t/link"), 0);
    h = path_hash("t");
    cr_assert_not(nj_hash_equal(&h, &with_link), "link target must change the hash");
    cr_assert_eq(unlink("t/link"), 0);

    cr_assert_eq(mkdir("t/empty", 0755), 0);
    h = path_hash("t");
    cr_assert_not(nj_hash_equal(&h, &base), "an empty directory is recorded");
}

Test(hash, manifest_encoding_is_exact)
{
    nj_err err = {0};
    cr_assert_eq(mkdir("d", 0755), 0);
    nj_hash empty = path_hash("d");
    nj_hash want = buffer_hash("nightjar-tree 1\n", 16);
    cr_assert(nj_hash_equal(&empty, &want));

    nj_test_write("d/run.sh", "#!/bin/sh\n");
    cr_assert_eq(chmod("d/run.sh", 0755), 0);
    nj_test_write("d/b/x", "abc");
    cr_assert_eq(symlink("b/x", "d/ln"), 0);
    cr_assert_eq(mkdir("d/e", 0755), 0);
    nj_test_write("d/new\nline\\", "");

    nj_manifest m;
    nj_manifest_init(&m);
    cr_assert_eq(nj_manifest_scan("d", NULL, &m, &err), 0, "%s", err.msg);
    nj_buf b;
    nj_buf_init(&b);
    nj_manifest_encode(&m, &b);
    nj_hash run = buffer_hash("#!/bin/sh\n", 10), lnk = buffer_hash("b/x", 3);
    char *expect = nj_xasprintf(
        "nightjar-tree 1\n"
        "f ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad 3 b/x\n"
        "d 0000000000000000000000000000000000000000000000000000000000000000 0 e\n"
        "l %s 3 ln\n"
        "f e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 0 new\\nline\\\\\n"
        "x %s 10 run.sh\n",
        hex_of(&lnk), hex_of(&run));
    cr_assert_str_eq(b.data, expect);
    nj_hash whole = path_hash("d"), enc = buffer_hash(b.data, b.len);
    cr_assert(nj_hash_equal(&whole, &enc), "the directory hash is the manifest's");

    /* And it parses back to the same entries. */
    nj_manifest back;
    nj_manifest_init(&back);
    cr_assert_eq(nj_manifest_parse(b.data, b.len, "tree", &back, &err), 0, "%s", err.msg);
    cr_assert_eq(back.len, m.len);
    for (size_t i = 0; i < m.len; i++) {
        cr_assert_str_eq(back.items[i].path, m.items[i].path);
        cr_assert_eq(back.items[i].kind, m.items[i].kind);
        cr_assert_eq(back.items[i].size, m.items[i].size);
        cr_assert(nj_hash_equal(&back.items[i].hash, &m.items[i].hash));
    }
    nj_manifest_release(&back);
    nj_manifest_release(&m);
    nj_buf_release(&b);
    free(expect);
}

static int parse_text(const char *text, nj_err *err)
{
    nj_manifest m;
    nj_manifest_init(&m);
    int rc = nj_manifest_parse(text, strlen(text), "t", &m, err);
    nj_manifest_release(&m);
    return rc;
}

#define H64 "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

Test(hash, manifest_parse_rejects_non_canonical_or_unsafe_input)
{
    nj_err err = {0};
    cr_assert_eq(parse_text("nightjar-tree 1\nf " H64 " 3 a\nf " H64 " 3 b\n", &err), 0, "%s",
                 err.msg);
    cr_assert_eq(parse_text("tree 1\n", &err), NJ_EFORMAT);
    cr_assert_eq(parse_text("nightjar-tree 1\nf " H64 " 3 b\nf " H64 " 3 a\n", &err), NJ_EFORMAT);
    cr_assert(strstr(err.msg, "t:3: entries not sorted"), "%s", err.msg);
    cr_assert_eq(parse_text("nightjar-tree 1\nf " H64 " 3 a\nf " H64 " 3 a\n", &err), NJ_EFORMAT);
    cr_assert_eq(parse_text("nightjar-tree 1\nf " H64 " 3 ../etc/passwd\n", &err), NJ_EFORMAT);
    cr_assert_eq(parse_text("nightjar-tree 1\nf " H64 " 3 /abs\n", &err), NJ_EFORMAT);
    cr_assert_eq(parse_text("nightjar-tree 1\nf " H64 " 3 a//b\n", &err), NJ_EFORMAT);
    cr_assert_eq(parse_text("nightjar-tree 1\nl " H64 " 3 a\nf " H64 " 3 a/passwd\n", &err),
                 NJ_EFORMAT);
    cr_assert(strstr(err.msg, "beneath a non-directory"), "%s", err.msg);
    cr_assert_eq(parse_text("nightjar-tree 1\nq " H64 " 3 a\n", &err), NJ_EFORMAT);
    cr_assert_eq(parse_text("nightjar-tree 1\nf " H64 " 03 a\n", &err), NJ_EFORMAT);
    cr_assert_eq(parse_text("nightjar-tree 1\nf " H64 " 3 a", &err), NJ_EFORMAT);
    cr_assert_eq(parse_text("nightjar-tree 1\nf " H64 " 3 a\\x\n", &err), NJ_EFORMAT);
}

Test(hash, parallel_hashing_equals_serial)
{
    enum { N = 14 };
    size_t sizes[N] = {0,        5,     100,       9u << 20, 4096,     12u << 20, 1,
                       3u << 20, 65536, 10u << 20, 777,      2u << 20, 9u << 20,  33};
    char *paths[N];
    for (int i = 0; i < N; i++) {
        paths[i] = nj_xasprintf("f%02d.bin", i);
        unsigned char *data = pattern(sizes[i], (unsigned)i + 7);
        write_bytes(paths[i], data, sizes[i]);
        free(data);
    }
    nj_hash par[N];
    uint64_t psize[N];
    int codes[N];
    nj_err err = {0};
    cr_assert_eq(nj_hash_files((const char *const *)paths, N, par, psize, codes, &err), 0, "%s",
                 err.msg);
    for (int i = 0; i < N; i++) {
        nj_hash serial;
        uint64_t size;
        cr_assert_eq(nj_hash_file(paths[i], &serial, &size, &err), 0);
        cr_assert(nj_hash_equal(&par[i], &serial), "file %d", i);
        cr_assert_eq(psize[i], size);
        cr_assert_eq(codes[i], 0);
    }

    /* A failure is reported for its file only, by index, with its path. */
    free(paths[5]);
    paths[5] = nj_xstrdup("nope.bin");
    cr_assert_eq(nj_hash_files((const char *const *)paths, N, par, NULL, codes, &err), -ENOENT);
    cr_assert(strstr(err.msg, "'nope.bin'"), "%s", err.msg);
    cr_assert_eq(codes[5], -ENOENT);
    cr_assert_eq(codes[6], 0);
    nj_hash serial;
    cr_assert_eq(nj_hash_file(paths[9], &serial, NULL, &err), 0);
    cr_assert(nj_hash_equal(&par[9], &serial));
    for (int i = 0; i < N; i++)
        free(paths[i]);
    cr_assert_eq(nj_hash_files(NULL, 0, NULL, NULL, NULL, &err), 0);
}

/* A fake stat cache: answers with a fixed hash for one path, counts calls. */
struct fake_cache {
    const char *known;
    nj_hash answer;
    int lookups, stores;
};

static int fake_lookup(void *ctx, const char *path, const nj_file_sig *sig, nj_hash *hash)
{
    struct fake_cache *c = ctx;
    (void)sig;
    c->lookups++;
    if (!c->known || strcmp(path, c->known) != 0) return 0;
    *hash = c->answer;
    return 1;
}

static void fake_store(void *ctx, const char *path, const nj_file_sig *sig, const nj_hash *hash)
{
    (void)path, (void)sig, (void)hash;
    ((struct fake_cache *)ctx)->stores++;
}

Test(hash, cache_answers_skip_reading_and_fresh_files_are_not_stored)
{
    nj_test_write("d/a", "aaa");
    nj_test_write("d/b", "bbb");
    struct fake_cache fc = {.known = "d/a", .answer = buffer_hash("pretend", 7)};
    nj_hash_cache cache = {fake_lookup, fake_store, &fc};
    nj_err err = {0};
    nj_hash with_cache, real = path_hash("d");
    cr_assert_eq(nj_hash_path("d", &cache, &with_cache, &err), 0, "%s", err.msg);
    cr_assert_eq(fc.lookups, 2);
    cr_assert_not(nj_hash_equal(&with_cache, &real), "the cached answer must be used for d/a");
    /* Files changed within NJ_HASH_RACY_NS are never recorded. */
    cr_assert_eq(fc.stores, 0);

    fc.known = NULL;
    cr_assert_eq(nj_hash_path("d", &cache, &with_cache, &err), 0);
    cr_assert(nj_hash_equal(&with_cache, &real));
}

Test(hash, file_signature_tracks_changes)
{
    nj_err err = {0};
    nj_file_sig a, b;
    nj_test_write("f", "one");
    cr_assert_eq(nj_file_sig_read("f", &a, &err), 0);
    cr_assert_eq(nj_file_sig_read("f", &b, &err), 0);
    cr_assert(nj_file_sig_equal(&a, &b));
    cr_assert_eq(a.size, 3);
    cr_assert_eq(chmod("f", 0600), 0);
    cr_assert_eq(nj_file_sig_read("f", &b, &err), 0);
    cr_assert_not(nj_file_sig_equal(&a, &b), "chmod changes ctime and mode");
    cr_assert_eq(nj_file_sig_read("missing", &b, &err), -ENOENT);
    cr_assert(strstr(err.msg, "'missing'"), "%s", err.msg);
}

/* A stat cache that counts lookups and remembers nothing. */
static int counting_lookup(void *ctx, const char *path, const nj_file_sig *sig, nj_hash *hash)
{
    (void)path;
    (void)sig;
    (void)hash;
    (*(int *)ctx)++;
    return 0;
}

Test(hash, many_paths_at_once_match_one_by_one)
{
    nj_test_write("a.bin", "alpha");
    nj_test_write("b.bin", "bravo");
    nj_test_write("d/x.txt", "x");
    const char *paths[] = {"a.bin", "d", "b.bin"};
    nj_hash batch[3], one;
    int dirs[3];
    int lookups = 0;
    nj_hash_cache counting = {.lookup = counting_lookup, .store = NULL, .ctx = &lookups};
    nj_err err = {0};
    cr_assert_eq(nj_hash_paths(paths, 3, &counting, batch, dirs, &err), 0, "%s", err.msg);
    cr_assert_eq(lookups, 3, "every file is first asked of the stat cache");
    cr_assert(!dirs[0] && dirs[1] && !dirs[2]);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(nj_hash_path(paths[i], NULL, &one, &err), 0);
        cr_assert(nj_hash_equal(&one, &batch[i]), "path %d differs", i);
    }
    const char *missing[] = {"a.bin", "nope.bin"};
    cr_assert_lt(nj_hash_paths(missing, 2, NULL, batch, dirs, &err), 0);
    cr_assert(strstr(err.msg, "nope.bin") != NULL, "%s", err.msg);
}
