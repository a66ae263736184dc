/* snapshot.c - deterministic snapshot archives (libarchive) and their safe
 * extraction. Owns the archive layout described in snapshot.h: how entries
 * are chosen, named, ordered and normalised, and which archives extraction
 * accepts.
 *
 * Both directions share one model of an archive's tree, a list of `item`s,
 * and one safety check over it, check_tree(): create runs it on what it is
 * about to write (so every snapshot we make can be restored), extract runs
 * it on every header before writing anything. */
#include "nightjar/snapshot.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nightjar/fs.h"
#include "nightjar/util.h"

#define COPY_BLOCK (1u << 20)
#define READ_BLOCK (1u << 16)
/* Symlinks followed while resolving one link target; the kernel's limit. */
#define MAX_LINK_HOPS 40
#define ZSTD_LEVEL "3"
#define GZIP_LEVEL "6"
#define FILE_MODE 0644
#define EXEC_MODE 0755
#define DIR_MODE 0755
#define LINK_MODE 0777


/* ---- the tree model ------------------------------------------------------ */

typedef enum item_kind {
    ITEM_FILE,
    ITEM_DIR, /* an empty directory when creating; any directory entry when extracting */
    ITEM_LINK,
    ITEM_HARDLINK, /* extraction only: repeats an earlier file of the archive */
} item_kind;

typedef struct item {
    char *path;   /* normalised relative path: no "", ".", ".." components */
    char *target; /* LINK: the link text as is; HARDLINK: normalised path; else NULL */
    char *source; /* create only: the filesystem path to read */
    item_kind kind;
    int exec;      /* FILE: the owner-execute bit */
    int follow;    /* create only: an input named directly, opened following symlinks */
    int duplicate; /* extract only: an earlier entry has the same path */
} item;

typedef struct item_list {
    item *items;
    size_t len, cap;
    item **sorted; /* by path, for lookups; built by index_items() */
} item_list;

static void items_release(item_list *l)
{
    for (size_t i = 0; i < l->len; i++) {
        free(l->items[i].path);
        free(l->items[i].target);
        free(l->items[i].source);
    }
    free(l->items);
    free(l->sorted);
    memset(l, 0, sizeof(*l));
}

static int compare_item_ptrs(const void *a, const void *b)
{
    const item *x = *(item *const *)a, *y = *(item *const *)b;
    int c = strcmp(x->path, y->path);
    if (c != 0) return c;
    return x < y ? -1 : x > y; /* equal paths: archive order */
}

/* Builds l->sorted and marks every item whose path an earlier item already
 * has as a duplicate. */
static void index_items(item_list *l)
{
    free(l->sorted);
    l->sorted = nj_xmalloc((l->len + 1) * sizeof(*l->sorted));
    for (size_t i = 0; i < l->len; i++)
        l->sorted[i] = &l->items[i];
    if (l->len > 1) qsort(l->sorted, l->len, sizeof(*l->sorted), compare_item_ptrs);
    for (size_t i = 1; i < l->len; i++)
        if (strcmp(l->sorted[i - 1]->path, l->sorted[i]->path) == 0) l->sorted[i]->duplicate = 1;
}

/* The first item (in archive order) at `path`, or NULL. */
static const item *find_item(const item_list *l, const char *path, size_t len)
{
    size_t lo = 0, hi = l->len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *p = l->sorted[mid]->path;
        int c = strncmp(p, path, len);
        if (c == 0 && p[len] != '\0') c = 1;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < l->len && strncmp(l->sorted[lo]->path, path, len) == 0 &&
        l->sorted[lo]->path[len] == '\0')
        return l->sorted[lo];
    return NULL;
}

/* 1 if the symlink `link` leads outside the tree's root, resolving its
 * target as the kernel would once the tree is on disk: relative to the
 * link's directory, through the tree's other symlinks. A component the tree
 * does not hold is taken lexically; it cannot climb out by itself. Loops and
 * chains longer than MAX_LINK_HOPS count as escaping.
 *
 * Example: with "d/up -> .." (which is fine: it names the root), the link
 * "d/esc -> up/.." looks like "d" lexically but is "<root>/.." on disk:
 * "up" in "d" is a link, so "../.." is walked from "d" and climbs out. */
