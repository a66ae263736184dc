/* store.c - the content-addressed object store: put, restore, verify, gc
 * helpers. Owns everything under the store directory; see store.h for the
 * layout and the invariants that make it safe to share between processes. */
#include "nightjar/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "nightjar/fs.h"
#include "nightjar/util.h"

#define COPY_BLOCK (1u << 20)

struct nj_store {
    char *dir;     /* absolute */
    char *objects; /* <dir>/objects/sha256 */
    char *tmp;     /* <dir>/tmp */
    char *corrupt; /* <dir>/corrupt */
    nj_hash_cache cache;
    int has_cache;
    atomic_int no_reflink; /* set once FICLONE into <dir>/tmp is refused */
};

static atomic_uint name_counter;

/* ---- small helpers ------------------------------------------------------- */

static int64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* A fresh name "<path>.tmp.<pid>.<n>" (not created). Caller frees. */
static char *temp_name(const char *path)
{
    return nj_xasprintf("%s.tmp.%ld.%u", path, (long)getpid(), atomic_fetch_add(&name_counter, 1));
}

/* Copies `in` (from its offset) to `out`, hashing on the way: one pass. */
static int copy_hashing(int in, const char *in_name, int out, const char *out_name, nj_hash *hash,
                        uint64_t *size, nj_err *err)
{
    unsigned char *buf = nj_xmalloc(COPY_BLOCK);
    nj_hasher *h = nj_hasher_new();
    uint64_t total = 0;
    int rc = 0;
    posix_fadvise(in, 0, 0, POSIX_FADV_SEQUENTIAL);
    for (;;) {
        ssize_t n = read(in, buf, COPY_BLOCK);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            rc = nj_err_sys(err, errno, "cannot read '%s'", in_name);
            break;
        }
        if (n == 0) break;
        nj_hasher_update(h, buf, (size_t)n);
        if (nj_fs_write_all(out, buf, (size_t)n) != 0) {
            rc = nj_err_sys(err, errno, "cannot write '%s'", out_name);
            break;
        }
        total += (uint64_t)n;
    }
    if (rc == 0) {
        nj_hasher_final(h, hash);
        *size = total;
    }
    nj_hasher_free(h);
    free(buf);
    return rc;
}

/* 1 if a stat-cache entry for a file read from `start` on may be stored:
 * unchanged while read, and older than the racy window (hash.h). */
static int cacheable(const struct stat *before, int fd, int64_t start, nj_file_sig *sig)
{
    struct stat after;
    nj_file_sig a;
    nj_file_sig_from_stat(before, sig);
    if (fstat(fd, &after) != 0) return 0;
    nj_file_sig_from_stat(&after, &a);
    int64_t newest = sig->mtime_ns > sig->ctime_ns ? sig->mtime_ns : sig->ctime_ns;
    return nj_file_sig_equal(sig, &a) && start - newest > NJ_HASH_RACY_NS;
}

/* ---- modes --------------------------------------------------------------- */

static const char *const mode_names[] = {"auto", "reflink", "hardlink", "copy"};

int nj_link_mode_parse(const char *text, nj_link_mode *out, nj_err *err)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(text, mode_names[i]) == 0) {
            *out = (nj_link_mode)i;
            return 0;
        }
    }
    return nj_err_set(err, NJ_EFORMAT,
                      "invalid link mode '%s' (expected auto, reflink, hardlink or copy)", text);
}

const char *nj_link_mode_name(nj_link_mode mode)
{
    return (unsigned)mode < 4 ? mode_names[mode] : "unknown";
}

/* ---- open / paths -------------------------------------------------------- */

