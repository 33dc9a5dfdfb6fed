/* kl_store: objects, resourceVersion, history ring and write-ahead log
 * (see kl_store.h).
 *
 * WAL lines: "P\t<rkey>\t<ns>\t<name>\t<json>\n" for a put and
 * "D\t<rkey>\t<ns>\t<name>\t<rv>\n" for a delete. Names, namespaces and
 * resource keys never contain tabs or newlines (API validation), and cJSON
 * prints JSON unformatted on one line. At open the log is replayed, then
 * rewritten as a snapshot (put lines only, plus "R\t<rv>") so it does not
 * grow across restarts. */
#include "kl_store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct entry {
    char *ns;
    char *name;
    cJSON *obj;
} entry;

typedef struct table {
    char *rkey;
    entry *e;
    size_t n, cap;
} table;

struct kl_store {
    table *tabs;
    size_t n_tabs;
    uint64_t rv;
    kl_event *ring;
    size_t cap, head, count; /* oldest at head */
    uint64_t floor;
    int fd;
    char *path;
    int sync;
    int deferred;
    int dirty;
    uint64_t writes;
};

/* ---- tables ---- */

static table *find_tab(kl_store *st, const char *rkey, int create)
{
    for (size_t i = 0; i < st->n_tabs; i++)
        if (strcmp(st->tabs[i].rkey, rkey) == 0)
            return &st->tabs[i];
    if (!create)
        return NULL;
    table *nt = realloc(st->tabs, (st->n_tabs + 1) * sizeof(*nt));
    if (!nt)
        return NULL;
    st->tabs = nt;
    table *t = &st->tabs[st->n_tabs];
    memset(t, 0, sizeof(*t));
    if (!(t->rkey = strdup(rkey)))
        return NULL;
    st->n_tabs++;
    return t;
}

static int cmp_key(const char *ns1, const char *n1, const char *ns2, const char *n2)
{
    int c = strcmp(ns1, ns2);
    return c ? c : strcmp(n1, n2);
}

/* Index of the key, or -(insertion point)-1. */
static long tab_search(const table *t, const char *ns, const char *name)
{
    long lo = 0, hi = (long)t->n - 1;
    while (lo <= hi) {
        long mid = (lo + hi) / 2;
        int c = cmp_key(t->e[mid].ns, t->e[mid].name, ns, name);
        if (c == 0)
            return mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -lo - 1;
}

/* Puts obj (taken) into the table; *old receives the previous object
 * (caller owns) or NULL. */
static int tab_put(table *t, const char *ns, const char *name, cJSON *obj, cJSON **old)
{
    *old = NULL;
    long i = tab_search(t, ns, name);
    if (i >= 0) {
        *old = t->e[i].obj;
        t->e[i].obj = obj;
        return 0;
    }
    size_t at = (size_t)(-i - 1);
    if (t->n == t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 16;
        entry *ne = realloc(t->e, nc * sizeof(*ne));
        if (!ne)
            return KILN_ENOMEM;
        t->e = ne;
        t->cap = nc;
    }
    entry e = {strdup(ns), strdup(name), obj};
    if (!e.ns || !e.name) {
        free(e.ns);
        free(e.name);
        return KILN_ENOMEM;
    }
    memmove(&t->e[at + 1], &t->e[at], (t->n - at) * sizeof(entry));
    t->e[at] = e;
    t->n++;
    return 0;
}

static cJSON *tab_del(table *t, const char *ns, const char *name)
{
    long i = tab_search(t, ns, name);
    if (i < 0)
        return NULL;
    cJSON *o = t->e[i].obj;
    free(t->e[i].ns);
    free(t->e[i].name);
    memmove(&t->e[i], &t->e[i + 1], (t->n - (size_t)i - 1) * sizeof(entry));
    t->n--;
    return o;
}

/* ---- history ---- */

static void ev_release(kl_event *e)
{
    free(e->rkey);
    free(e->ns);
    free(e->json);
    cJSON_Delete(e->obj);
    cJSON_Delete(e->prev);
    memset(e, 0, sizeof(*e));
}

/* Records an event; obj and prev are taken. */
static void record(kl_store *st, int type, const char *rkey, const char *ns, cJSON *obj,
                   cJSON *prev)
{
    if (!st->cap) {
        cJSON_Delete(obj);
        cJSON_Delete(prev);
        st->floor = st->rv;
        return;
    }
    if (st->count == st->cap) {
        kl_event *old = &st->ring[st->head];
        st->floor = old->rv;
        ev_release(old);
        st->head = (st->head + 1) % st->cap;
        st->count--;
    }
    kl_event *e = &st->ring[(st->head + st->count) % st->cap];
    e->rv = st->rv;
    e->type = type;
    e->rkey = strdup(rkey);
    e->ns = strdup(ns);
    e->obj = obj;
    e->prev = prev;
    e->json = cJSON_PrintUnformatted(obj);
    if (!e->rkey || !e->ns) {
        /* Out of memory: drop history instead of serving a partial event. */
        ev_release(e);
        st->floor = st->rv;
        return;
    }
    st->count++;
}

/* ---- WAL ---- */

static int wal_write(kl_store *st, const char *line, size_t len, kiln_error *err)
{
    if (st->fd < 0)
        return 0;
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(st->fd, line + off, len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return kiln_fail(err, KILN_EIO, "write %s: %s", st->path, strerror(errno));
        }
        off += (size_t)w;
    }
    if (st->sync && st->deferred) {
        st->dirty = 1;
        return 0;
    }
    if (st->sync && fdatasync(st->fd) != 0)
        return kiln_fail(err, KILN_EIO, "fsync %s: %s", st->path, strerror(errno));
    return 0;
}

