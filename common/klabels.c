/* klabels: label and field selector parsing and matching (see klabels.h). */
#include "klabels.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* ---- types ---- */

enum op { OP_EQ, OP_NE, OP_IN, OP_NOTIN, OP_EXISTS, OP_NOTEXISTS, OP_GT, OP_LT };

typedef struct req {
    char *key;
    int op;
    char **vals;
    size_t n_vals;
} req;

struct klabels_sel {
    req *reqs;
    size_t n;
};

/* ---- private helpers ---- */

static void skip_ws(const char **p)
{
    while (**p == ' ' || **p == '\t')
        (*p)++;
}

/* A key or value token: anything up to a delimiter. */
static int is_tok_char(char c, int mode)
{
    if (c == 0 || c == ',' || c == '=' || c == '!' || c == '(' || c == ')' || c == ' ' ||
        c == '\t')
        return 0;
    if (mode == KLABELS_LABEL && (c == '<' || c == '>'))
        return 0;
    return 1;
}

static char *take_tok(const char **p, int mode)
{
    const char *s = *p;
    while (is_tok_char(**p, mode))
        (*p)++;
    size_t n = (size_t)(*p - s);
    char *t = malloc(n + 1);
    if (!t)
        return NULL;
    memcpy(t, s, n);
    t[n] = 0;
    return t;
}

static int push_val(req *r, char *v)
{
    char **nv = realloc(r->vals, (r->n_vals + 1) * sizeof(*nv));
    if (!nv) {
        free(v);
        return KILN_ENOMEM;
    }
    r->vals = nv;
    r->vals[r->n_vals++] = v;
    return 0;
}

static void req_release(req *r)
{
    free(r->key);
    for (size_t i = 0; i < r->n_vals; i++)
        free(r->vals[i]);
    free(r->vals);
}

static int word_at(const char *p, const char *w)
{
    size_t n = strlen(w);
    if (strncmp(p, w, n) != 0)
        return 0;
    char c = p[n];
    return c == ' ' || c == '\t' || c == '(';
}

/* Parses one requirement at *p into r. */
static int parse_req(const char **p, int mode, req *r, kiln_error *err)
{
    memset(r, 0, sizeof(*r));
    skip_ws(p);
    int neg = 0;
    if (**p == '!' && mode == KLABELS_LABEL) {
        neg = 1;
        (*p)++;
        skip_ws(p);
    }
    r->key = take_tok(p, mode);
    if (!r->key)
        return KILN_ENOMEM;
    if (!r->key[0])
        return kiln_fail(err, KILN_EINVAL, "found '%c', expected: identifier", **p ? **p : ' ');
    skip_ws(p);
    if (neg) {
        r->op = OP_NOTEXISTS;
        return 0;
    }
    if (**p == 0 || **p == ',') {
        if (mode == KLABELS_FIELD)
            return kiln_fail(err, KILN_EINVAL, "invalid selector: '%s'; can't understand '%s'",
                             r->key, r->key);
        r->op = OP_EXISTS;
        return 0;
    }
    if (**p == '=') {
        (*p)++;
        if (**p == '=')
            (*p)++;
        r->op = OP_EQ;
    } else if (**p == '!' && (*p)[1] == '=') {
        *p += 2;
        r->op = OP_NE;
    } else if (mode == KLABELS_LABEL && (**p == '>' || **p == '<')) {
        r->op = **p == '>' ? OP_GT : OP_LT;
        (*p)++;
    } else if (mode == KLABELS_LABEL && (word_at(*p, "in") || word_at(*p, "notin"))) {
        r->op = word_at(*p, "in") ? OP_IN : OP_NOTIN;
        *p += r->op == OP_IN ? 2 : 5;
        skip_ws(p);
        if (**p != '(')
            return kiln_fail(err, KILN_EINVAL, "found '%c', expected: '('", **p ? **p : ' ');
        (*p)++;
        for (;;) {
            skip_ws(p);
            char *v = take_tok(p, mode);
            if (!v)
                return KILN_ENOMEM;
            int rc = push_val(r, v);
            if (rc)
                return rc;
            skip_ws(p);
            if (**p == ',') {
                (*p)++;
                continue;
            }
            if (**p == ')') {
                (*p)++;
                return 0;
            }
            return kiln_fail(err, KILN_EINVAL, "found '%c', expected: ',' or ')'",
                             **p ? **p : ' ');
        }
    } else {
        return kiln_fail(err, KILN_EINVAL, "found '%c', expected: operator after '%s'", **p,
                         r->key);
    }
    skip_ws(p);
    char *v = take_tok(p, mode);
    if (!v)
        return KILN_ENOMEM;
    if ((r->op == OP_GT || r->op == OP_LT)) {
        char *end = NULL;
        (void)strtoll(v, &end, 10);
        if (!v[0] || *end) {
            free(v);
            return kiln_fail(err, KILN_EINVAL, "for 'gt', 'lt' operators, exactly one "
                                               "integer value is required");
        }
    }
    return push_val(r, v);
}