int nj_store_open(const char *dir, nj_store **out, nj_err *err)
{
    nj_store *s = nj_xcalloc(1, sizeof(*s));
    s->dir = nj_path_absolute(dir);
    s->objects = nj_path_join(s->dir, "objects/sha256");
    s->tmp = nj_path_join(s->dir, "tmp");
    s->corrupt = nj_path_join(s->dir, "corrupt");
    int rc = nj_fs_mkdirs(s->objects, err);
    if (rc == 0) rc = nj_fs_mkdirs(s->tmp, err);
    if (rc < 0) {
        nj_err_prefix(err, "cannot open store '%s'", s->dir);
        nj_store_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void nj_store_free(nj_store *store)
{
    if (!store) return;
    free(store->dir);
    free(store->objects);
    free(store->tmp);
    free(store->corrupt);
    free(store);
}

const char *nj_store_dir(const nj_store *store)
{
    return store->dir;
}

void nj_store_set_cache(nj_store *store, const nj_hash_cache *cache)
{
    store->has_cache = cache != NULL;
    if (cache)
        store->cache = *cache;
    else
        memset(&store->cache, 0, sizeof(store->cache));
}

char *nj_store_object_path(const nj_store *store, const nj_hash *hash)
{
    char hex[NJ_HASH_HEX_SIZE];
    nj_hash_hex(hash, hex);
    return nj_xasprintf("%s/%.2s/%s", store->objects, hex, hex + 2);
}

int nj_store_has(const nj_store *store, const nj_hash *hash)
{
    char *obj = nj_store_object_path(store, hash);
    struct stat st;
    int found = stat(obj, &st) == 0 && S_ISREG(st.st_mode);
    free(obj);
    return found;
}

/* 1 if the object exists with `size` bytes. A wrong size is corruption that
 * a put repairs by replacing the object. */
static int has_sized(const nj_store *s, const nj_hash *hash, uint64_t size)
{
    char *obj = nj_store_object_path(s, hash);
    struct stat st;
    int found = stat(obj, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size == size;
    free(obj);
    return found;
}

/* ---- corruption ---------------------------------------------------------- */

/* Moves the object at `obj`, which hashed to `actual` instead of its name,
 * to <dir>/corrupt/ so that a later put stores good bytes again, and returns
 * NJ_ECORRUPT. The move is skipped when `obj` no longer names the inode that
 * was read (`st`): another process has already replaced it. */
static int corrupt(nj_store *s, const char *obj, const struct stat *st, const nj_hash *actual,
                   nj_err *err)
{
    char hex[NJ_HASH_HEX_SIZE];
    nj_hash_hex(actual, hex);
    struct stat now;
    char *aside = NULL;
    if (lstat(obj, &now) == 0 && now.st_dev == st->st_dev && now.st_ino == st->st_ino &&
        nj_fs_mkdirs(s->corrupt, NULL) == 0) {
        const char *base = strrchr(obj, '/');
        char *slot = nj_xasprintf("%s/%.2s%s", s->corrupt, base - 2, base + 1);
        aside = temp_name(slot);
        free(slot);
        if (rename(obj, aside) != 0) {
            free(aside);
            aside = NULL;
        }
    }
    nj_err_set(err, NJ_ECORRUPT, "object '%s' is corrupt: its content hashes to %s%s%s%s", obj, hex,
               aside ? "; moved to '" : "", aside ? aside : "", aside ? "'" : "");
    free(aside);
    return NJ_ECORRUPT;
}

/* Opens an object for reading; a missing one gives -ENOENT with a message. */
static int open_object(nj_store *s, const nj_hash *hash, char **obj, struct stat *st, nj_err *err)
{
    *obj = nj_store_object_path(s, hash);
    int fd = open(*obj, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return nj_err_set(err, -ENOENT, "object '%s' is missing", *obj);
        return nj_err_sys(err, errno, "cannot open object '%s'", *obj);
    }
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
        int rc = nj_err_set(err, NJ_ECORRUPT, "object '%s' is not a regular file", *obj);
        close(fd);
        return rc;
    }
    return fd;
}

/* Checks that the open object `fd` hashes to `want` (reading from offset 0).
 * With use_cache, a stat-cache entry for the unchanged object stands in. */
static int check_object(nj_store *s, int fd, const char *obj, const struct stat *st,
                        const nj_hash *want, int use_cache, nj_err *err)
{
    nj_file_sig sig;
    nj_hash got;
    nj_file_sig_from_stat(st, &sig);
    use_cache = use_cache && s->has_cache;
    if (use_cache && s->cache.lookup && s->cache.lookup(s->cache.ctx, obj, &sig, &got) &&
        nj_hash_equal(&got, want))
        return 0;
    int64_t start = wall_ns();
    if (lseek(fd, 0, SEEK_SET) < 0) return nj_err_sys(err, errno, "cannot seek '%s'", obj);
    int rc = nj_hash_fd(fd, obj, &got, NULL, err);
    if (rc < 0) return rc;
    if (!nj_hash_equal(&got, want)) return corrupt(s, obj, st, &got, err);
    if (use_cache && s->cache.store && cacheable(st, fd, start, &sig))
        s->cache.store(s->cache.ctx, obj, &sig, want);
    return 0;
}

/* ---- put ----------------------------------------------------------------- */

static int open_store_temp(nj_store *s, char **tmp, nj_err *err)
{
    char *base = nj_path_join(s->tmp, "object");
    int fd = nj_fs_open_temp(base, 0600, tmp, err);
    free(base);
    return fd;
}

/* Renames the finished temp file to `obj` without replacing an existing
 * object (unless `replace`, for an object of the wrong size), creating the
 * shard directory on first use. Losing a race to an identical writer is
 * success. Removes `tmp` unless it was renamed. */
static int install(const char *tmp, const char *obj, int replace, nj_err *err)
{
    int rc = 0;
    for (int attempt = 0;; attempt++) {
        int r;
        if (replace) {
            r = rename(tmp, obj);
        } else {
            r = renameat2(AT_FDCWD, tmp, AT_FDCWD, obj, RENAME_NOREPLACE);
            if (r != 0 && (errno == EINVAL || errno == ENOSYS)) {
                /* Filesystems without RENAME_NOREPLACE: link() never replaces. */
                r = link(tmp, obj);
                if (r == 0 || errno == EEXIST) {
                    int e = errno;
                    unlink(tmp);
                    errno = e;
                }
                if (r == 0) return nj_fs_fsync_parent(obj, err);
            }
        }
        if (r == 0) return nj_fs_fsync_parent(obj, err);
        if (errno == EEXIST) {
            unlink(tmp);
            return 0;
        }
        if (errno == ENOENT && attempt == 0) {
            char *shard = nj_path_dirname(obj);
            if (mkdir(shard, 0777) == 0) nj_fs_fsync_parent(shard, NULL);
            free(shard);
            continue;
        }
        rc = nj_err_sys(err, errno, "cannot rename '%s' to '%s'", tmp, obj);
        unlink(tmp);
        return rc;
    }
}

/* Makes the written temp file `fd`/`tmp` the object `hash` (or drops it when
 * that object exists). Closes fd and frees tmp in all cases. */
static int publish(nj_store *s, int fd, char *tmp, const nj_hash *hash, uint64_t size, int exec,
                   nj_err *err)
{
    char *obj = nj_store_object_path(s, hash);
    struct stat st;
    int rc = 0, replace = 0;
    if (stat(obj, &st) == 0) {
        if (S_ISREG(st.st_mode) && (uint64_t)st.st_size == size) {
            close(fd);
            unlink(tmp);
            goto done;
        }
        replace = 1;
    }
    /* Read-only before it is visible: there is no moment at which a
     * published object could be written through its own name. */
    if (fchmod(fd, exec ? 0555 : 0444) != 0)
        rc = nj_err_sys(err, errno, "cannot chmod '%s'", tmp);
    else if (fsync(fd) != 0)
        rc = nj_err_sys(err, errno, "cannot fsync '%s'", tmp);
    if (close(fd) != 0 && rc == 0) rc = nj_err_sys(err, errno, "cannot close '%s'", tmp);
    if (rc < 0)
        unlink(tmp);
    else
        rc = install(tmp, obj, replace, err);
done:
    free(obj);
    free(tmp);
    return rc;
}

/* Stores the open regular file `src` (at offset 0). Strategy, cheapest first:
 *  1. reflink it into a temp file and hash the clone (a snapshot: what is
 *     hashed is what is stored; no data is copied);
 *  2. else hash it, and stop if the object exists (re-putting unchanged
 *     outputs costs one read);
 *  3. else copy it, hashing again on the way, and name the object by what
 *     was copied (the file may have changed since step 2).
 * Step 3 reads twice, but a copy is bound by writeback anyway: on ext4 a
 * 1 GiB put costs ~4 s of fsync against 0.7 s of hashing, whereas copying
 * first would make an unchanged re-put cost the full write. */
static int put_fd(nj_store *s, int src, const char *src_name, int exec, nj_hash *out,
                  uint64_t *size, nj_err *err)
{
    char *tmp = NULL;
    int fd = -1, rc;
    if (!atomic_load(&s->no_reflink)) {
        fd = open_store_temp(s, &tmp, err);
        if (fd < 0) return fd;
        if (ioctl(fd, FICLONE, src) == 0) {
            rc = nj_hash_fd(fd, tmp, out, size, err);
            goto written;
        }
        if (errno == EOPNOTSUPP || errno == ENOTTY || errno == EINVAL || errno == ENOSYS)
            atomic_store(&s->no_reflink, 1); /* the store's filesystem cannot */
        close(fd);
        unlink(tmp);
        free(tmp);
        tmp = NULL;
    }
    nj_hash first;
    uint64_t first_size;
    rc = nj_hash_fd(src, src_name, &first, &first_size, err);
    if (rc < 0) return rc;
    if (has_sized(s, &first, first_size)) {
        *out = first;
        *size = first_size;
        return 0;
    }
    if (lseek(src, 0, SEEK_SET) < 0) return nj_err_sys(err, errno, "cannot seek '%s'", src_name);
    fd = open_store_temp(s, &tmp, err);
    if (fd < 0) return fd;
    rc = copy_hashing(src, src_name, fd, tmp, out, size, err);
written:
    if (rc < 0) {
        close(fd);
        unlink(tmp);
        free(tmp);
        return rc;
    }
    return publish(s, fd, tmp, out, *size, exec, err);
}

/* Stores the regular file at `path`: everything except the stat cache, so
 * that it can run on a pool thread. *sig gets the file's signature when
 * reading began and *stable whether a stat cache may record it. */
static int put_path(nj_store *s, const char *path, nj_hash *out, uint64_t *size, nj_file_sig *sig,
                    int *stable, nj_err *err)
{
    int64_t start = wall_ns();
    *stable = 0;
    /* O_NONBLOCK: a FIFO is refused below instead of waited on. */
    int src = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (src < 0) return nj_err_sys(err, errno, "cannot open '%s'", path);
    struct stat st;
    int rc;
    if (fstat(src, &st) != 0) {
        rc = nj_err_sys(err, errno, "cannot stat '%s'", path);
    } else if (!S_ISREG(st.st_mode)) {
        rc = nj_err_set(err, S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL,
                        "cannot store '%s': not a regular file", path);
    } else {
        fcntl(src, F_SETFL, fcntl(src, F_GETFL) & ~O_NONBLOCK);
        rc = put_fd(s, src, path, (st.st_mode & S_IXUSR) != 0, out, size, err);
        if (rc == 0) *stable = cacheable(&st, src, start, sig) && *size == sig->size;
    }
    close(src);
    return rc;
}

int nj_store_put_file(nj_store *store, const char *path, nj_hash *out, uint64_t *size, nj_err *err)
{
    const nj_hash_cache *c = store->has_cache ? &store->cache : NULL;
    nj_file_sig sig;
    nj_hash h;
    uint64_t n = 0;
    if (c && c->lookup && nj_file_sig_read(path, &sig, NULL) == 0 && S_ISREG(sig.mode) &&
        c->lookup(c->ctx, path, &sig, &h) && has_sized(store, &h, sig.size)) {
        *out = h;
        if (size) *size = sig.size;
        return 0; /* known and stored: nothing to read */
    }
    int stable;
    int rc = put_path(store, path, &h, &n, &sig, &stable, err);
    if (rc < 0) return rc;
    if (c && c->store && stable) c->store(c->ctx, path, &sig, &h);
    *out = h;
    if (size) *size = n;
    return 0;
}

int nj_store_put_buffer(nj_store *store, const void *data, size_t len, nj_hash *out, nj_err *err)
{
    nj_hash_buffer(data, len, out);
    if (has_sized(store, out, len)) return 0;
    char *tmp = NULL;
    int fd = open_store_temp(store, &tmp, err);
    if (fd < 0) return fd;
    if (nj_fs_write_all(fd, data, len) != 0) {
        int rc = nj_err_sys(err, errno, "cannot write '%s'", tmp);
        close(fd);
        unlink(tmp);
        free(tmp);
        return rc;
    }
    return publish(store, fd, tmp, out, len, 0, err);
}

/* put_tree stores files on the libuv thread pool, at most one per core at a
 * time; the stat cache is only called from the after-work callbacks, which
 * run on the calling thread. */
struct put_batch;

struct put_job {
    uv_work_t req;
    struct put_batch *batch;
    char *full;
    nj_manifest_entry *entry;
    nj_file_sig sig;
    int stable, code;
    nj_err err;
};

struct put_batch {
    uv_loop_t loop;
    nj_store *store;
    struct put_job *jobs;
    size_t njobs, next;
    int failed; /* stop queueing after the first failure */
};

static void put_work(uv_work_t *req)
{
    struct put_job *j = req->data;
    nj_hash h;
    uint64_t n = 0;
    j->code = put_path(j->batch->store, j->full, &h, &n, &j->sig, &j->stable, &j->err);
    if (j->code == 0) {
        /* Store what is there now; the tree records what was stored. */
        j->entry->hash = h;
        j->entry->size = n;
    }
}

static void put_done(uv_work_t *req, int status);

static void queue_put(struct put_batch *b)
{
    while (!b->failed && b->next < b->njobs) {
        struct put_job *j = &b->jobs[b->next++];
        if (uv_queue_work(&b->loop, &j->req, put_work, put_done) == 0) return;
        put_work(&j->req);
        put_done(&j->req, 0);
    }
}

static void put_done(uv_work_t *req, int status)
{
    struct put_job *j = req->data;
    struct put_batch *b = j->batch;
    const nj_hash_cache *c = &b->store->cache;
    (void)status; /* never cancelled */
    if (j->code < 0)
        b->failed = 1;
    else if (b->store->has_cache && c->store && j->stable)
        c->store(c->ctx, j->full, &j->sig, &j->entry->hash);
    queue_put(b);
}

int nj_store_put_tree(nj_store *store, const char *dir, nj_hash *out, nj_err *err)
{
    const nj_hash_cache *c = store->has_cache ? &store->cache : NULL;
    nj_manifest m;
    nj_manifest_init(&m);
    nj_buf enc;
    nj_buf_init(&enc);
    struct put_batch b = {.store = store};
    int rc = nj_manifest_walk(dir, &m, err);
    if (rc < 0) goto done;
    b.jobs = nj_xcalloc(m.len ? m.len : 1, sizeof(*b.jobs));

    /* Files the stat cache knows and the store holds need no reading. The
     * rest go to the pool, one put_fd() each. */
    for (size_t i = 0; rc == 0 && i < m.len; i++) {
        nj_manifest_entry *e = &m.items[i];
        if (e->kind == NJ_ENTRY_LINK) {
            nj_hash h;
            rc = nj_store_put_buffer(store, e->link_target, e->size, &h, err);
            continue;
        }
        if (e->kind == NJ_ENTRY_DIR) continue;
        char *full = nj_path_join(dir, e->path);
        if (c && c->lookup && c->lookup(c->ctx, full, &e->sig, &e->hash) &&
            has_sized(store, &e->hash, e->size)) {
            free(full);
            continue;
        }
        struct put_job *j = &b.jobs[b.njobs++];
        j->batch = &b;
        j->full = full;
        j->entry = e;
        j->req.data = j;
    }
    if (rc == 0 && b.njobs > 0) {
        int uerr = uv_loop_init(&b.loop);
        if (uerr != 0) {
            rc = nj_err_set(err, uerr, "cannot store '%s': cannot start a libuv loop: %s", dir,
                            uv_strerror(uerr));
            goto done;
        }
        unsigned cores = uv_available_parallelism();
        for (unsigned k = 0; k < (cores > 1 ? cores : 1); k++)
            queue_put(&b);
        uv_run(&b.loop, UV_RUN_DEFAULT);
        if (uv_loop_close(&b.loop) != 0) NJ_BUG("store loop still busy after uv_run");
        for (size_t k = 0; k < b.njobs; k++) {
            if (b.jobs[k].code < 0) {
                rc = b.jobs[k].code;
                if (err) *err = b.jobs[k].err;
                break;
            }
        }
    }
    if (rc == 0) {
        nj_manifest_encode(&m, &enc);
        rc = nj_store_put_buffer(store, enc.data, enc.len, out, err);
    }
done:
    for (size_t k = 0; k < b.njobs; k++)
        free(b.jobs[k].full);
    free(b.jobs);
    nj_buf_release(&enc);
    nj_manifest_release(&m);
    return rc;
}

/* ---- read / verify ------------------------------------------------------- */

int nj_store_read(nj_store *store, const nj_hash *hash, char **data, size_t *len, nj_err *err)
{
    char *obj = NULL;
    struct stat st;
    int fd = open_object(store, hash, &obj, &st, err);
    if (fd < 0) {
        free(obj);
        return fd;
    }
    nj_buf b;
    nj_buf_init(&b);
    int rc = 0;
    char chunk[65536];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            rc = nj_err_sys(err, errno, "cannot read object '%s'", obj);
            break;
        }
        if (n == 0) break;
        nj_buf_add(&b, chunk, (size_t)n);
    }
    nj_hash got;
    if (rc == 0) {
        nj_hash_buffer(b.data, b.len, &got);
        if (!nj_hash_equal(&got, hash)) rc = corrupt(store, obj, &st, &got, err);
    }
    close(fd);
    free(obj);
    if (rc < 0) {
        nj_buf_release(&b);
        return rc;
    }
    if (len) *len = b.len;
    *data = nj_buf_detach(&b);
    nj_buf_release(&b);
    return 0;
}