static char *put_line(const char *rkey, const char *ns, const char *name, const cJSON *obj,
                      size_t *len)
{
    char *js = cJSON_PrintUnformatted(obj);
    if (!js)
        return NULL;
    size_t n = strlen(rkey) + strlen(ns) + strlen(name) + strlen(js) + 16;
    char *line = malloc(n);
    if (line)
        *len = (size_t)snprintf(line, n, "P\t%s\t%s\t%s\t%s\n", rkey, ns, name, js);
    free(js);
    return line;
}

static uint64_t obj_rv(const cJSON *obj)
{
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
    const cJSON *rv = cJSON_GetObjectItemCaseSensitive(md, "resourceVersion");
    return cJSON_IsString(rv) ? strtoull(rv->valuestring, NULL, 10) : 0;
}

static int replay(kl_store *st, FILE *f, kiln_error *err)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) > 0) {
        if (line[len - 1] != '\n')
            break; /* torn tail from a crash mid-write: ignore */
        line[len - 1] = 0;
        char *f1 = strchr(line, '\t');
        if (!f1)
            continue;
        *f1++ = 0;
        if (line[0] == 'R') {
            uint64_t rv = strtoull(f1, NULL, 10);
            if (rv > st->rv)
                st->rv = rv;
            continue;
        }
        char *f2 = strchr(f1, '\t'), *f3 = f2 ? strchr(f2 + 1, '\t') : NULL;
        char *f4 = f3 ? strchr(f3 + 1, '\t') : NULL;
        if (!f4)
            continue;
        *f2++ = 0;
        *f3++ = 0;
        *f4++ = 0;
        table *t = find_tab(st, f1, 1);
        if (!t) {
            free(line);
            return kiln_fail(err, KILN_ENOMEM, "out of memory replaying the log");
        }
        if (line[0] == 'P') {
            cJSON *obj = cJSON_Parse(f4);
            if (!obj)
                continue;
            uint64_t rv = obj_rv(obj);
            if (rv > st->rv)
                st->rv = rv;
            cJSON *old = NULL;
            if (tab_put(t, f2, f3, obj, &old) != 0)
                cJSON_Delete(obj);
            cJSON_Delete(old);
        } else if (line[0] == 'D') {
            uint64_t rv = strtoull(f4, NULL, 10);
            if (rv > st->rv)
                st->rv = rv;
            cJSON_Delete(tab_del(t, f2, f3));
        }
    }
    free(line);
    return 0;
}

