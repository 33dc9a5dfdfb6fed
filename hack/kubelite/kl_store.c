/* kl_store: objects, resourceVersion, history ring and write-ahead log
 * (see kl_store.h).
 *
 * WAL lines: "P\t<rkey>\t<ns>\t<name>\t<json>\n" for a put and
 * "D\t<rkey>\t<ns>\t<name>\t<rv>\n" for a delete. Names, namespaces and
 * resource keys never contain tabs or newlines (API validation), and cJSON
 * prints JSON unformatted on one line. At open the log is replayed, then
 * rewritten as a snapshot (put lines only, plus "R\t<rv>") so it does not
 * grow across restarts.
 *
 * Objects of one resource live in a hash table keyed by (namespace, name),
 * so a get, put or delete costs O(1) however many objects there are. Lists
 * are returned sorted: a sorted array of the entries is kept beside the
 * hash, new entries wait in an unsorted "pending" array and deleted ones
 * stay as dead entries until the next list sorts the pending ones and
 * merges them in (O(pending log pending + n), and a list is O(n) anyway).
 *
 * Group commit: the syncer thread shares only the log's file descriptor
 * and the appended/durable marks (under mu); everything else belongs to
 * the thread that owns the store. Writers that wait for their reply come
 * back one round trip after an fsync released them, just after the next
 * fsync started, so each write would wait for two fsyncs. The syncer
 * therefore gathers a batch first: it waits until as many records as the
 * last batch had are pending, or at most GATHER_MAX_NS (and never longer
 * than the last fsync took), the way databases use a commit delay.
 *
 * Zero-filled log: on ext4 (and most journalling filesystems) an
 * fdatasync after an append must also commit the journal, since the
 * file's size and its new blocks changed; under other disk traffic that
 * commit took up to 200 ms, and every write waiting for its reply waited
 * with it. The syncer therefore writes zeros ahead of the records
 * (FILL_CHUNK at a time, once less than FILL_LOW is left) and records then
 * overwrite blocks that already exist: their fdatasync flushes data only.
 * Replay stops at the first line holding a NUL byte, where the zeros (or a
 * record whose earlier neighbour never reached the disk) begin. */
#include "kl_store.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Longest wait for a batch to fill before an fdatasync. */
#define GATHER_MAX_NS 2000000

/* Zeros written ahead of the records: a new chunk once less than FILL_LOW
 * is left, FILL_PIECE bytes per write (under mu, so a writer that runs past
 * the zeros never waits longer than one piece). */
#define FILL_CHUNK (4u << 20)
#define FILL_LOW (2u << 20)
#define FILL_PIECE (128u << 10)

typedef struct entry {
    char *ns;
    char *name;
    cJSON *obj;
    uint64_t hash;
    int dead; /* deleted; freed at the next merge */
} entry;

typedef struct table {
    char *rkey;
    entry **slots; /* open addressing, linear probing; NULL = empty */
    size_t n_slots, n_live;
    entry **sorted; /* by (ns, name); may hold dead entries */
    size_t n_sorted;
    entry **pending; /* live or dead entries not yet in sorted */
    size_t n_pending, cap_pending;
    size_t n_dead;
} table;

struct kl_store {
    table *tabs;
    size_t n_tabs;
    size_t last_tab; /* index of the last table looked up (cache) */
    uint64_t rv;
    kl_event *ring;
    size_t cap, head, count; /* oldest at head */
    uint64_t floor;
    int fd;
    char *path;
    int sync;
    int deferred;
    uint64_t writes;
    /* Where the next record goes, how far zeros are written and how far
     * the current chunk of zeros will go; changed under mu. */
    uint64_t off, zeroed, fill_to;
    /* WAL records appended and made durable; the rv of the last of each. */
    uint64_t app_seq, app_rv;
    _Atomic uint64_t dur_seq, dur_rv;
    _Atomic uint64_t syncs, sync_ns; /* fdatasyncs of the log, time in them */
    _Atomic int sync_err; /* errno of a failed fdatasync: sticky */
    /* syncer thread */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thr;
    int thr_on, stop;
    /* The syncer sleeps until app_seq reaches wake_at: a signal per
     * record would cost a futex wake-up and a context switch per write. */
    uint64_t wake_at;
    kl_store_wake_fn wake;
    void *wake_ctx;
};