int nj_store_verify(nj_store *store, const nj_hash *hash, nj_err *err)
{
    char *obj = NULL;
    struct stat st;
    int fd = open_object(store, hash, &obj, &st, err);
    int rc = fd;
    if (fd >= 0) {
        rc = check_object(store, fd, obj, &st, hash, 0, err);
        close(fd);
    }
    free(obj);
    return rc;
}

int nj_store_remove(nj_store *store, const nj_hash *hash, nj_err *err)
{
    char *obj = nj_store_object_path(store, hash);
    int rc = 0;
    if (unlink(obj) != 0 && errno != ENOENT)
        rc = nj_err_sys(err, errno, "cannot remove object '%s'", obj);
    free(obj);
    return rc;
}

/* ---- restore ------------------------------------------------------------- */

/* What NJ_LINK_AUTO learnt about the destination filesystem during one
 * restore, so that a tree of 10,000 files does not try (and, for hardlinks,
 * verify for) a link the filesystem refuses 10,000 times. */
struct link_memo {
    int no_reflink, no_hardlink;
};

/* Puts object `hash` at `path`, which must not exist yet (a temp name, or a
 * path inside a tree being built). want_exec < 0 takes the object's mode.
 * Returns -EEXIST only when `path` exists. On failure nothing is left at
 * `path`. */