static int compact(kl_store *st, const char *dir, kiln_error *err)
{
    size_t pl = strlen(dir) + 32;
    char *tmp = malloc(pl);
    if (!tmp)
        return KILN_ENOMEM;
    snprintf(tmp, pl, "%s/store.wal.tmp", dir);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        int rc = kiln_fail(err, KILN_EIO, "open %s: %s", tmp, strerror(errno));
        free(tmp);
        return rc;
    }
    int saved = st->fd, rc = 0;
    st->fd = fd;
    int sync = st->sync;
    st->sync = 0;
    char rl[64];
    int n = snprintf(rl, sizeof(rl), "R\t%llu\n", (unsigned long long)st->rv);
    rc = wal_write(st, rl, (size_t)n, err);
    for (size_t i = 0; !rc && i < st->n_tabs; i++)
        for (size_t j = 0; !rc && j < st->tabs[i].n; j++) {
            entry *e = &st->tabs[i].e[j];
            size_t len;
            char *line = put_line(st->tabs[i].rkey, e->ns, e->name, e->obj, &len);
            rc = line ? wal_write(st, line, len, err) : KILN_ENOMEM;
            free(line);
        }
    st->sync = sync;
    st->fd = saved;
    if (!rc && fsync(fd) != 0)
        rc = kiln_fail(err, KILN_EIO, "fsync %s: %s", tmp, strerror(errno));
    close(fd);
    if (!rc && rename(tmp, st->path) != 0)
        rc = kiln_fail(err, KILN_EIO, "rename %s: %s", tmp, strerror(errno));
    if (!rc) {
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            if (fsync(dfd) != 0)
                rc = kiln_fail(err, KILN_EIO, "fsync %s: %s", dir, strerror(errno));
            close(dfd);
        }
    }
    free(tmp);
    return rc;
}

/* ---- API ---- */

int kl_store_open(const char *dir, size_t hist_cap, kl_store **out, kiln_error *err)
{
    *out = NULL;
    kl_store *st = calloc(1, sizeof(*st));
    if (!st)
        return KILN_ENOMEM;
    st->fd = -1;
    st->sync = 1;
    st->cap = hist_cap;
    if (hist_cap && !(st->ring = calloc(hist_cap, sizeof(kl_event)))) {
        free(st);
        return KILN_ENOMEM;
    }
    if (dir) {
        size_t pl = strlen(dir) + 16;
        if (!(st->path = malloc(pl))) {
            kl_store_free(st);
            return KILN_ENOMEM;
        }
        snprintf(st->path, pl, "%s/store.wal", dir);
        FILE *f = fopen(st->path, "re");
        if (f) {
            int rc = replay(st, f, err);
            fclose(f);
            if (rc) {
                kl_store_free(st);
                return rc;
            }
        }
        int rc = compact(st, dir, err);
        if (rc) {
            kl_store_free(st);
            return rc;
        }
        st->fd = open(st->path, O_WRONLY | O_APPEND | O_CLOEXEC);
        if (st->fd < 0) {
            rc = kiln_fail(err, KILN_EIO, "open %s: %s", st->path, strerror(errno));
            kl_store_free(st);
            return rc;
        }
    }
    st->floor = st->rv;
    *out = st;
    return 0;
}

void kl_store_free(kl_store *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < st->n_tabs; i++) {
        for (size_t j = 0; j < st->tabs[i].n; j++) {
            free(st->tabs[i].e[j].ns);
            free(st->tabs[i].e[j].name);
            cJSON_Delete(st->tabs[i].e[j].obj);
        }
        free(st->tabs[i].e);
        free(st->tabs[i].rkey);
    }
    free(st->tabs);
    for (size_t i = 0; i < st->count; i++)
        ev_release(&st->ring[(st->head + i) % st->cap]);
    free(st->ring);
    if (st->fd >= 0) {
        if (st->dirty)
            fdatasync(st->fd);
        close(st->fd);
    }
    free(st->path);
    free(st);
}

uint64_t kl_store_rv(const kl_store *st)
{
    return st->rv;
}

const cJSON *kl_store_get(kl_store *st, const char *rkey, const char *ns, const char *name)
{
    table *t = find_tab(st, rkey, 0);
    if (!t)
        return NULL;
    long i = tab_search(t, ns ? ns : "", name);
    return i >= 0 ? t->e[i].obj : NULL;
}

static void set_rv(cJSON *obj, uint64_t rv)
{
    cJSON *md = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
    if (!md)
        md = cJSON_AddObjectToObject(obj, "metadata");
    char buf[32];
    snprintf(buf, sizeof(buf), "%llu", (unsigned long long)rv);
    cJSON *s = cJSON_CreateString(buf);
    if (!md || !s) {
        cJSON_Delete(s);
        return;
    }
    if (cJSON_GetObjectItemCaseSensitive(md, "resourceVersion"))
        cJSON_ReplaceItemInObjectCaseSensitive(md, "resourceVersion", s);
    else
        cJSON_AddItemToObject(md, "resourceVersion", s);
}

