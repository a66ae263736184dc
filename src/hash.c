/* hash.c - SHA-256 over OpenSSL EVP, file and tree hashing, the manifest
 * encoding, and parallel hashing on the libuv thread pool.
 *
 * Speed: one core hashes at the speed of the SHA instructions (~1.5 GB/s)
 * only if reading costs little next to hashing, so files are read with
 * read(2) into a 1 MiB buffer (large enough to amortise the syscalls, small
 * enough to stay in L2 for the hash that follows) with sequential read-ahead
 * advice. mmap(2) would save the copy but turns a concurrent truncation into
 * SIGBUS, which a runner hashing user outputs cannot afford. */
#include "nightjar/hash.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "nightjar/fs.h"
#include "nightjar/util.h"

#define READ_BLOCK (1u << 20)
/* Parallel hashing: a file this large is a job of its own; smaller files are
 * grouped until a job holds this many bytes (or GROUP_FILES files), so a
 * directory of many small files also spreads over the pool. */
#define JOB_BYTES (8u << 20)
#define GROUP_FILES 256

/* ---- the hasher ---------------------------------------------------------- */

/* EVP_sha256() makes every EVP_DigestInit_ex() look the implementation up
 * again in OpenSSL 3; fetching it once saves that on each small file. */
static pthread_once_t md_once = PTHREAD_ONCE_INIT;
static EVP_MD *md_fetched;