/* ---- hash tables ---- */

static uint64_t key_hash(const char *ns, const char *name)
{
    /* FNV-1a over "ns\0name". */
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)ns; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return h;
}

static int cmp_key(const char *ns1, const char *n1, const char *ns2, const char *n2)
{
    int c = strcmp(ns1, ns2);
    return c ? c : strcmp(n1, n2);
}

static int cmp_entry(const void *a, const void *b)
{
    const entry *x = *(entry *const *)a, *y = *(entry *const *)b;
    return cmp_key(x->ns, x->name, y->ns, y->name);
}

/* Slot holding the key, or the empty slot where it would go. */
static size_t slot_of(const table *t, const char *ns, const char *name, uint64_t h)
{
    size_t mask = t->n_slots - 1, i = (size_t)h & mask;
    while (t->slots[i]) {
        const entry *e = t->slots[i];
        if (e->hash == h && !strcmp(e->name, name) && !strcmp(e->ns, ns))
            return i;
        i = (i + 1) & mask;
    }
    return i;
}

static entry *tab_find(const table *t, const char *ns, const char *name)
{
    if (!t->n_slots)
        return NULL;
    return t->slots[slot_of(t, ns, name, key_hash(ns, name))];
}

static int tab_grow(table *t)
{
    size_t nn = t->n_slots ? t->n_slots * 2 : 64;
    entry **ns = calloc(nn, sizeof(*ns));
    if (!ns)
        return KILN_ENOMEM;
    for (size_t i = 0; i < t->n_slots; i++) {
        entry *e = t->slots[i];
        if (!e)
            continue;
        size_t j = (size_t)e->hash & (nn - 1);
        while (ns[j])
            j = (j + 1) & (nn - 1);
        ns[j] = e;
    }
    free(t->slots);
    t->slots = ns;
    t->n_slots = nn;
    return 0;
}

/* Removes slot i, shifting back the entries of its probe chain so lookups
 * need no tombstones. */
static void slot_remove(table *t, size_t i)
{
    size_t mask = t->n_slots - 1, j = i;
    t->slots[i] = NULL;
    for (;;) {
        j = (j + 1) & mask;
        entry *e = t->slots[j];
        if (!e)
            return;
        size_t home = (size_t)e->hash & mask;
        /* An entry whose home lies cyclically in (i, j] is still reachable
         * from it; any other must move into the hole at i. */
        if (i <= j ? (i < home && home <= j) : (i < home || home <= j))
            continue;
        t->slots[i] = e;
        t->slots[j] = NULL;
        i = j;
    }
}

static int push(entry ***arr, size_t *n, size_t *cap, entry *e)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        entry **na = realloc(*arr, nc * sizeof(*na));
        if (!na)
            return KILN_ENOMEM;
        *arr = na;
        *cap = nc;
    }
    (*arr)[(*n)++] = e;
    return 0;
}

static void entry_free(entry *e)
{
    free(e->ns);
    free(e->name);
    cJSON_Delete(e->obj);
    free(e);
}

/* Sorts pending entries into the sorted array and frees dead ones. */
static int tab_merge(table *t)
{
    if (!t->n_pending && !t->n_dead)
        return 0;
    size_t need = t->n_sorted + t->n_pending;
    entry **out = malloc((need ? need : 1) * sizeof(*out));
    if (!out)
        return KILN_ENOMEM;
    if (t->n_pending > 1)
        qsort(t->pending, t->n_pending, sizeof(entry *), cmp_entry);
    size_t i = 0, j = 0, k = 0;
    while (i < t->n_sorted || j < t->n_pending) {
        entry *e;
        if (j == t->n_pending || (i < t->n_sorted && cmp_entry(&t->sorted[i], &t->pending[j]) <= 0))
            e = t->sorted[i++];
        else
            e = t->pending[j++];
        if (e->dead)
            entry_free(e);
        else
            out[k++] = e;
    }
    free(t->sorted);
    t->sorted = out;
    t->n_sorted = k;
    t->n_pending = 0;
    t->n_dead = 0;
    return 0;
}