static int link_escapes(const item_list *l, const item *link)
{
    if (link->target[0] == '/') return 1;
    nj_buf cur, rest;
    nj_buf_init(&cur);
    nj_buf_init(&rest);
    const char *slash = strrchr(link->path, '/');
    if (slash) nj_buf_add(&cur, link->path, (size_t)(slash - link->path));
    nj_buf_puts(&rest, link->target);
    int escapes = 0, hops = 0;
    size_t pos = 0;
    while (!escapes && pos < rest.len) {
        while (pos < rest.len && rest.data[pos] == '/')
            pos++;
        size_t start = pos;
        while (pos < rest.len && rest.data[pos] != '/')
            pos++;
        size_t clen = pos - start;
        const char *comp = rest.data + start;
        if (clen == 0 || (clen == 1 && comp[0] == '.')) continue;
        if (clen == 2 && comp[0] == '.' && comp[1] == '.') {
            if (cur.len == 0) {
                escapes = 1;
            } else {
                char *up = strrchr(cur.data, '/');
                cur.len = up ? (size_t)(up - cur.data) : 0;
                cur.data[cur.len] = '\0';
            }
            continue;
        }
        size_t saved = cur.len;
        if (cur.len > 0) nj_buf_putc(&cur, '/');
        nj_buf_add(&cur, comp, clen);
        const item *it = find_item(l, cur.data, cur.len);
        if (!it || it->kind != ITEM_LINK) continue;
        /* Replace the component by the link's target, walked from the
         * directory that holds the link. */
        cur.len = saved;
        cur.data[cur.len] = '\0';
        if (++hops > MAX_LINK_HOPS || it->target[0] == '/') {
            escapes = 1;
            continue;
        }
        nj_buf next;
        nj_buf_init(&next);
        nj_buf_puts(&next, it->target);
        nj_buf_putc(&next, '/');
        nj_buf_add(&next, rest.data + pos, rest.len - pos);
        nj_buf_release(&rest);
        rest = next;
        pos = 0;
    }
    nj_buf_release(&cur);
    nj_buf_release(&rest);
    return escapes;
}

typedef enum problem {
    PROBLEM_NONE,
    PROBLEM_DUPLICATE,    /* the path appears twice */
    PROBLEM_BENEATH,      /* *other is a non-directory ancestor */
    PROBLEM_LINK_ESCAPES, /* a symlink that leads outside */
    PROBLEM_HARDLINK,     /* a hard link to something but an earlier regular file */
} problem;

/* Checks the items (indexed, in archive order) and returns the first
 * problem; *bad is the offending item's index and *other (BENEATH only) the
 * ancestor in its way. These are the checks that need the whole tree;
 * read_header() does those about one entry alone. */
static problem check_tree(const item_list *l, size_t *bad, const item **other)
{
    for (size_t i = 0; i < l->len; i++) {
        const item *it = &l->items[i];
        *bad = i;
        if (it->duplicate) return PROBLEM_DUPLICATE;
        for (const char *s = strchr(it->path, '/'); s; s = strchr(s + 1, '/')) {
            const item *up = find_item(l, it->path, (size_t)(s - it->path));
            if (up && up->kind != ITEM_DIR) {
                *other = up;
                return PROBLEM_BENEATH;
            }
        }
        if (it->kind == ITEM_LINK && link_escapes(l, it)) return PROBLEM_LINK_ESCAPES;
        if (it->kind == ITEM_HARDLINK) {
            /* Only a regular file: a hard link to a symlink would be a copy of
             * the link in another directory, where its target means
             * something else. */
            const item *to = find_item(l, it->target, strlen(it->target));
            if (!to || to >= it || (to->kind != ITEM_FILE && to->kind != ITEM_HARDLINK))
                return PROBLEM_HARDLINK;
        }
    }
    return PROBLEM_NONE;
}

static const char *type_name(mode_t mode)
{
    switch (mode & S_IFMT) {
    case S_IFIFO:
        return "a fifo";
    case S_IFSOCK:
        return "a socket";
    case S_IFCHR:
        return "a character device";
    case S_IFBLK:
        return "a block device";
    default:
        return "an unknown file type";
    }
}

/* ---- formats --------------------------------------------------------------- */

typedef enum format { FORMAT_TAR_ZST, FORMAT_TAR_GZ, FORMAT_TAR } format;

static int parse_format(const char *text, format *out, nj_err *err)
{
    if (!text || !*text || strcmp(text, "tar.zst") == 0)
        *out = FORMAT_TAR_ZST;
    else if (strcmp(text, "tar.gz") == 0)
        *out = FORMAT_TAR_GZ;
    else if (strcmp(text, "tar") == 0)
        *out = FORMAT_TAR;
    else
        return nj_err_set(err, NJ_EUSAGE,
                          "unknown snapshot format '%s' (expected tar.zst, tar.gz or tar)", text);
    return 0;
}

int nj_snapshot_format_check(const char *text, nj_err *err)
{
    format f;
    return parse_format(text, &f, err);
}

/* Sets up the writer for `f`. A filter that libarchive would run as an
 * external program (ARCHIVE_WARN) is refused: its output would depend on
 * whatever program is installed. */