static int materialize(nj_store *s, const nj_hash *hash, const char *path, nj_link_mode mode,
                       int want_exec, int sync, struct link_memo *memo, nj_err *err)
{
    char *obj = NULL;
    struct stat st;
    int src = open_object(s, hash, &obj, &st, err);
    int fd = -1, rc = 0;
    if (src < 0) {
        rc = src;
        goto done;
    }
    int obj_exec = (st.st_mode & S_IXUSR) != 0;
    int exec = want_exec < 0 ? obj_exec : want_exec;
    mode_t fmode = exec ? 0555 : 0444;
    nj_hash got;
    uint64_t size;

    if (mode == NJ_LINK_REFLINK || (mode == NJ_LINK_AUTO && !memo->no_reflink)) {
        fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0) {
            rc = nj_err_sys(err, errno, "cannot create '%s'", path);
            goto done;
        }
        if (ioctl(fd, FICLONE, src) == 0) {
            rc = nj_hash_fd(fd, path, &got, &size, err);
            if (rc == 0 && !nj_hash_equal(&got, hash)) rc = corrupt(s, obj, &st, &got, err);
            goto finish;
        }
        int e = errno;
        close(fd);
        fd = -1;
        unlink(path);
        if (mode == NJ_LINK_REFLINK) {
            rc = nj_err_sys(err, e, "cannot reflink '%s' to '%s'", obj, path);
            goto done;
        }
        memo->no_reflink = 1; /* EOPNOTSUPP, EXDEV, EINVAL...: not here */
    }
    if ((mode == NJ_LINK_HARDLINK || (mode == NJ_LINK_AUTO && !memo->no_hardlink)) &&
        exec == obj_exec) {
        rc = check_object(s, src, obj, &st, hash, 1, err);
        if (rc < 0) goto done;
        if (link(obj, path) == 0) {
            if (sync) rc = nj_fs_fsync_parent(path, err);
            goto done;
        }
        int e = errno;
        if (mode == NJ_LINK_HARDLINK || e == EEXIST) {
            rc = nj_err_sys(err, e, "cannot hardlink '%s' to '%s'", obj, path);
            goto done;
        }
        if (e != EMLINK) memo->no_hardlink = 1; /* EXDEV, EPERM: not on this filesystem */
    }
    /* Copy, hashing on the way. */
    fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = nj_err_sys(err, errno, "cannot create '%s'", path);
        goto done;
    }
    if (lseek(src, 0, SEEK_SET) < 0)
        rc = nj_err_sys(err, errno, "cannot seek '%s'", obj);
    else
        rc = copy_hashing(src, obj, fd, path, &got, &size, err);
    if (rc == 0 && !nj_hash_equal(&got, hash)) rc = corrupt(s, obj, &st, &got, err);
