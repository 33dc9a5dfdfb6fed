/* kube_map: string-keyed chained hash map (FNV-1a, grows at load 1). */
#include "kube_map.h"

#include <stdlib.h>
#include <string.h>

#include "kiln_err.h"

typedef struct entry {
    struct entry *next;
    void *val;
    unsigned long hash;
    char key[]; /* NUL-terminated copy */
} entry;

struct kube_map {
    entry **buckets;
    size_t nb, len;
    void (*free_val)(void *);
};

static unsigned long fnv(const char *s)
{
    unsigned long h = 1469598103934665603UL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211UL;
    return h;
}

int kube_map_new(void (*free_val)(void *), kube_map **out)
{
    kube_map *m = calloc(1, sizeof *m);
    if (!m)
        return KILN_ENOMEM;
    m->nb = 16;
    m->buckets = calloc(m->nb, sizeof *m->buckets);
    if (!m->buckets) {
        free(m);
        return KILN_ENOMEM;
    }
    m->free_val = free_val;
    *out = m;
    return 0;
}

void kube_map_free(kube_map *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->nb; i++) {
        for (entry *e = m->buckets[i], *n; e; e = n) {
            n = e->next;
            if (m->free_val)
                m->free_val(e->val);
            free(e);
        }
    }
    free(m->buckets);
    free(m);
}

static entry **find(const kube_map *m, const char *key, unsigned long h)
{
    entry **pp = &m->buckets[h % m->nb];
    while (*pp && ((*pp)->hash != h || strcmp((*pp)->key, key) != 0))
        pp = &(*pp)->next;
    return pp;
}

/* Doubling is best effort: a failed grow keeps the map valid, just slower. */
static void grow(kube_map *m)
{
    size_t nb = m->nb * 2;
    entry **nbk = calloc(nb, sizeof *nbk);
    if (!nbk)
        return;
    for (size_t i = 0; i < m->nb; i++) {
        for (entry *e = m->buckets[i], *n; e; e = n) {
            n = e->next;
            e->next = nbk[e->hash % nb];
            nbk[e->hash % nb] = e;
        }
    }
    free(m->buckets);
    m->buckets = nbk;
    m->nb = nb;
}

int kube_map_put(kube_map *m, const char *key, void *val)
{
    unsigned long h = fnv(key);
    entry **pp = find(m, key, h);
    if (*pp) {
        if (m->free_val && (*pp)->val != val)
            m->free_val((*pp)->val);
        (*pp)->val = val;
        return 0;
    }
    size_t kl = strlen(key);
    entry *e = malloc(sizeof *e + kl + 1);
    if (!e)
        return KILN_ENOMEM;
    memcpy(e->key, key, kl + 1);
    e->hash = h;
    e->val = val;
    e->next = NULL;
    *pp = e;
    m->len++;
    if (m->len > m->nb)
        grow(m);
    return 0;
}

void *kube_map_get(const kube_map *m, const char *key)
{
    entry **pp = find(m, key, fnv(key));
    return *pp ? (*pp)->val : NULL;
}

void *kube_map_take(kube_map *m, const char *key)
{
    entry **pp = find(m, key, fnv(key));
    entry *e = *pp;
    if (!e)
        return NULL;
    *pp = e->next;
    void *v = e->val;
    free(e);
    m->len--;
    return v;
}

int kube_map_del(kube_map *m, const char *key)
{
    entry **pp = find(m, key, fnv(key));
    entry *e = *pp;
    if (!e)
        return 0;
    *pp = e->next;
    if (m->free_val)
        m->free_val(e->val);
    free(e);
    m->len--;
    return 1;
}

size_t kube_map_len(const kube_map *m)
{
    return m->len;
}

int kube_map_foreach(const kube_map *m, int (*fn)(const char *key, void *val, void *ud), void *ud)
{
    for (size_t i = 0; i < m->nb; i++) {
        for (entry *e = m->buckets[i]; e; e = e->next) {
            int rc = fn(e->key, e->val, ud);
            if (rc)
                return rc;
        }
    }
    return 0;
}