static int setup_writer(struct archive *a, format f, const char *dest, nj_err *err)
{
    const char *step = "cannot set the tar format";
    if (archive_write_set_format_pax_restricted(a) != ARCHIVE_OK) goto fail;
    /* No zero padding after the last block: after a compressed stream it
     * would read as a corrupt next frame (zstd) or hide a truncation. */
    step = "cannot set the last block size";
    if (archive_write_set_bytes_in_last_block(a, 1) != ARCHIVE_OK) goto fail;
    step = "cannot set raw-byte names";
    if (archive_write_set_format_option(a, "pax", "hdrcharset", "BINARY") != ARCHIVE_OK) goto fail;
    if (f == FORMAT_TAR_ZST) {
        if (archive_write_add_filter_zstd(a) != ARCHIVE_OK)
            return nj_err_set(err, NJ_EARCHIVE,
                              "cannot write snapshot '%s': libarchive has no built-in zstd "
                              "support (%s); use format tar.gz or tar",
                              dest, archive_error_string(a) ? archive_error_string(a) : "");
        step = "cannot set the zstd level";
        if (archive_write_set_filter_option(a, "zstd", "compression-level", ZSTD_LEVEL) !=
            ARCHIVE_OK)
            goto fail;
    } else if (f == FORMAT_TAR_GZ) {
        if (archive_write_add_filter_gzip(a) != ARCHIVE_OK)
            return nj_err_set(err, NJ_EARCHIVE,
                              "cannot write snapshot '%s': libarchive has no built-in gzip "
                              "support (%s); use format tar.zst or tar",
                              dest, archive_error_string(a) ? archive_error_string(a) : "");
        step = "cannot set the gzip options";
        /* "!timestamp": zeros instead of the current time in the header. */
        if (archive_write_set_filter_option(a, "gzip", "compression-level", GZIP_LEVEL) !=
                ARCHIVE_OK ||
            archive_write_set_filter_option(a, "gzip", "timestamp", NULL) != ARCHIVE_OK)
            goto fail;
    }
    return 0;
fail:
    return nj_err_set(err, NJ_EARCHIVE, "cannot write snapshot '%s': %s: %s", dest, step,
                      archive_error_string(a) ? archive_error_string(a) : "unknown error");
}

/* ---- create: collecting the inputs --------------------------------------- */

static void push_item(item_list *l, item it)
{
    NJ_PUSH(l->items, l->len, l->cap, it);
}

static int read_link(const char *path, const struct stat *st, char **out, nj_err *err)
{
    size_t size = st->st_size > 0 ? (size_t)st->st_size + 1 : 256;
    for (;;) {
        char *buf = nj_xmalloc(size);
        ssize_t n = readlink(path, buf, size);
        if (n < 0) {
            int e = errno;
            free(buf);
            return nj_err_sys(err, e, "cannot read symlink '%s'", path);
        }
        if ((size_t)n < size) {
            buf[n] = '\0';
            *out = buf;
            return 0;
        }
        free(buf);
        size *= 2;
    }
}

/* Adds what is at `source` (already stat'ed into *st) as `rel`. */
static int collect(item_list *l, const char *source, const char *rel, const struct stat *st,
                   int top, nj_err *err)
{
    if (S_ISREG(st->st_mode)) {
        push_item(l, (item){.path = nj_xstrdup(rel),
                            .source = nj_xstrdup(source),
                            .kind = ITEM_FILE,
                            .exec = (st->st_mode & S_IXUSR) != 0,
                            .follow = top});
        return 0;
    }
    if (S_ISLNK(st->st_mode)) {
        char *target = NULL;
        int rc = read_link(source, st, &target, err);
        if (rc < 0) return rc;
        push_item(l, (item){.path = nj_xstrdup(rel),
                            .target = target,
                            .source = nj_xstrdup(source),
                            .kind = ITEM_LINK});
        return 0;
    }
    if (!S_ISDIR(st->st_mode))
        return nj_err_set(err, -EINVAL,
                          "cannot snapshot '%s': %s is not a file, directory or symlink", source,
                          type_name(st->st_mode));

    DIR *d = opendir(source);
    if (!d) return nj_err_sys(err, errno, "cannot open directory '%s'", source);
    int rc = 0;
    size_t children = 0;
    struct dirent *e;
    for (;;) {
        errno = 0;
        if ((e = readdir(d)) == NULL) {
            if (errno != 0) rc = nj_err_sys(err, errno, "cannot read directory '%s'", source);
            break;
        }
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        children++;
        char *child = nj_path_join(source, e->d_name);
        char *child_rel =
            strcmp(rel, ".") == 0 ? nj_xstrdup(e->d_name) : nj_xasprintf("%s/%s", rel, e->d_name);
        struct stat cst;
        if (lstat(child, &cst) != 0)
            rc = nj_err_sys(err, errno, "cannot stat '%s'", child);
        else
            rc = collect(l, child, child_rel, &cst, 0, err);
        free(child);
        free(child_rel);
        if (rc < 0) break;
    }
    closedir(d);
    if (rc == 0 && children == 0 && strcmp(rel, ".") != 0)
        push_item(l,
                  (item){.path = nj_xstrdup(rel), .source = nj_xstrdup(source), .kind = ITEM_DIR});
    return rc;
}

static int compare_items(const void *a, const void *b)
{
    return strcmp(((const item *)a)->path, ((const item *)b)->path);
}

/* Collects every input into `l`, sorted by path without duplicates, and
 * checks that the tree can be extracted again. */