finish:
    if (rc == 0 && fchmod(fd, fmode) != 0) rc = nj_err_sys(err, errno, "cannot chmod '%s'", path);
    if (rc == 0 && sync && fsync(fd) != 0) rc = nj_err_sys(err, errno, "cannot fsync '%s'", path);
    if (close(fd) != 0 && rc == 0) rc = nj_err_sys(err, errno, "cannot close '%s'", path);
    fd = -1;
    if (rc < 0) unlink(path);
done:
    if (src >= 0) close(src);
    free(obj);
    return rc;
}

int nj_store_restore(nj_store *store, const nj_hash *hash, const char *dest, nj_link_mode mode,
                     nj_err *err)
{
    int rc = nj_fs_mkdirs_parent(dest, err);
    if (rc < 0) return rc;
    for (int tries = 0; tries < 100; tries++) {
        char *tmp = temp_name(dest);
        struct link_memo memo = {0};
        rc = materialize(store, hash, tmp, mode, -1, 1, &memo, err);
        if (rc == 0) {
            if (rename(tmp, dest) != 0) {
                rc = nj_err_sys(err, errno, "cannot rename '%s' to '%s'", tmp, dest);
                unlink(tmp);
            } else {
                rc = nj_fs_fsync_parent(dest, err);
            }
        }
        free(tmp);
        if (rc != -EEXIST) break; /* else a stale temp of a dead process had our name */
    }
    return rc;
}