/* Puts obj (taken on success) into the table; *old receives the previous
 * object (caller owns) or NULL. */
static int tab_put(table *t, const char *ns, const char *name, cJSON *obj, cJSON **old)
{
    *old = NULL;
    if ((t->n_live + 1) * 10 > t->n_slots * 7 && tab_grow(t))
        return KILN_ENOMEM;
    uint64_t h = key_hash(ns, name);
    size_t i = slot_of(t, ns, name, h);
    if (t->slots[i]) {
        *old = t->slots[i]->obj;
        t->slots[i]->obj = obj;
        return 0;
    }
    entry *e = calloc(1, sizeof(*e));
    if (!e || !(e->ns = strdup(ns)) || !(e->name = strdup(name)) ||
        push(&t->pending, &t->n_pending, &t->cap_pending, e)) {
        if (e) {
            free(e->ns);
            free(e->name);
        }
        free(e);
        return KILN_ENOMEM;
    }
    e->hash = h;
    e->obj = obj;
    t->slots[i] = e;
    t->n_live++;
    return 0;
}

/* Removes the key; returns its object (caller owns) or NULL. */
static cJSON *tab_del(table *t, const char *ns, const char *name)
{
    if (!t->n_slots)
        return NULL;
    size_t i = slot_of(t, ns, name, key_hash(ns, name));
    entry *e = t->slots[i];
    if (!e)
        return NULL;
    slot_remove(t, i);
    t->n_live--;
    cJSON *o = e->obj;
    e->obj = NULL;
    e->dead = 1;
    t->n_dead++;
    /* Without lists nothing would free dead entries: merge once they are
     * as many as the live ones (amortized O(1) per delete). */
    if (t->n_dead > t->n_live + 64)
        tab_merge(t);
    return o;
}

static void tab_release(table *t)
{
    tab_merge(t);
    for (size_t i = 0; i < t->n_sorted; i++)
        entry_free(t->sorted[i]);
    /* A failed merge leaves entries in pending. */
    for (size_t i = 0; i < t->n_pending; i++)
        entry_free(t->pending[i]);
    free(t->sorted);
    free(t->pending);
    free(t->slots);
    free(t->rkey);
}