static int collect_inputs(item_list *l, const char *const *inputs, size_t n, const char *base_dir,
                          nj_err *err)
{
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        char *rel = nj_path_normalize(inputs[i]);
        char *source = NULL;
        if (rel[0] == '/' || nj_path_escapes(rel)) {
            rc = nj_err_set(err, NJ_EUSAGE,
                            "snapshot input '%s' must be a path inside the base directory '%s'",
                            inputs[i], base_dir);
        } else {
            source = strcmp(base_dir, ".") == 0 ? nj_xstrdup(rel)
                     : strcmp(rel, ".") == 0    ? nj_xstrdup(base_dir)
                                                : nj_path_join(base_dir, rel);
            struct stat st;
            /* An input named directly is followed, as nj_hash_path() does. */
            if (stat(source, &st) != 0)
                rc = nj_err_sys(err, errno, "cannot read snapshot input '%s'", source);
            else
                rc = collect(l, source, rel, &st, 1, err);
        }
        free(rel);
        free(source);
    }
    if (rc < 0) return rc;

    if (l->len > 1) qsort(l->items, l->len, sizeof(*l->items), compare_items);
    size_t kept = 0;
    for (size_t i = 0; i < l->len; i++) {
        if (kept > 0 && strcmp(l->items[kept - 1].path, l->items[i].path) == 0) {
            /* The same path through two overlapping inputs. */
            free(l->items[i].path);
            free(l->items[i].target);
            free(l->items[i].source);
            continue;
        }
        l->items[kept++] = l->items[i];
    }
    l->len = kept;
    index_items(l);

    size_t bad = 0;
    const item *other = NULL;
    switch (check_tree(l, &bad, &other)) {
    case PROBLEM_NONE:
        return 0;
    case PROBLEM_LINK_ESCAPES:
        return nj_err_set(err, -EINVAL,
                          "cannot snapshot '%s': symlink to '%s' points outside the snapshot",
                          l->items[bad].source, l->items[bad].target);
    case PROBLEM_BENEATH:
        return nj_err_set(err, -EINVAL,
                          "cannot snapshot '%s': overlapping inputs also hold '%s' as a symlink",
                          l->items[bad].source, other->path);
    default:
        NJ_BUG("unexpected problem in a collected snapshot tree");
    }
}

/* ---- create: writing the archive ----------------------------------------- */

/* Where libarchive's output goes: the temp file, hashed as it is written. */
typedef struct sink {
    int fd;
    nj_hasher *hasher;
    uint64_t bytes;
    int errnum; /* the first write error */
} sink;

static la_ssize_t sink_write(struct archive *a, void *ctx, const void *buf, size_t len)
{
    sink *s = ctx;
    const char *p = buf;
    size_t left = len;
    while (left > 0) {
        ssize_t n = write(s->fd, p, left);
        if (n < 0) {
            if (errno == EINTR) continue;
            s->errnum = errno;
            archive_set_error(a, errno, "write failed");
            return -1;
        }
        p += n;
        left -= (size_t)n;
    }
    nj_hasher_update(s->hasher, buf, len);
    s->bytes += len;
    return (la_ssize_t)len;
}

/* The error of a failed archive_write_* call: the sink's errno if it failed. */
static int write_error(nj_err *err, struct archive *a, const sink *s, const char *dest,
                       const char *tmp)
{
    if (s->errnum) return nj_err_sys(err, s->errnum, "cannot write '%s'", tmp);
    const char *msg = archive_error_string(a);
    return nj_err_set(err, NJ_EARCHIVE, "cannot write snapshot '%s': %s", dest,
                      msg ? msg : "unknown error");
}

static void set_fixed_fields(struct archive_entry *e, const char *path)
{
    archive_entry_clear(e);
    archive_entry_copy_pathname(e, path);
    archive_entry_set_mtime(e, 0, 0);
    archive_entry_set_uid(e, 0);
    archive_entry_set_gid(e, 0);
}

/* Writes one file's header and bytes; the file must keep the size it has
 * when it is opened. */
static int write_file(struct archive *a, struct archive_entry *e, const item *it, char *buf,
                      const sink *s, const char *dest, const char *tmp, uint64_t *bytes,
                      nj_err *err)
{
    int fd = open(it->source, O_RDONLY | O_CLOEXEC | (it->follow ? 0 : O_NOFOLLOW));
    if (fd < 0) return nj_err_sys(err, errno, "cannot open '%s'", it->source);
    int rc = 0;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = nj_err_sys(err, errno, "cannot stat '%s'", it->source);
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = nj_err_set(err, -EIO, "'%s' changed while the snapshot was written", it->source);
        goto done;
    }
    set_fixed_fields(e, it->path);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, (st.st_mode & S_IXUSR) ? EXEC_MODE : FILE_MODE);
    archive_entry_set_size(e, st.st_size);
    if (archive_write_header(a, e) != ARCHIVE_OK) {
        rc = write_error(err, a, s, dest, tmp);
        goto done;
    }
    uint64_t left = (uint64_t)st.st_size;
    while (left > 0) {
        ssize_t n = read(fd, buf, left < COPY_BLOCK ? (size_t)left : COPY_BLOCK);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            rc = nj_err_sys(err, errno, "cannot read '%s'", it->source);
            goto done;
        }
        if (n == 0) break;
        if (archive_write_data(a, buf, (size_t)n) != n) {
            rc = write_error(err, a, s, dest, tmp);
            goto done;
        }
        left -= (uint64_t)n;
    }
    ssize_t more;
    do
        more = read(fd, buf, 1);
    while (more < 0 && errno == EINTR);
    if (left > 0 || more > 0) {
        rc = nj_err_set(err, -EIO, "'%s' changed while the snapshot was written", it->source);
        goto done;
    }
    *bytes += (uint64_t)st.st_size;