/* Creates one manifest entry at `full` inside the tree being built. */
static int restore_entry(nj_store *s, const nj_manifest_entry *e, const char *full,
                         nj_link_mode mode, struct link_memo *memo, nj_err *err)
{
    if (e->kind == NJ_ENTRY_DIR) {
        if (mkdir(full, 0777) != 0)
            return nj_err_sys(err, errno, "cannot create directory '%s'", full);
        return 0;
    }
    if (e->kind == NJ_ENTRY_LINK) {
        char *target = NULL;
        size_t len = 0;
        int rc = nj_store_read(s, &e->hash, &target, &len, err);
        if (rc < 0) return rc;
        if (len == 0 || strlen(target) != len)
            rc = nj_err_set(err, NJ_ECORRUPT, "invalid link target for '%s' in the store", full);
        else if (symlink(target, full) != 0)
            rc = nj_err_sys(err, errno, "cannot create symlink '%s'", full);
        free(target);
        return rc;
    }
    return materialize(s, &e->hash, full, mode, e->kind == NJ_ENTRY_EXEC, 0, memo, err);
}

/* Puts the finished tree `tmp` at `dest` in one step and removes what was
 * there. */
static int swap_into_place(const char *tmp, const char *dest, nj_err *err)
{
    struct stat st;
    if (lstat(dest, &st) != 0) {
        if (errno != ENOENT) return nj_err_sys(err, errno, "cannot stat '%s'", dest);
        if (rename(tmp, dest) != 0)
            return nj_err_sys(err, errno, "cannot rename '%s' to '%s'", tmp, dest);
        return nj_fs_fsync_parent(dest, err);
    }
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dest, RENAME_EXCHANGE) == 0) {
        nj_fs_fsync_parent(dest, NULL);
        nj_fs_remove_tree(tmp, NULL); /* now the old contents */
        return 0;
    }
    if (errno != EINVAL && errno != ENOSYS)
        return nj_err_sys(err, errno, "cannot exchange '%s' and '%s'", tmp, dest);
    /* No RENAME_EXCHANGE: `dest` is missing for a moment, never half-written. */
    char *old = temp_name(dest);
    int rc = 0;
    if (rename(dest, old) != 0) {
        rc = nj_err_sys(err, errno, "cannot rename '%s' to '%s'", dest, old);
    } else if (rename(tmp, dest) != 0) {
        rc = nj_err_sys(err, errno, "cannot rename '%s' to '%s'", tmp, dest);
        rename(old, dest);
    } else {
        nj_fs_fsync_parent(dest, NULL);
        nj_fs_remove_tree(old, NULL);
    }
    free(old);
    return rc;
}