static table *find_tab(kl_store *st, const char *rkey, int create)
{
    if (st->last_tab < st->n_tabs && !strcmp(st->tabs[st->last_tab].rkey, rkey))
        return &st->tabs[st->last_tab];
    for (size_t i = 0; i < st->n_tabs; i++)
        if (strcmp(st->tabs[i].rkey, rkey) == 0) {
            st->last_tab = i;
            return &st->tabs[i];
        }
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
    st->last_tab = st->n_tabs++;
    return t;
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

/* Records an event; obj, prev and json (obj printed, may be NULL) are
 * taken. */
static void record(kl_store *st, int type, const char *rkey, const char *ns, cJSON *obj,
                   cJSON *prev, char *json)
{
    if (!st->cap) {
        cJSON_Delete(obj);
        cJSON_Delete(prev);
        free(json);
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
    e->json = json ? json : cJSON_PrintUnformatted(obj);
    e->json_len = e->json ? strlen(e->json) : 0;
    if (!e->rkey || !e->ns || !e->obj) {
        /* Out of memory: drop history instead of serving a partial event. */
        ev_release(e);
        st->floor = st->rv;
        return;
    }
    st->count++;
}

/* ---- WAL ---- */

static int durable_always(const kl_store *st)
{
    return st->fd < 0 || !st->sync;
}

static int pwrite_all(int fd, const char *buf, size_t len, uint64_t at)
{
    size_t done = 0;
    while (done < len) {
        ssize_t w = pwrite(fd, buf + done, len - done, (off_t)(at + done));
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        done += (size_t)w;
    }
    return 0;
}

/* Appends one record whose resourceVersion is rv. Without group commit
 * (deferred off) it is durable before this returns. */
static int wal_write(kl_store *st, const char *line, size_t len, uint64_t rv, kiln_error *err)
{
    if (st->fd < 0)
        return 0;
    int se = atomic_load(&st->sync_err);
    if (se)
        return kiln_fail(err, KILN_EIO, "an earlier fsync of %s failed: %s", st->path,
                         strerror(se));
    /* Inside the zeros the syncer never writes, so no lock is needed;
     * past them, the write must not race a piece of zeros. */
    pthread_mutex_lock(&st->mu);
    uint64_t at = st->off;
    int inside = at + len <= st->zeroed;
    if (inside)
        pthread_mutex_unlock(&st->mu);
    int rc = pwrite_all(st->fd, line, len, at);
    if (inside)
        pthread_mutex_lock(&st->mu);
    if (rc != 0) {
        pthread_mutex_unlock(&st->mu);
        return kiln_fail(err, KILN_EIO, "write %s: %s", st->path, strerror(errno));
    }
    st->off = at + len;
    if (st->sync && !st->deferred) {
        if (fdatasync(st->fd) != 0) {
            pthread_mutex_unlock(&st->mu);
            return kiln_fail(err, KILN_EIO, "fsync %s: %s", st->path, strerror(errno));
        }
        atomic_fetch_add(&st->syncs, 1);
    }
    st->app_seq++;
    st->app_rv = rv;
    if (durable_always(st) || !st->deferred) {
        atomic_store(&st->dur_seq, st->app_seq);
        atomic_store(&st->dur_rv, rv);
    } else if (st->thr_on && st->app_seq >= st->wake_at) {
        pthread_cond_signal(&st->cv);
    }
    pthread_mutex_unlock(&st->mu);
    return 0;
}

static char *put_line(const char *rkey, const char *ns, const char *name, const char *js,
                      size_t *len)
{
    size_t lr = strlen(rkey), ln = strlen(ns), lm = strlen(name), lj = strlen(js);
    char *line = malloc(lr + ln + lm + lj + 7);
    if (!line)
        return NULL;
    char *p = line;
    *p++ = 'P';
    *p++ = '\t';
    memcpy(p, rkey, lr);
    p += lr;
    *p++ = '\t';
    memcpy(p, ns, ln);
    p += ln;
    *p++ = '\t';
    memcpy(p, name, lm);
    p += lm;
    *p++ = '\t';
    memcpy(p, js, lj);
    p += lj;
    *p++ = '\n';
    *p = 0;
    *len = (size_t)(p - line);
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
        /* The zeros ahead of the records, or a torn tail from a crash
         * mid-write: the log ends here. */
        if (line[len - 1] != '\n' || memchr(line, 0, (size_t)len))
            break;
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
    /* Written through stdio: one write per 64 KiB, not one per object. */
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        free(tmp);
        return KILN_ENOMEM;
    }
    int rc = 0;
    if (fprintf(f, "R\t%llu\n", (unsigned long long)st->rv) < 0)
        rc = KILN_EIO;
    for (size_t i = 0; !rc && i < st->n_tabs; i++) {
        table *t = &st->tabs[i];
        if (tab_merge(t)) {
            rc = KILN_ENOMEM;
            break;
        }
        for (size_t j = 0; !rc && j < t->n_sorted; j++) {
            entry *e = t->sorted[j];
            char *js = cJSON_PrintUnformatted(e->obj);
            if (!js) {
                rc = KILN_ENOMEM;
                break;
            }
            if (fprintf(f, "P\t%s\t%s\t%s\t%s\n", t->rkey, e->ns, e->name, js) < 0)
                rc = KILN_EIO;
            free(js);
        }
    }
    if (fflush(f) != 0 && !rc)
        rc = KILN_EIO;
    if (rc == KILN_EIO)
        rc = kiln_fail(err, KILN_EIO, "write %s: %s", tmp, strerror(errno));
    else if (rc)
        rc = kiln_fail(err, rc, "out of memory writing %s", tmp);
    if (!rc && fsync(fd) != 0)
        rc = kiln_fail(err, KILN_EIO, "fsync %s: %s", tmp, strerror(errno));
    fclose(f);
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

/* ---- syncer thread ---- */

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Waits on cv until the monotonic deadline (mu held). */
static void wait_until(kl_store *st, int64_t deadline)
{
    struct timespec ts = {(time_t)(deadline / 1000000000), (long)(deadline % 1000000000)};
    pthread_cond_timedwait(&st->cv, &st->mu, &ts);
}

/* Writes the next piece of zeros ahead of the records when a chunk is due
 * (mu held); 1 if it wrote one. A failed write (a full disk) only means
 * records go on extending the file. */
static int fill_piece(kl_store *st)
{
    static const char zeros[FILL_PIECE];
    if (st->zeroed < st->off)
        st->zeroed = st->off; /* records ran past the zeros */
    if (st->zeroed - st->off < FILL_LOW && st->fill_to <= st->zeroed)
        st->fill_to = st->zeroed + FILL_CHUNK;
    if (st->zeroed >= st->fill_to)
        return 0;
    uint64_t at = st->zeroed;
    if (pwrite_all(st->fd, zeros, FILL_PIECE, at) != 0) {
        st->fill_to = at;
        return 0;
    }
    /* Start the writeback now, so no fdatasync finds a chunk of it dirty. */
    sync_file_range(st->fd, (off_t)at, FILL_PIECE, SYNC_FILE_RANGE_WRITE);
    st->zeroed = at + FILL_PIECE;
    return 1;
}

static void *syncer_main(void *arg)
{
    kl_store *st = arg;
    uint64_t target = 1;            /* records the last batch had */
    int64_t fsync_ns = GATHER_MAX_NS; /* how long the last fdatasync took */
    pthread_mutex_lock(&st->mu);
    while (!st->stop) {
        if (st->app_seq == atomic_load(&st->dur_seq) || atomic_load(&st->sync_err)) {
            if (!atomic_load(&st->sync_err) && fill_piece(st))
                continue;
            st->wake_at = atomic_load(&st->dur_seq) + 1;
            pthread_cond_wait(&st->cv, &st->mu);
            continue;
        }
        int64_t deadline = mono_ns() + (fsync_ns < GATHER_MAX_NS ? fsync_ns : GATHER_MAX_NS);
        st->wake_at = atomic_load(&st->dur_seq) + target;
        while (!st->stop && st->app_seq < st->wake_at && mono_ns() < deadline)
            wait_until(st, deadline);
        /* Everything appended before fdatasync starts is covered by it;
         * records appended meanwhile wait for the next round. */
        uint64_t seq = st->app_seq, rv = st->app_rv;
        uint64_t batch = seq - atomic_load(&st->dur_seq);
        pthread_mutex_unlock(&st->mu);
        int64_t t0 = mono_ns();
        int rc = fdatasync(st->fd);
        int e = errno;
        fsync_ns = mono_ns() - t0;
        atomic_fetch_add(&st->sync_ns, (uint64_t)fsync_ns);
        target = batch < 4096 ? batch : 4096;
        pthread_mutex_lock(&st->mu);
        if (rc != 0) {
            atomic_store(&st->sync_err, e ? e : EIO);
        } else {
            if (seq > atomic_load(&st->dur_seq)) { /* kl_store_flush may be ahead */
                atomic_store(&st->dur_rv, rv);
                atomic_store(&st->dur_seq, seq);
            }
            atomic_fetch_add(&st->syncs, 1);
        }
        pthread_mutex_unlock(&st->mu);
        if (st->wake)
            st->wake(st->wake_ctx);
        pthread_mutex_lock(&st->mu);
        fill_piece(st); /* one piece a round while records keep coming */
    }
    pthread_mutex_unlock(&st->mu);
    return NULL;
}

static void stop_thread(kl_store *st)
{
    if (!st->thr_on)
        return;
    pthread_mutex_lock(&st->mu);
    st->stop = 1;
    pthread_cond_signal(&st->cv);
    pthread_mutex_unlock(&st->mu);
    pthread_join(st->thr, NULL);
    st->thr_on = 0;
    st->stop = 0;
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
    if (pthread_mutex_init(&st->mu, NULL) != 0) {
        free(st);
        return KILN_ENOMEM;
    }
    /* The syncer's timed waits use the monotonic clock. */
    pthread_condattr_t ca;
    int crc = pthread_condattr_init(&ca);
    if (!crc) {
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        crc = pthread_cond_init(&st->cv, &ca);
        pthread_condattr_destroy(&ca);
    }
    if (crc != 0) {
        pthread_mutex_destroy(&st->mu);
        free(st);
        return KILN_ENOMEM;
    }
    if (hist_cap && !(st->ring = calloc(hist_cap, sizeof(kl_event)))) {
        kl_store_free(st);
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
        st->fd = open(st->path, O_WRONLY | O_CLOEXEC);
        struct stat sb;
        if (st->fd < 0 || fstat(st->fd, &sb) != 0) {
            rc = kiln_fail(err, KILN_EIO, "open %s: %s", st->path, strerror(errno));
            kl_store_free(st);
            return rc;
        }
        st->off = st->zeroed = st->fill_to = (uint64_t)sb.st_size;
    }
    st->floor = st->rv;
    atomic_store(&st->dur_rv, st->rv);
    *out = st;
    return 0;
}

void kl_store_free(kl_store *st)
{
    if (!st)
        return;
    stop_thread(st);
    for (size_t i = 0; i < st->n_tabs; i++)
        tab_release(&st->tabs[i]);
    free(st->tabs);
    for (size_t i = 0; i < st->count; i++)
        ev_release(&st->ring[(st->head + i) % st->cap]);
    free(st->ring);
    if (st->fd >= 0) {
        if (kl_store_dirty(st))
            fdatasync(st->fd);
        close(st->fd);
    }
    free(st->path);
    pthread_cond_destroy(&st->cv);
    pthread_mutex_destroy(&st->mu);
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
    entry *e = tab_find(t, ns ? ns : "", name);
    return e ? e->obj : NULL;
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
    /* One serialization serves the log line and every watcher. */
    char *js = cJSON_PrintUnformatted(obj);
    size_t len;
    char *line = js ? put_line(rkey, ns, name, js, &len) : NULL;
    if (!line) {
        free(js);
        cJSON_Delete(obj);
        return kiln_fail(err, KILN_ENOMEM, "out of memory");
    }
    int rc = wal_write(st, line, len, st->rv + 1, err);
    free(line);
    if (rc) {
        free(js);
        cJSON_Delete(obj);
        return rc;
    }
    st->rv++;
    st->writes++;
    cJSON *copy = st->cap ? cJSON_Duplicate(obj, 1) : NULL;
    cJSON *old = NULL;
    rc = tab_put(t, ns, name, obj, &old);
    if (rc) {
        /* The log has the write but memory does not: drop history so no
         * watcher misses it silently, and report the failure. */
        free(js);
        cJSON_Delete(obj);
        cJSON_Delete(copy);
        kl_store_expire_history(st);
        return kiln_fail(err, rc, "out of memory");
    }
    record(st, old ? KL_MODIFIED : KL_ADDED, rkey, ns, copy, old, js);
    return 0;
}

int kl_store_del(kl_store *st, const char *rkey, const char *ns, const char *name,
                 kiln_error *err)
{
    ns = ns ? ns : "";
    table *t = find_tab(st, rkey, 0);
    if (!t || !tab_find(t, ns, name))
        return kiln_fail(err, KILN_ENOTFOUND, "not found");
    char line[1024];
    int n = snprintf(line, sizeof(line), "D\t%s\t%s\t%s\t%llu\n", rkey, ns, name,
                     (unsigned long long)(st->rv + 1));
    if (n < 0 || (size_t)n >= sizeof(line))
        return kiln_fail(err, KILN_EINVAL, "key too long");
    int rc = wal_write(st, line, (size_t)n, st->rv + 1, err);
    if (rc)
        return rc;
    st->rv++;
    st->writes++;
    cJSON *o = tab_del(t, ns, name);
    set_rv(o, st->rv);
    record(st, KL_DELETED, rkey, ns, o, NULL, NULL);
    return 0;
}

int kl_store_list(kl_store *st, const char *rkey, const char *ns, const cJSON ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    table *t = find_tab(st, rkey, 0);
    if (!t || !t->n_live)
        return 0;
    if (tab_merge(t))
        return KILN_ENOMEM;
    size_t lo = 0, hi = t->n_sorted;
    if (ns) {
        /* The namespace's entries are one run of the sorted array. */
        size_t a = 0, b = t->n_sorted;
        while (a < b) {
            size_t mid = (a + b) / 2;
            if (strcmp(t->sorted[mid]->ns, ns) < 0)
                a = mid + 1;
            else
                b = mid;
        }
        lo = hi = a;
        while (hi < t->n_sorted && !strcmp(t->sorted[hi]->ns, ns))
            hi++;
        if (lo == hi)
            return 0;
    }
    const cJSON **arr = malloc((hi - lo) * sizeof(*arr));
    if (!arr)
        return KILN_ENOMEM;
    for (size_t i = lo; i < hi; i++)
        arr[i - lo] = t->sorted[i]->obj;
    *out = arr;
    *n = hi - lo;
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

const kl_event *kl_store_event_next(const kl_store *st, const kl_event *ev)
{
    size_t idx = (size_t)(ev - st->ring);
    size_t pos = (idx + st->cap - st->head) % st->cap;
    return pos + 1 < st->count ? &st->ring[(st->head + pos + 1) % st->cap] : NULL;
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

uint64_t kl_store_syncs(const kl_store *st)
{
    return atomic_load(&((kl_store *)st)->syncs);
}

uint64_t kl_store_sync_ns(const kl_store *st)
{
    return atomic_load(&((kl_store *)st)->sync_ns);
}

void kl_store_set_sync(kl_store *st, int on)
{
    st->sync = on;
}

void kl_store_set_deferred(kl_store *st, int on)
{
    st->deferred = on;
}

int kl_store_start_syncer(kl_store *st, kl_store_wake_fn wake, void *ctx, kiln_error *err)
{
    if (st->thr_on)
        return kiln_fail(err, KILN_EINVAL, "the syncer already runs");
    st->deferred = 1;
    if (durable_always(st))
        return 0; /* nothing to fsync: every write is "durable" at once */
    st->wake = wake;
    st->wake_ctx = ctx;
    int rc = pthread_create(&st->thr, NULL, syncer_main, st);
    if (rc != 0) {
        st->deferred = 0;
        return kiln_fail(err, KILN_EIO, "cannot start the WAL syncer: %s", strerror(rc));
    }
    pthread_setname_np(st->thr, "wal-syncer");
    st->thr_on = 1;
    return 0;
}

int kl_store_stop_syncer(kl_store *st, kiln_error *err)
{
    stop_thread(st);
    st->wake = NULL;
    int rc = kl_store_flush(st, err);
    st->deferred = 0;
    return rc;
}

uint64_t kl_store_appended(const kl_store *st)
{
    return st->app_seq;
}

uint64_t kl_store_durable(const kl_store *st)
{
    return atomic_load(&((kl_store *)st)->dur_seq);
}

uint64_t kl_store_durable_rv(const kl_store *st)
{
    if (durable_always(st) || (!st->deferred && !kl_store_dirty(st)))
        return st->rv;
    return atomic_load(&((kl_store *)st)->dur_rv);
}

int kl_store_sync_error(const kl_store *st)
{
    return atomic_load(&((kl_store *)st)->sync_err);
}

int kl_store_dirty(const kl_store *st)
{
    return st->app_seq != kl_store_durable(st);
}

int kl_store_flush(kl_store *st, kiln_error *err)
{
    if (!kl_store_dirty(st))
        return 0;
    pthread_mutex_lock(&st->mu);
    uint64_t seq = st->app_seq, rv = st->app_rv;
    pthread_mutex_unlock(&st->mu);
    if (fdatasync(st->fd) != 0) {
        int e = errno;
        atomic_store(&st->sync_err, e);
        return kiln_fail(err, KILN_EIO, "fsync %s: %s", st->path, strerror(e));
    }
    atomic_fetch_add(&st->syncs, 1);
    pthread_mutex_lock(&st->mu);
    if (seq > atomic_load(&st->dur_seq)) {
        atomic_store(&st->dur_rv, rv);
        atomic_store(&st->dur_seq, seq);
    }
    pthread_mutex_unlock(&st->mu);
    return 0;
}