done:
    close(fd);
    return rc;
}

int nj_snapshot_create(const char *const *inputs, size_t n, const char *base_dir,
                       const char *format_name, const char *dest, nj_snapshot_info *info,
                       nj_err *err)
{
    item_list l = {0};
    struct archive *a = NULL;
    struct archive_entry *e = NULL;
    char *tmp = NULL, *buf = NULL;
    sink s = {.fd = -1};
    uint64_t bytes = 0;
    format f = FORMAT_TAR;
    int rc = parse_format(format_name, &f, err);
    if (rc < 0) return rc;
    if (!base_dir || !*base_dir) base_dir = ".";

    rc = collect_inputs(&l, inputs, n, base_dir, err);
    if (rc < 0) goto fail;

    a = archive_write_new();
    if (!a) NJ_BUG("archive_write_new failed");
    rc = setup_writer(a, f, dest, err);
    if (rc < 0) goto fail;

    s.fd = nj_fs_open_temp(dest, 0644, &tmp, err);
    if (s.fd < 0) {
        rc = s.fd;
        goto fail;
    }
    s.hasher = nj_hasher_new();
    if (archive_write_open(a, &s, NULL, sink_write, NULL) != ARCHIVE_OK) {
        rc = write_error(err, a, &s, dest, tmp);
        goto fail;
    }

    e = archive_entry_new();
    buf = nj_xmalloc(COPY_BLOCK);
    for (size_t i = 0; i < l.len; i++) {
        const item *it = &l.items[i];
        if (it->kind == ITEM_FILE) {
            rc = write_file(a, e, it, buf, &s, dest, tmp, &bytes, err);
            if (rc < 0) goto fail;
            continue;
        }
        set_fixed_fields(e, it->path);
        if (it->kind == ITEM_LINK) {
            archive_entry_set_filetype(e, AE_IFLNK);
            archive_entry_set_perm(e, LINK_MODE);
            archive_entry_copy_symlink(e, it->target);
        } else {
            archive_entry_set_filetype(e, AE_IFDIR);
            archive_entry_set_perm(e, DIR_MODE);
        }
        if (archive_write_header(a, e) != ARCHIVE_OK) {
            rc = write_error(err, a, &s, dest, tmp);
            goto fail;
        }
    }
    if (archive_write_close(a) != ARCHIVE_OK) {
        rc = write_error(err, a, &s, dest, tmp);
        goto fail;
    }
    archive_write_free(a);
    a = NULL;

    nj_snapshot_info done = {.entries = l.len, .bytes = bytes, .archive_bytes = s.bytes};
    nj_hasher_final(s.hasher, &done.hash);
    rc = nj_fs_commit_temp(s.fd, tmp, dest, err); /* closes the fd, unlinks tmp on failure */
    s.fd = -1;
    if (rc < 0) goto fail;
    if (info) *info = done;
    rc = 0;
    goto out;

fail:
    if (a) archive_write_free(a); /* may still flush into the fd; it is dropped below */
    a = NULL;
    if (s.fd >= 0) {
        close(s.fd);
        unlink(tmp);
    }
out:
    archive_entry_free(e);
    nj_hasher_free(s.hasher);
    free(buf);
    free(tmp);
    items_release(&l);
    return rc;
}

/* ---- reading ----------------------------------------------------------------- */

/* Opens `path` for reading: tar (ustar, pax, gnu) raw, gzip or zstd. */
static int open_reader(const char *path, struct archive **out, nj_err *err)
{
    struct archive *a = archive_read_new();
    if (!a) NJ_BUG("archive_read_new failed");
    archive_read_support_format_tar(a);
    /* ARCHIVE_WARN only means an external program would be used. */
    if (archive_read_support_filter_gzip(a) < ARCHIVE_WARN ||
        archive_read_support_filter_zstd(a) < ARCHIVE_WARN ||
        archive_read_open_filename(a, path, READ_BLOCK) != ARCHIVE_OK) {
        const char *msg = archive_error_string(a);
        int code = archive_errno(a) > 0 ? -archive_errno(a) : NJ_EARCHIVE;
        nj_err_set(err, code, "cannot read snapshot '%s': %s", path, msg ? msg : "unknown error");
        archive_read_free(a);
        return code;
    }
    *out = a;
    return 0;
}

/* Reads the next header. Returns 1 with *e set, 0 at the end, or a negative
 * code. Warnings count as errors: a header libarchive had to guess about is
 * not one to extract. */