int kl_store_put(kl_store *st, const char *rkey, const char *ns, const char *name, cJSON *obj,
                 kiln_error *err)
{
    ns = ns ? ns : "";
    table *t = find_tab(st, rkey, 1);
    if (!t) {
        cJSON_Delete(obj);
        return kiln_fail(err, KILN_ENOMEM, "out of memory");
    }
    set_rv(obj, st->rv + 1);
    size_t len;
    char *line = put_line(rkey, ns, name, obj, &len);
    if (!line) {
        cJSON_Delete(obj);
        return kiln_fail(err, KILN_ENOMEM, "out of memory");
    }
    int rc = wal_write(st, line, len, err);
    free(line);
    if (rc) {
        cJSON_Delete(obj);
        return rc;
    }
    st->rv++;
    st->writes++;
    cJSON *copy = cJSON_Duplicate(obj, 1);
    cJSON *old = NULL;
    rc = tab_put(t, ns, name, obj, &old);
    if (rc) {
        cJSON_Delete(obj);
        cJSON_Delete(copy);
        return kiln_fail(err, rc, "out of memory");
    }
    record(st, old ? KL_MODIFIED : KL_ADDED, rkey, ns, copy, old);
    return 0;
}

int kl_store_del(kl_store *st, const char *rkey, const char *ns, const char *name,
                 kiln_error *err)
{
    ns = ns ? ns : "";
    table *t = find_tab(st, rkey, 0);
    if (!t || tab_search(t, ns, name) < 0)
        return kiln_fail(err, KILN_ENOTFOUND, "not found");
    char line[1024];
    int n = snprintf(line, sizeof(line), "D\t%s\t%s\t%s\t%llu\n", rkey, ns, name,
                     (unsigned long long)(st->rv + 1));
    if (n < 0 || (size_t)n >= sizeof(line))
        return kiln_fail(err, KILN_EINVAL, "key too long");
    int rc = wal_write(st, line, (size_t)n, err);
    if (rc)
        return rc;
    st->rv++;
    st->writes++;
    cJSON *o = tab_del(t, ns, name);
    set_rv(o, st->rv);
    record(st, KL_DELETED, rkey, ns, o, NULL);
    return 0;
}

int kl_store_list(kl_store *st, const char *rkey, const char *ns, const cJSON ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    table *t = find_tab(st, rkey, 0);
    if (!t || !t->n)
        return 0;
    const cJSON **arr = malloc(t->n * sizeof(*arr));
    if (!arr)
        return KILN_ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < t->n; i++)
        if (!ns || strcmp(t->e[i].ns, ns) == 0)
            arr[k++] = t->e[i].obj;
    *out = arr;
    *n = k;
    return 0;
}

uint64_t kl_store_hist_floor(const kl_store *st)
{
    return st->floor;
}

const kl_event *kl_store_event_after(const kl_store *st, uint64_t after)
{
    if (!st->count)
        return NULL;
    size_t lo = 0, hi = st->count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (st->ring[(st->head + mid) % st->cap].rv <= after)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < st->count ? &st->ring[(st->head + lo) % st->cap] : NULL;
}

void kl_store_expire_history(kl_store *st)
{
    for (size_t i = 0; i < st->count; i++)
        ev_release(&st->ring[(st->head + i) % st->cap]);
    st->head = st->count = 0;
    st->floor = st->rv;
}

uint64_t kl_store_writes(const kl_store *st)
{
    return st->writes;
}

void kl_store_set_sync(kl_store *st, int on)
{
    st->sync = on;
}

void kl_store_set_deferred(kl_store *st, int on)
{
    st->deferred = on;
}

int kl_store_dirty(const kl_store *st)
{
    return st->dirty;
}

int kl_store_flush(kl_store *st, kiln_error *err)
{
    if (!st->dirty)
        return 0;
    st->dirty = 0;
    if (st->fd >= 0 && fdatasync(st->fd) != 0)
        return kiln_fail(err, KILN_EIO, "fsync %s: %s", st->path, strerror(errno));
    return 0;
}