/* ---- API ---- */

int klabels_parse(const char *s, int mode, klabels_sel **out, kiln_error *err)
{
    *out = NULL;
    klabels_sel *sel = calloc(1, sizeof(*sel));
    if (!sel)
        return KILN_ENOMEM;
    const char *p = s ? s : "";
    skip_ws(&p);
    while (*p) {
        req r;
        int rc = parse_req(&p, mode, &r, err);
        if (rc == 0) {
            req *nr = realloc(sel->reqs, (sel->n + 1) * sizeof(*nr));
            if (!nr)
                rc = KILN_ENOMEM;
            else {
                sel->reqs = nr;
                sel->reqs[sel->n++] = r;
            }
        }
        if (rc) {
            req_release(&r);
            klabels_free(sel);
            return rc;
        }
        skip_ws(&p);
        if (*p == ',') {
            p++;
            skip_ws(&p);
            if (!*p) {
                klabels_free(sel);
                return kiln_fail(err, KILN_EINVAL, "found '', expected: identifier after ','");
            }
        } else if (*p) {
            char c = *p;
            klabels_free(sel);
            return kiln_fail(err, KILN_EINVAL, "found '%c', expected: ',' or 'end of string'", c);
        }
    }
    *out = sel;
    return 0;
}

void klabels_free(klabels_sel *sel)
{
    if (!sel)
        return;
    for (size_t i = 0; i < sel->n; i++)
        req_release(&sel->reqs[i]);
    free(sel->reqs);
    free(sel);
}

size_t klabels_count(const klabels_sel *sel)
{
    return sel ? sel->n : 0;
}

const char *klabels_key(const klabels_sel *sel, size_t i)
{
    return sel && i < sel->n ? sel->reqs[i].key : NULL;
}

static int in_vals(const req *r, const char *v)
{
    for (size_t i = 0; i < r->n_vals; i++)
        if (strcmp(r->vals[i], v) == 0)
            return 1;
    return 0;
}

int klabels_match(const klabels_sel *sel, klabels_get_fn get, void *ctx)
{
    if (!sel)
        return 1;
    for (size_t i = 0; i < sel->n; i++) {
        const req *r = &sel->reqs[i];
        const char *v = get(ctx, r->key);
        int ok = 0;
        switch (r->op) {
        case OP_EQ: ok = v && in_vals(r, v); break;
        /* Field selectors treat a missing field as the empty string. */
        case OP_NE: ok = !v || !in_vals(r, v); break;
        case OP_IN: ok = v && in_vals(r, v); break;
        case OP_NOTIN: ok = !v || !in_vals(r, v); break;
        case OP_EXISTS: ok = v != NULL; break;
        case OP_NOTEXISTS: ok = v == NULL; break;
        case OP_GT:
        case OP_LT: {
            if (!v)
                break;
            char *end = NULL;
            long long a = strtoll(v, &end, 10);
            if (!v[0] || *end)
                break;
            long long b = strtoll(r->vals[0], NULL, 10);
            ok = r->op == OP_GT ? a > b : a < b;
            break;
        }
        }
        if (!ok)
            return 0;
    }
    return 1;
}

static const char *labels_get(void *ctx, const char *key)
{
    const cJSON *labels = ctx;
    const cJSON *v = labels ? cJSON_GetObjectItemCaseSensitive(labels, key) : NULL;
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int klabels_match_labels(const klabels_sel *sel, const cJSON *labels)
{
    return klabels_match(sel, labels_get, (void *)labels);
}

const char *klabels_exact(const klabels_sel *sel, const char *key)
{
    if (!sel || sel->n != 1)
        return NULL;
    const req *r = &sel->reqs[0];
    if (r->op != OP_EQ || r->n_vals != 1 || strcmp(r->key, key) != 0)
        return NULL;
    return r->vals[0];
}