static int next_header(struct archive *a, struct archive_entry **e, const char *path, nj_err *err)
{
    int r = archive_read_next_header(a, e);
    if (r == ARCHIVE_OK) return 1;
    if (r == ARCHIVE_EOF) return 0;
    const char *msg = archive_error_string(a);
    return nj_err_set(err, NJ_EARCHIVE, "cannot read snapshot '%s': %s", path,
                      msg ? msg : "unknown error");
}

int nj_snapshot_list_entries(const char *path, nj_snapshot_visit_fn fn, void *ctx, nj_err *err)
{
    struct archive *a;
    int rc = open_reader(path, &a, err);
    if (rc < 0) return rc;
    struct archive_entry *e;
    nj_buf name;
    nj_buf_init(&name);
    while ((rc = next_header(a, &e, path, err)) == 1) {
        const char *stored = archive_entry_pathname(e);
        nj_buf_reset(&name);
        nj_buf_puts(&name, stored ? stored : "");
        nj_snapshot_entry out = {.path = name.data};
        mode_t type = archive_entry_filetype(e);
        if (archive_entry_hardlink(e)) {
            out.kind = (archive_entry_perm(e) & S_IXUSR) ? NJ_ENTRY_EXEC : NJ_ENTRY_FILE;
            out.target = archive_entry_hardlink(e);
            out.hardlink = 1;
        } else if (type == AE_IFREG) {
            out.kind = (archive_entry_perm(e) & S_IXUSR) ? NJ_ENTRY_EXEC : NJ_ENTRY_FILE;
            out.size = (uint64_t)archive_entry_size(e);
        } else if (type == AE_IFDIR) {
            out.kind = NJ_ENTRY_DIR;
            while (name.len > 1 && name.data[name.len - 1] == '/')
                name.data[--name.len] = '\0';
        } else if (type == AE_IFLNK) {
            out.kind = NJ_ENTRY_LINK;
            out.target = archive_entry_symlink(e);
        } else {
            rc = nj_err_set(err, NJ_EARCHIVE,
                            "snapshot '%s': entry '%s' is %s, not a file, directory or symlink",
                            path, out.path, type_name(type));
            break;
        }
        if ((rc = fn(ctx, &out)) != 0) break;
    }
    nj_buf_release(&name);
    archive_read_free(a);
    return rc;
}

/* ---- extract ------------------------------------------------------------------ */

static int has_dotdot(const char *path)
{
    for (const char *p = path; *p;) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == 2 && p[0] == '.' && p[1] == '.') return 1;
        if (!end) break;
        p = end + 1;
    }
    return 0;
}

/* Turns a header into an item, doing the checks that need this entry only.
 * Returns 1 with *out filled (owning its strings), 0 for an entry to skip
 * (a directory entry for the root itself, "./"), or a negative code. */
static int read_header(struct archive_entry *e, const char *archive, item *out, nj_err *err)
{
    memset(out, 0, sizeof(*out));
    const char *name = archive_entry_pathname(e);
    if (!name || !*name)
        return nj_err_set(err, NJ_EARCHIVE, "snapshot '%s': an entry has no usable name", archive);
    if (name[0] == '/' || has_dotdot(name))
        return nj_err_set(err, NJ_EARCHIVE, "snapshot '%s': entry '%s' escapes the destination",
                          archive, name);
    const char *hardlink = archive_entry_hardlink(e);
    mode_t type = archive_entry_filetype(e);
    item it = {0};
    if (hardlink) {
        if (hardlink[0] == '/' || has_dotdot(hardlink) || !*hardlink)
            return nj_err_set(
                err, NJ_EARCHIVE,
                "snapshot '%s': entry '%s' escapes the destination: hard link to '%s'", archive,
                name, hardlink);
        it.kind = ITEM_HARDLINK;
    } else if (type == AE_IFREG) {
        it.kind = ITEM_FILE;
        it.exec = (archive_entry_perm(e) & S_IXUSR) != 0;
    } else if (type == AE_IFDIR) {
        it.kind = ITEM_DIR;
    } else if (type == AE_IFLNK) {
        const char *target = archive_entry_symlink(e);
        if (!target || !*target)
            return nj_err_set(err, NJ_EARCHIVE,
                              "snapshot '%s': entry '%s' is a symlink without a target", archive,
                              name);
        it.kind = ITEM_LINK;
    } else {
        return nj_err_set(err, NJ_EARCHIVE,
                          "snapshot '%s': entry '%s' is %s, not a file, directory or symlink",
                          archive, name, type_name(type));
    }
    it.path = nj_path_normalize(name);
    if (strcmp(it.path, ".") == 0) {
        free(it.path);
        if (it.kind == ITEM_DIR) return 0;
        return nj_err_set(err, NJ_EARCHIVE, "snapshot '%s': entry '%s' has no usable name", archive,
                          name);
    }
    if (it.kind == ITEM_HARDLINK) it.target = nj_path_normalize(hardlink);
    if (it.kind == ITEM_LINK) it.target = nj_xstrdup(archive_entry_symlink(e));
    *out = it;
    return 1;
}