static void fetch_md(void)
{
    md_fetched = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static const EVP_MD *sha256_md(void)
{
    pthread_once(&md_once, fetch_md);
    return md_fetched ? md_fetched : EVP_sha256();
}

struct nj_hasher {
    EVP_MD_CTX *ctx;
};

nj_hasher *nj_hasher_new(void)
{
    nj_hasher *h = nj_xcalloc(1, sizeof(*h));
    h->ctx = EVP_MD_CTX_new();
    if (!h->ctx || EVP_DigestInit_ex(h->ctx, sha256_md(), NULL) != 1)
        NJ_BUG("cannot initialise sha256 in openssl");
    return h;
}

void nj_hasher_update(nj_hasher *h, const void *data, size_t len)
{
    if (len > 0 && EVP_DigestUpdate(h->ctx, data, len) != 1) NJ_BUG("EVP_DigestUpdate failed");
}

void nj_hasher_final(nj_hasher *h, nj_hash *out)
{
    unsigned int n = 0;
    if (EVP_DigestFinal_ex(h->ctx, out->bytes, &n) != 1 || n != NJ_HASH_SIZE)
        NJ_BUG("EVP_DigestFinal_ex failed");
    if (EVP_DigestInit_ex(h->ctx, sha256_md(), NULL) != 1) NJ_BUG("EVP_DigestInit_ex failed");
}

void nj_hasher_free(nj_hasher *h)
{
    if (!h) return;
    EVP_MD_CTX_free(h->ctx);
    free(h);
}

void nj_hash_buffer(const void *data, size_t len, nj_hash *out)
{
    unsigned int n = 0;
    if (EVP_Digest(data, len, out->bytes, &n, sha256_md(), NULL) != 1 || n != NJ_HASH_SIZE)
        NJ_BUG("EVP_Digest failed");
}

/* ---- hex ----------------------------------------------------------------- */

void nj_hash_hex(const nj_hash *hash, char out[NJ_HASH_HEX_SIZE])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < NJ_HASH_SIZE; i++) {
        out[2 * i] = digits[hash->bytes[i] >> 4];
        out[2 * i + 1] = digits[hash->bytes[i] & 15];
    }
    out[2 * NJ_HASH_SIZE] = '\0';
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int nj_hash_from_hex(const char *hex, nj_hash *out, nj_err *err)
{
    size_t n = strnlen(hex, 2 * NJ_HASH_SIZE + 1);
    if (n != 2 * NJ_HASH_SIZE)
        return nj_err_set(err, NJ_EFORMAT,
                          "invalid sha256 '%.80s': expected 64 hex digits, got %zu", hex, n);
    for (int i = 0; i < NJ_HASH_SIZE; i++) {
        int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return nj_err_set(err, NJ_EFORMAT, "invalid sha256 '%s': not a hex digit at %d", hex,
                              hi < 0 ? 2 * i + 1 : 2 * i + 2);
        out->bytes[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

int nj_hash_equal(const nj_hash *a, const nj_hash *b)
{
    return memcmp(a->bytes, b->bytes, NJ_HASH_SIZE) == 0;
}

/* ---- file signatures ----------------------------------------------------- */

void nj_file_sig_from_stat(const struct stat *st, nj_file_sig *out)
{
    memset(out, 0, sizeof(*out));
    out->dev = (uint64_t)st->st_dev;
    out->ino = (uint64_t)st->st_ino;
    out->size = (uint64_t)st->st_size;
    out->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec;
    out->ctime_ns = (int64_t)st->st_ctim.tv_sec * 1000000000LL + st->st_ctim.tv_nsec;
    out->mode = (uint32_t)st->st_mode;
}

int nj_file_sig_read(const char *path, nj_file_sig *out, nj_err *err)
{
    struct stat st;
    if (stat(path, &st) != 0) return nj_err_sys(err, errno, "cannot stat '%s'", path);
    nj_file_sig_from_stat(&st, out);
    return 0;
}

int nj_file_sig_equal(const nj_file_sig *a, const nj_file_sig *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime_ns == b->mtime_ns && a->ctime_ns == b->ctime_ns && a->mode == b->mode;
}

static int64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---- hashing one file ---------------------------------------------------- */

/* One file to hash. `stable` is set when the signature did not change while
 * the file was read and is old enough to be cached (see NJ_HASH_RACY_NS). */
struct task {
    const char *path;
    uint64_t size_hint;
    nj_hash hash;
    uint64_t size;
    nj_file_sig sig;
    int stable;
    int code;
};

static int read_full(int fd, unsigned char *buf, size_t cap, size_t *got)
{
    for (;;) {
        ssize_t n = read(fd, buf, cap);
        if (n >= 0) {
            *got = (size_t)n;
            return 0;
        }
        if (errno != EINTR) return -1;
    }
}

/* Hashes the open regular file `fd` from its current offset to the end. */
static int hash_fd(int fd, const char *path, nj_hasher *h, unsigned char *buf, size_t cap,
                   nj_hash *out, uint64_t *size, nj_err *err)
{
    uint64_t total = 0;
    for (;;) {
        size_t n;
        if (read_full(fd, buf, cap, &n) != 0) {
            int rc = nj_err_sys(err, errno, "cannot read '%s'", path);
            nj_hasher_final(h, out); /* resets h for the job's next file */
            return rc;
        }
        if (n == 0) break;
        nj_hasher_update(h, buf, n);
        total += n;
    }
    nj_hasher_final(h, out);
    if (size) *size = total;
    return 0;
}

static int not_regular(nj_err *err, const char *path, mode_t mode)
{
    if (S_ISDIR(mode)) return nj_err_set(err, -EISDIR, "cannot hash '%s': is a directory", path);
    return nj_err_set(err, -EINVAL, "cannot hash '%s': not a regular file, directory or symlink",
                      path);
}

static void hash_task(struct task *t, nj_hasher *h, unsigned char *buf, size_t cap, nj_err *err)
{
    int64_t start = wall_ns();
    /* O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused
     * below. Regular files ignore the flag. */
    int fd = open(t->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        t->code = nj_err_sys(err, errno, "cannot open '%s'", t->path);
        return;
    }
    struct stat before, after;
    if (fstat(fd, &before) != 0) {
        t->code = nj_err_sys(err, errno, "cannot stat '%s'", t->path);
        goto done;
    }
    if (!S_ISREG(before.st_mode)) {
        t->code = not_regular(err, t->path, before.st_mode);
        goto done;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK); /* some FUSE honour it */
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    t->code = hash_fd(fd, t->path, h, buf, cap, &t->hash, &t->size, err);
    if (t->code < 0) goto done;
    nj_file_sig_from_stat(&before, &t->sig);
    if (fstat(fd, &after) == 0) {
        nj_file_sig a;
        nj_file_sig_from_stat(&after, &a);
        int64_t newest = t->sig.mtime_ns > t->sig.ctime_ns ? t->sig.mtime_ns : t->sig.ctime_ns;
        t->stable = nj_file_sig_equal(&t->sig, &a) && t->size == t->sig.size &&
                    start - newest > NJ_HASH_RACY_NS;
    }
done:
    close(fd);
}

static size_t buffer_size(uint64_t largest)
{
    /* Small files do not need a 1 MiB buffer (and its page faults). The +1
     * lets one read() see the whole file and the next one see EOF. */
    if (largest >= READ_BLOCK) return READ_BLOCK;
    size_t n = 4096;
    while (n < largest + 1)
        n *= 2;
    return n;
}

int nj_hash_file(const char *path, nj_hash *out, uint64_t *size, nj_err *err)
{
    struct task t = {.path = path};
    struct stat st;
    t.size_hint = stat(path, &st) == 0 ? (uint64_t)st.st_size : READ_BLOCK;
    size_t cap = buffer_size(t.size_hint);
    unsigned char *buf = nj_xmalloc(cap);
    nj_hasher *h = nj_hasher_new();
    hash_task(&t, h, buf, cap, err);
    nj_hasher_free(h);
    free(buf);
    if (t.code < 0) return t.code;
    *out = t.hash;
    if (size) *size = t.size;
    return 0;
}

int nj_hash_fd(int fd, const char *name, nj_hash *out, uint64_t *size, nj_err *err)
{
    unsigned char *buf = nj_xmalloc(READ_BLOCK);
    nj_hasher *h = nj_hasher_new();
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    int rc = hash_fd(fd, name, h, buf, READ_BLOCK, out, size, err);
    nj_hasher_free(h);
    free(buf);
    return rc;
}

/* ---- parallel hashing ---------------------------------------------------- */

/* A job hashes tasks[begin, end) on one thread, with its own hasher and
 * buffer, and keeps the message of its first failure. */
struct job {
    uv_work_t req;
    struct task *tasks;
    size_t begin, end;
    size_t failed; /* index of the first failure, or SIZE_MAX */
    nj_err err;
    struct scheduler *sched;
};

/* Keeps at most one job per core in the pool: more would only make the
 * hashing threads evict each other's buffers from cache, and would hold pool
 * threads that the rest of the process may want. */
struct scheduler {
    uv_loop_t loop;
    struct job *jobs;
    size_t njobs, next;
};

static void run_job(struct job *j)
{
    uint64_t largest = 0;
    for (size_t i = j->begin; i < j->end; i++)
        if (j->tasks[i].size_hint > largest) largest = j->tasks[i].size_hint;
    size_t cap = buffer_size(largest);
    unsigned char *buf = nj_xmalloc(cap);
    nj_hasher *h = nj_hasher_new();
    for (size_t i = j->begin; i < j->end; i++) {
        nj_err e = {0};
        hash_task(&j->tasks[i], h, buf, cap, &e);
        if (j->tasks[i].code < 0 && j->failed == SIZE_MAX) {
            j->failed = i;
            j->err = e;
        }
    }
    nj_hasher_free(h);
    free(buf);
}

static void job_work(uv_work_t *req)
{
    run_job(req->data);
}

static void job_done(uv_work_t *req, int status);

static void queue_next(struct scheduler *sc)
{
    while (sc->next < sc->njobs) {
        struct job *j = &sc->jobs[sc->next++];
        if (uv_queue_work(&sc->loop, &j->req, job_work, job_done) == 0) return;
        run_job(j); /* cannot fail for a valid loop; stay correct anyway */
    }
}

static void job_done(uv_work_t *req, int status)
{
    struct job *j = req->data;
    (void)status; /* never cancelled: nothing calls uv_cancel() */
    queue_next(j->sched);
}

/* Hashes every task, in parallel when there is enough work. Returns 0 or the
 * code of the lowest-numbered failed task, with its message in err. */
static int hash_tasks(struct task *tasks, size_t n, nj_err *err)
{
    if (n == 0) return 0;
    struct job *jobs = nj_xcalloc(n, sizeof(*jobs));
    size_t njobs = 0;
    uint64_t total = 0;
    for (size_t i = 0; i < n;) {
        struct job *j = &jobs[njobs++];
        j->tasks = tasks;
        j->begin = i;
        j->failed = SIZE_MAX;
        j->req.data = j;
        uint64_t bytes = 0;
        do {
            bytes += tasks[i].size_hint;
            i++;
        } while (i < n && bytes < JOB_BYTES && i - j->begin < GROUP_FILES &&
                 tasks[i].size_hint < JOB_BYTES);
        j->end = i;
        total += bytes;
    }

    struct scheduler sc = {.jobs = jobs, .njobs = njobs};
    int parallel = njobs > 1 && total >= JOB_BYTES && uv_loop_init(&sc.loop) == 0;
    if (parallel) {
        unsigned cores = uv_available_parallelism();
        for (size_t k = 0; k < njobs; k++)
            jobs[k].sched = &sc;
        for (unsigned k = 0; k < (cores > 1 ? cores : 2); k++)
            queue_next(&sc);
        uv_run(&sc.loop, UV_RUN_DEFAULT);
        if (uv_loop_close(&sc.loop) != 0) NJ_BUG("hash loop still busy after uv_run");
    } else {
        for (size_t k = 0; k < njobs; k++)
            run_job(&jobs[k]);
    }

    int rc = 0;
    for (size_t k = 0; k < njobs; k++) {
        if (jobs[k].failed == SIZE_MAX) continue;
        rc = tasks[jobs[k].failed].code;
        if (err) *err = jobs[k].err;
        break; /* jobs are in index order, so this is the lowest */
    }
    free(jobs);
    return rc;
}

int nj_hash_files(const char *const *paths, size_t n, nj_hash *out, uint64_t *sizes, int *codes,
                  nj_err *err)
{
    struct task *tasks = nj_xcalloc(n ? n : 1, sizeof(*tasks));
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        tasks[i].path = paths[i];
        tasks[i].size_hint = stat(paths[i], &st) == 0 ? (uint64_t)st.st_size : 0;
    }
    int rc = hash_tasks(tasks, n, err);
    for (size_t i = 0; i < n; i++) {
        if (tasks[i].code == 0)
            out[i] = tasks[i].hash;
        else
            memset(&out[i], 0, sizeof(out[i]));
        if (sizes) sizes[i] = tasks[i].code == 0 ? tasks[i].size : 0;
        if (codes) codes[i] = tasks[i].code;
    }
    free(tasks);
    return rc;
}

/* ---- manifests ----------------------------------------------------------- */

static const char MANIFEST_HEADER[] = "nightjar-tree 1\n";

void nj_manifest_init(nj_manifest *m)
{
    memset(m, 0, sizeof(*m));
}

void nj_manifest_release(nj_manifest *m)
{
    for (size_t i = 0; i < m->len; i++) {
        free(m->items[i].path);
        free(m->items[i].link_target);
    }
    free(m->items);
    nj_manifest_init(m);
}

static int compare_entries(const void *a, const void *b)
{
    const nj_manifest_entry *x = a, *y = b;
    return strcmp(x->path, y->path);
}

struct walk {
    const char *root;
    nj_manifest *m;
};

static nj_manifest_entry *push_entry(nj_manifest *m, char *rel, nj_entry_kind kind, uint64_t size)
{
    nj_manifest_entry e = {.path = rel, .kind = kind, .size = size};
    NJ_PUSH(m->items, m->len, m->cap, e);
    return &m->items[m->len - 1];
}

/* Adds everything beneath root/rel (rel is NULL for the root itself). */
static int walk_dir(struct walk *w, const char *rel, nj_err *err)
{
    char *dir = rel ? nj_path_join(w->root, rel) : nj_xstrdup(w->root);
    DIR *d = opendir(dir);
    if (!d) {
        int rc = nj_err_sys(err, errno, "cannot open directory '%s'", dir);
        free(dir);
        return rc;
    }
    int rc = 0;
    size_t before = w->m->len;
    struct dirent *de;
    for (;;) {
        errno = 0;
        de = readdir(d);
        if (!de) {
            if (errno != 0) rc = nj_err_sys(err, errno, "cannot read directory '%s'", dir);
            break;
        }
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        char *child = rel ? nj_xasprintf("%s/%s", rel, de->d_name) : nj_xstrdup(de->d_name);
        char *full = nj_path_join(w->root, child);
        struct stat st;
        if (lstat(full, &st) != 0) {
            rc = nj_err_sys(err, errno, "cannot stat '%s'", full);
            free(child);
        } else if (S_ISREG(st.st_mode)) {
            nj_manifest_entry *e =
                push_entry(w->m, child, (st.st_mode & S_IXUSR) ? NJ_ENTRY_EXEC : NJ_ENTRY_FILE,
                           (uint64_t)st.st_size);
            nj_file_sig_from_stat(&st, &e->sig);
        } else if (S_ISLNK(st.st_mode)) {
            char target[4096];
            ssize_t n = readlink(full, target, sizeof(target));
            if (n < 0 || (size_t)n >= sizeof(target)) {
                rc = n < 0 ? nj_err_sys(err, errno, "cannot read link '%s'", full)
                           : nj_err_set(err, -ENAMETOOLONG,
                                        "cannot read link '%s': target too long", full);
                free(child);
            } else {
                nj_manifest_entry *e = push_entry(w->m, child, NJ_ENTRY_LINK, (uint64_t)n);
                e->link_target = nj_xstrndup(target, (size_t)n);
                nj_hash_buffer(target, (size_t)n, &e->hash);
            }
        } else if (S_ISDIR(st.st_mode)) {
            rc = walk_dir(w, child, err);
            free(child);
        } else {
            rc = not_regular(err, full, st.st_mode);
            free(child);
        }
        free(full);
        if (rc < 0) break;
    }
    closedir(d);
    if (rc == 0 && rel && w->m->len == before) push_entry(w->m, nj_xstrdup(rel), NJ_ENTRY_DIR, 0);
    free(dir);
    return rc;
}

int nj_manifest_walk(const char *dir, nj_manifest *m, nj_err *err)
{
    struct walk w = {.root = dir, .m = m};
    int rc = walk_dir(&w, NULL, err);
    if (rc < 0) {
        nj_manifest_release(m);
        return rc;
    }
    if (m->len > 1) qsort(m->items, m->len, sizeof(*m->items), compare_entries);
    return 0;
}

int nj_manifest_scan(const char *dir, const nj_hash_cache *cache, nj_manifest *m, nj_err *err)
{
    int rc = nj_manifest_walk(dir, m, err);
    if (rc < 0) return rc;
    struct task *tasks = nj_xcalloc(m->len ? m->len : 1, sizeof(*tasks));
    size_t *owner = nj_xcalloc(m->len ? m->len : 1, sizeof(*owner));
    char **full = nj_xcalloc(m->len ? m->len : 1, sizeof(*full));
    size_t ntasks = 0;

    /* The cache answers on this thread; only the misses go to the pool. */
    for (size_t i = 0; i < m->len; i++) {
        nj_manifest_entry *e = &m->items[i];
        if (e->kind != NJ_ENTRY_FILE && e->kind != NJ_ENTRY_EXEC) continue;
        full[i] = nj_path_join(dir, e->path);
        if (cache && cache->lookup && cache->lookup(cache->ctx, full[i], &e->sig, &e->hash))
            continue;
        tasks[ntasks] = (struct task){.path = full[i], .size_hint = e->sig.size};
        owner[ntasks++] = i;
    }
    rc = hash_tasks(tasks, ntasks, err);
    for (size_t k = 0; rc == 0 && k < ntasks; k++) {
        nj_manifest_entry *e = &m->items[owner[k]];
        e->hash = tasks[k].hash;
        e->size = tasks[k].size;
        /* The kind came from the walk's lstat; cache only if nothing moved since. */
        if (cache && cache->store && tasks[k].stable && nj_file_sig_equal(&tasks[k].sig, &e->sig))
            cache->store(cache->ctx, full[owner[k]], &e->sig, &e->hash);
    }
    for (size_t i = 0; i < m->len; i++)
        free(full[i]);
    free(full);
    free(tasks);
    free(owner);
    if (rc < 0) nj_manifest_release(m);
    return rc;
}

void nj_manifest_encode(const nj_manifest *m, nj_buf *out)
{
    nj_buf_puts(out, MANIFEST_HEADER);
    for (size_t i = 0; i < m->len; i++) {
        const nj_manifest_entry *e = &m->items[i];
        char hex[NJ_HASH_HEX_SIZE];
        if (e->kind == NJ_ENTRY_DIR) {
            memset(hex, '0', 2 * NJ_HASH_SIZE);
            hex[2 * NJ_HASH_SIZE] = '\0';
        } else {
            nj_hash_hex(&e->hash, hex);
        }
        nj_buf_printf(out, "%c %s %llu ", (char)e->kind, hex, (unsigned long long)e->size);
        for (const char *p = e->path; *p; p++) {
            if (*p == '\\')
                nj_buf_puts(out, "\\\\");
            else if (*p == '\n')
                nj_buf_puts(out, "\\n");
            else
                nj_buf_putc(out, *p);
        }
        nj_buf_putc(out, '\n');
    }
}

void nj_manifest_hash(const nj_manifest *m, nj_hash *out)
{
    nj_buf b;
    nj_buf_init(&b);
    nj_manifest_encode(m, &b);
    nj_hash_buffer(b.data, b.len, out);
    nj_buf_release(&b);
}

/* 1 if `path` is a safe relative path: no "", "." or ".." component. */
static int safe_relative(const char *path)
{
    if (path[0] == '\0' || path[0] == '/') return 0;
    for (const char *p = path;;) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.')) return 0;
        if (!e) return 1;
        p = e + 1;
    }
}

static const nj_manifest_entry *find_entry(const nj_manifest *m, size_t upto, const char *path)
{
    size_t lo = 0, hi = upto;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(m->items[mid].path, path);
        if (c == 0) return &m->items[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

int nj_manifest_parse(const char *data, size_t len, const char *name, nj_manifest *m, nj_err *err)
{
    size_t hlen = sizeof(MANIFEST_HEADER) - 1;
    if (len < hlen || memcmp(data, MANIFEST_HEADER, hlen) != 0)
        return nj_err_set(err, NJ_EFORMAT, "%s:1: not a tree manifest (expected '%.*s')", name,
                          (int)hlen - 1, MANIFEST_HEADER);
    const char *p = data + hlen, *end = data + len;
    int line = 1, rc = 0;
    nj_buf path;
    nj_buf_init(&path);
    while (p < end) {
        line++;
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) {
            rc = nj_err_set(err, NJ_EFORMAT, "%s:%d: last line has no newline", name, line);
            break;
        }
        /* "<kind> <64 hex> <size> <path>" */
        nj_manifest_entry e = {0};
        char hex[NJ_HASH_HEX_SIZE];
        if (eol - p < 70 || p[1] != ' ' || p[66] != ' ' || !strchr("fxld", p[0]) || p[0] == '\0') {
            rc = nj_err_set(err, NJ_EFORMAT, "%s:%d: malformed entry", name, line);
            break;
        }
        e.kind = (nj_entry_kind)p[0];
        memcpy(hex, p + 2, 64);
        hex[64] = '\0';
        if (e.kind == NJ_ENTRY_DIR ? strspn(hex, "0") != 64
                                   : nj_hash_from_hex(hex, &e.hash, NULL) < 0) {
            rc = nj_err_set(err, NJ_EFORMAT, "%s:%d: invalid hash '%s'", name, line, hex);
            break;
        }
        const char *q = p + 67;
        if (q >= eol || *q < '0' || *q > '9' || (*q == '0' && q[1] != ' ')) {
            rc = nj_err_set(err, NJ_EFORMAT, "%s:%d: invalid size", name, line);
            break;
        }
        uint64_t size = 0;
        while (q < eol && *q >= '0' && *q <= '9') {
            if (size > (UINT64_MAX - 9) / 10) break;
            size = size * 10 + (uint64_t)(*q++ - '0');
        }
        if (q >= eol || *q != ' ' || (e.kind == NJ_ENTRY_DIR && size != 0)) {
            rc = nj_err_set(err, NJ_EFORMAT, "%s:%d: invalid size", name, line);
            break;
        }
        e.size = size;
        nj_buf_reset(&path);
        for (q++; q < eol; q++) {
            if (*q == '\0') break;
            if (*q != '\\') {
                nj_buf_putc(&path, *q);
                continue;
            }
            if (q + 1 < eol && (q[1] == '\\' || q[1] == 'n')) {
                nj_buf_putc(&path, q[1] == 'n' ? '\n' : '\\');
                q++;
            } else {
                break;
            }
        }
        if (q != eol || !safe_relative(path.data)) {
            rc = nj_err_set(err, NJ_EFORMAT, "%s:%d: invalid path", name, line);
            break;
        }
        if (m->len > 0 && strcmp(m->items[m->len - 1].path, path.data) >= 0) {
            rc = nj_err_set(err, NJ_EFORMAT, "%s:%d: entries not sorted or duplicated at '%s'",
                            name, line, path.data);
            break;
        }
        /* A file, link or empty-directory entry cannot have entries beneath
         * it: restoring "l a -> /etc" then "f a/passwd" would write through
         * the link. Every proper prefix sorts before the entry. */
        for (char *slash = strchr(path.data, '/'); slash; slash = strchr(slash + 1, '/')) {
            *slash = '\0';
            const nj_manifest_entry *parent = find_entry(m, m->len, path.data);
            *slash = '/';
            if (parent) {
                rc = nj_err_set(err, NJ_EFORMAT, "%s:%d: '%s' lies beneath a non-directory entry",
                                name, line, path.data);
                break;
            }
        }
        if (rc < 0) break;
        e.path = nj_xstrdup(path.data);
        NJ_PUSH(m->items, m->len, m->cap, e);
        p = eol + 1;
    }
    nj_buf_release(&path);
    if (rc < 0) nj_manifest_release(m);
    return rc;
}

/* ---- paths --------------------------------------------------------------- */

static int hash_tasks(struct task *tasks, size_t n, nj_err *err);

int nj_hash_paths(const char *const *paths, size_t n, const nj_hash_cache *cache, nj_hash *out,
                  int *is_dir, nj_err *err)
{
    struct task *tasks = nj_xcalloc(n ? n : 1, sizeof(*tasks));
    size_t *task_of = nj_xcalloc(n ? n : 1, sizeof(size_t));
    nj_file_sig *sigs = nj_xcalloc(n ? n : 1, sizeof(*sigs));
    size_t ntasks = 0;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct stat st;
        is_dir[i] = 0;
        task_of[i] = SIZE_MAX;
        if (stat(paths[i], &st) != 0) {
            rc = nj_err_sys(err, errno, "cannot stat '%s'", paths[i]);
        } else if (S_ISDIR(st.st_mode)) {
            is_dir[i] = 1;
            rc = nj_hash_path(paths[i], cache, &out[i], err); /* scans in parallel itself */
        } else if (!S_ISREG(st.st_mode)) {
            rc = not_regular(err, paths[i], st.st_mode);
        } else {
            nj_file_sig_from_stat(&st, &sigs[i]);
            if (cache && cache->lookup && cache->lookup(cache->ctx, paths[i], &sigs[i], &out[i]))
                continue;
            tasks[ntasks] = (struct task){.path = paths[i], .size_hint = sigs[i].size};
            task_of[i] = ntasks++;
        }
    }
    if (rc == 0) rc = hash_tasks(tasks, ntasks, err);
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (task_of[i] == SIZE_MAX) continue;
        const struct task *t = &tasks[task_of[i]];
        out[i] = t->hash;
        if (cache && cache->store && t->stable && nj_file_sig_equal(&t->sig, &sigs[i]))
            cache->store(cache->ctx, paths[i], &sigs[i], &out[i]);
    }
    free(tasks);
    free(task_of);
    free(sigs);
    return rc;
}

int nj_hash_path(const char *path, const nj_hash_cache *cache, nj_hash *out, nj_err *err)
{
    struct stat st;
    if (stat(path, &st) != 0) return nj_err_sys(err, errno, "cannot stat '%s'", path);
    if (S_ISDIR(st.st_mode)) {
        nj_manifest m;
        nj_manifest_init(&m);
        int rc = nj_manifest_scan(path, cache, &m, err);
        if (rc == 0) nj_manifest_hash(&m, out);
        nj_manifest_release(&m);
        return rc;
    }
    if (!S_ISREG(st.st_mode)) return not_regular(err, path, st.st_mode);

    nj_file_sig sig;
    nj_file_sig_from_stat(&st, &sig);
    if (cache && cache->lookup && cache->lookup(cache->ctx, path, &sig, out)) return 0;
    struct task t = {.path = path, .size_hint = sig.size};
    int rc = hash_tasks(&t, 1, err);
    if (rc < 0) return rc;
    *out = t.hash;
    if (cache && cache->store && t.stable && nj_file_sig_equal(&t.sig, &sig))
        cache->store(cache->ctx, path, &sig, out);
    return 0;
}