int nj_store_restore_tree(nj_store *store, const nj_hash *tree, const char *dest, nj_link_mode mode,
                          nj_err *err)
{
    char *data = NULL, *tmp = NULL, *obj = nj_store_object_path(store, tree);
    size_t len = 0;
    nj_manifest m;
    nj_manifest_init(&m);
    int rc = nj_store_read(store, tree, &data, &len, err);
    if (rc == 0) rc = nj_manifest_parse(data, len, obj, &m, err);
    if (rc == NJ_EFORMAT) { /* the bytes match their hash but are no tree; msg names obj */
        if (err) err->code = NJ_ECORRUPT;
        rc = NJ_ECORRUPT;
    }
    if (rc == 0) rc = nj_fs_mkdirs_parent(dest, err);
    if (rc == 0) rc = nj_fs_make_temp_dir(dest, 0777, &tmp, err);
    if (rc < 0) goto fail;

    struct link_memo memo = {0};
    char *made = NULL; /* the last parent directory created, to skip repeats */
    for (size_t i = 0; rc == 0 && i < m.len; i++) {
        char *full = nj_path_join(tmp, m.items[i].path);
        char *parent = nj_path_dirname(full);
        if (!made || strcmp(made, parent) != 0) {
            rc = nj_fs_mkdirs(parent, err);
            free(made);
            made = parent;
        } else {
            free(parent);
        }
        if (rc == 0) rc = restore_entry(store, &m.items[i], full, mode, &memo, err);
        free(full);
    }
    free(made);
    if (rc < 0) goto fail;

    /* One syncfs instead of an fsync per file: the tree is durable before it
     * becomes visible. */
    int dfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || syncfs(dfd) != 0) rc = nj_err_sys(err, errno, "cannot sync '%s'", tmp);
    if (dfd >= 0) close(dfd);
    if (rc == 0) rc = swap_into_place(tmp, dest, err);
    if (rc < 0) goto fail;
    goto done;