/* Pass 1: reads every header of `archive` into `l` and checks the tree. */
static int validate(const char *archive, item_list *l, nj_err *err)
{
    struct archive *a;
    int rc = open_reader(archive, &a, err);
    if (rc < 0) return rc;
    struct archive_entry *e;
    while ((rc = next_header(a, &e, archive, err)) == 1) {
        item it;
        rc = read_header(e, archive, &it, err);
        if (rc < 0) break;
        if (rc == 1) push_item(l, it);
    }
    archive_read_free(a);
    if (rc < 0) return rc;

    index_items(l);
    size_t bad = 0;
    const item *other = NULL;
    problem p = check_tree(l, &bad, &other);
    if (p == PROBLEM_NONE) return 0;
    const item *it = &l->items[bad];
    switch (p) {
    case PROBLEM_NONE:
        break;
    case PROBLEM_DUPLICATE:
        return nj_err_set(err, NJ_EARCHIVE, "snapshot '%s': entry '%s' appears twice", archive,
                          it->path);
    case PROBLEM_BENEATH:
        return nj_err_set(err, NJ_EARCHIVE, "snapshot '%s': entry '%s' lies beneath the %s '%s'",
                          archive, it->path, other->kind == ITEM_LINK ? "symlink" : "file",
                          other->path);
    case PROBLEM_LINK_ESCAPES:
        return nj_err_set(err, NJ_EARCHIVE,
                          "snapshot '%s': entry '%s' escapes the destination: symlink to '%s'",
                          archive, it->path, it->target);
    case PROBLEM_HARDLINK:
        return nj_err_set(err, NJ_EARCHIVE,
                          "snapshot '%s': entry '%s' is a hard link to '%s', which is not a "
                          "regular file earlier in the archive",
                          archive, it->path, it->target);
    }
    NJ_BUG("unknown snapshot problem %d", (int)p);
}

/* dest must be missing or an empty directory. */
static int check_dest(const char *archive, const char *dest, nj_err *err)
{
    struct stat st;
    if (lstat(dest, &st) != 0) {
        if (errno == ENOENT) return 0;
        return nj_err_sys(err, errno, "cannot stat '%s'", dest);
    }
    int empty = 0;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(dest);
        if (!d) return nj_err_sys(err, errno, "cannot open directory '%s'", dest);
        struct dirent *de;
        empty = 1;
        while (empty && (de = readdir(d)) != NULL)
            if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) empty = 0;
        closedir(d);
    }
    if (!empty)
        return nj_err_set(err, -EEXIST,
                          "cannot extract snapshot '%s' into '%s': it exists and is not an "
                          "empty directory",
                          archive, dest);
    return 0;
}


static int disk_error(nj_err *err, struct archive *disk, const char *archive, const char *path)
{
    const char *msg = archive_error_string(disk);
    int e = archive_errno(disk);
    return nj_err_set(err, e > 0 ? -e : NJ_EARCHIVE, "cannot extract '%s' from snapshot '%s': %s",
                      path, archive, msg ? msg : "unknown error");
}

/* Pass 2: writes the entries validated in `l` beneath `root` (an absolute
 * path without symlinks). Each header must match what pass 1 saw. */
static int write_entries(const char *archive, const item_list *l, const char *root, nj_err *err)
{
    /* ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS is left out on purpose: the
     * names given to libarchive are absolute, "<root>/<entry>", because it
     * resolves relative ones against the process-wide working directory,
     * and changing that would race with every other thread of the runner.
     * Absolute entry names are refused by read_header() before this. */
    const int flags =
        ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_SECURE_NODOTDOT;
    struct archive *a;
    int rc = open_reader(archive, &a, err);
    if (rc < 0) return rc;
    struct archive *disk = archive_write_disk_new();
    if (!disk) NJ_BUG("archive_write_disk_new failed");
    archive_write_disk_set_options(disk, flags);

    struct archive_entry *e;
    size_t index = 0;
    while ((rc = next_header(a, &e, archive, err)) == 1) {
        item it;
        rc = read_header(e, archive, &it, err);
        if (rc < 0) break;
        if (rc == 0) continue;
        const item *want = index < l->len ? &l->items[index] : NULL;
        index++;
        int same = want && want->kind == it.kind && strcmp(want->path, it.path) == 0 &&
                   (want->target == NULL) == (it.target == NULL) &&
                   (!it.target || strcmp(want->target, it.target) == 0);
        if (!same) {
            rc = nj_err_set(err, NJ_EARCHIVE, "snapshot '%s' changed while it was extracted",
                            archive);
            free(it.path);
            free(it.target);
            break;
        }
        char *full = nj_xasprintf("%s/%s", root, it.path);
        archive_entry_copy_pathname(e, full);
        if (it.kind == ITEM_HARDLINK) {
            char *to = nj_xasprintf("%s/%s", root, it.target);
            archive_entry_copy_hardlink(e, to);
            free(to);
        } else if (it.kind == ITEM_FILE) {
            archive_entry_set_perm(e, it.exec ? EXEC_MODE : FILE_MODE);
        } else if (it.kind == ITEM_DIR) {
            archive_entry_set_perm(e, DIR_MODE);
        }
        free(full);
        if (archive_write_header(disk, e) != ARCHIVE_OK) {
            rc = disk_error(err, disk, archive, it.path);
        } else {
            const void *block;
            size_t size;
            la_int64_t offset;
            int r;
            while ((r = archive_read_data_block(a, &block, &size, &offset)) == ARCHIVE_OK) {
                if (archive_write_data_block(disk, block, size, offset) != ARCHIVE_OK) {
                    rc = disk_error(err, disk, archive, it.path);
                    break;
                }
            }
            if (rc >= 0 && r != ARCHIVE_EOF)
                rc =
                    nj_err_set(err, NJ_EARCHIVE, "cannot read snapshot '%s': %s", archive,
                               archive_error_string(a) ? archive_error_string(a) : "unknown error");
            if (rc >= 0 && archive_write_finish_entry(disk) != ARCHIVE_OK)
                rc = disk_error(err, disk, archive, it.path);
        }
        free(it.path);
        free(it.target);
        if (rc < 0) break;
    }
    if (rc == 0 && index != l->len)
        rc = nj_err_set(err, NJ_EARCHIVE, "snapshot '%s' changed while it was extracted", archive);
    /* Applies the modes of directory entries. */
    if (archive_write_close(disk) != ARCHIVE_OK && rc == 0)
        rc = disk_error(err, disk, archive, ".");
    archive_write_free(disk);
    archive_read_free(a);
    return rc;
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Gives every directory of the extracted tree mode 0755: those libarchive
 * made on the way to an entry got 0777 & ~umask. Every proper prefix of an
 * entry is a directory (check_tree() made sure), so no symlink is chmod'ed
 * through. */
static int fix_dir_modes(const item_list *l, const char *root, nj_err *err)
{
    nj_strs dirs = {0};
    for (size_t i = 0; i < l->len; i++) {
        const char *p = l->items[i].path;
        for (const char *s = strchr(p, '/'); s; s = strchr(s + 1, '/')) {
            char *dir = nj_xstrndup(p, (size_t)(s - p));
            nj_strs_push(&dirs, dir);
            free(dir);
        }
    }
    int rc = 0;
    const char *last = NULL;
    if (dirs.len > 1) qsort(dirs.items, dirs.len, sizeof(*dirs.items), compare_strings);
    for (size_t i = 0; i < dirs.len && rc == 0; i++) {
        if (last && strcmp(last, dirs.items[i]) == 0) continue;
        last = dirs.items[i];
        char *full = nj_xasprintf("%s/%s", root, dirs.items[i]);
        if (chmod(full, DIR_MODE) != 0) rc = nj_err_sys(err, errno, "cannot chmod '%s'", full);
        free(full);
    }
    nj_strs_release(&dirs);
    return rc;
}

int nj_snapshot_extract(const char *archive, const char *dest_dir, nj_err *err)
{
    item_list l = {0};
    char *dest = nj_path_normalize(dest_dir);
    char *tmp = NULL, *root = NULL;
    int rc = validate(archive, &l, err);
    if (rc < 0) goto fail;
    if ((rc = check_dest(archive, dest, err)) < 0) goto fail;
    if ((rc = nj_fs_mkdirs_parent(dest, err)) < 0) goto fail;
    if ((rc = nj_fs_make_temp_dir(dest, 0700, &tmp, err)) < 0) goto fail;
    /* Symlink-free, for ARCHIVE_EXTRACT_SECURE_SYMLINKS checks every component. */
    root = realpath(tmp, NULL);
    if (!root) {
        rc = nj_err_sys(err, errno, "cannot resolve '%s'", tmp);
        goto fail;
    }
    if ((rc = write_entries(archive, &l, root, err)) < 0) goto fail;
    if ((rc = fix_dir_modes(&l, root, err)) < 0) goto fail;
    if (chmod(tmp, DIR_MODE) != 0) {
        rc = nj_err_sys(err, errno, "cannot chmod '%s'", tmp);
        goto fail;
    }
    /* One syncfs instead of an fsync per file, as nj_store_restore_tree(). */
    int dfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || syncfs(dfd) != 0) rc = nj_err_sys(err, errno, "cannot sync '%s'", tmp);
    if (dfd >= 0) close(dfd);
    if (rc < 0) goto fail;
    /* rename(2) replaces an empty directory and refuses a non-empty one. */
    if (rename(tmp, dest) != 0) {
        int e = errno;
        if (e == ENOTEMPTY || e == EEXIST || e == ENOTDIR || e == EISDIR)
            rc = nj_err_set(err, -e,
                            "cannot extract snapshot '%s' into '%s': it exists and is not an "
                            "empty directory",
                            archive, dest);
        else
            rc = nj_err_sys(err, e, "cannot rename '%s' to '%s'", tmp, dest);
        goto fail;
    }
    rc = nj_fs_fsync_parent(dest, err);
    goto out;

fail:
    if (tmp) nj_fs_remove_tree(tmp, NULL);
out:
    free(root);
    free(tmp);
    free(dest);
    items_release(&l);
    return rc;
}