fail:
    if (tmp) nj_fs_remove_tree(tmp, NULL);
done:
    free(tmp);
    free(data);
    free(obj);
    nj_manifest_release(&m);
    return rc;
}

/* ---- enumeration and cleanup --------------------------------------------- */

static int is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return s[n] == '\0';
}

int nj_store_foreach(nj_store *store, nj_store_visit_fn fn, void *ctx, nj_err *err)
{
    DIR *top = opendir(store->objects);
    if (!top) return nj_err_sys(err, errno, "cannot open directory '%s'", store->objects);
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(top)) != NULL) {
        if (!is_hex(de->d_name, 2)) continue;
        char *shard = nj_path_join(store->objects, de->d_name);
        DIR *d = opendir(shard);
        if (!d) {
            if (errno != ENOENT) rc = nj_err_sys(err, errno, "cannot open directory '%s'", shard);
            free(shard);
            continue;
        }
        struct dirent *oe;
        while (rc == 0 && (oe = readdir(d)) != NULL) {
            if (!is_hex(oe->d_name, 2 * NJ_HASH_SIZE - 2)) continue;
            char hex[NJ_HASH_HEX_SIZE];
            memcpy(hex, de->d_name, 2);
            memcpy(hex + 2, oe->d_name, 2 * NJ_HASH_SIZE - 2);
            hex[2 * NJ_HASH_SIZE] = '\0';
            nj_hash h;
            if (nj_hash_from_hex(hex, &h, NULL) < 0) continue;
            char *path = nj_path_join(shard, oe->d_name);
            rc = fn(ctx, &h, path);
            free(path);
        }
        closedir(d);
        free(shard);
    }
    closedir(top);
    return rc;
}

int nj_store_clean_temp(nj_store *store, int64_t max_age_ms, size_t *removed, nj_err *err)
{
    if (removed) *removed = 0;
    DIR *d = opendir(store->tmp);
    if (!d) {
        if (errno == ENOENT) return 0;
        return nj_err_sys(err, errno, "cannot open directory '%s'", store->tmp);
    }
    int64_t cutoff = wall_ns() - max_age_ms * 1000000LL;
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        char *path = nj_path_join(store->tmp, de->d_name);
        struct stat st;
        if (lstat(path, &st) == 0) {
            int64_t mtime = (int64_t)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
            if (mtime < cutoff) {
                rc = nj_fs_remove_tree(path, err);
                if (rc == 0 && removed) (*removed)++;
            }
        }
        free(path);
    }
    closedir(d);
    return rc;
}
