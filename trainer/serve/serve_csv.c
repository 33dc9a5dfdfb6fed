/* serve_csv: CSV request bodies split into cells (see serve_csv.h). */
#include "serve_csv.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* HTTP status and message of a refused body */
static int bad(int *status, int code, kiln_error *err, const char *msg)
{
    *status = code;
    return kiln_fail(err, KILN_EINVAL, "%s", msg);
}

void serve_csv_init(serve_csv *c)
{
    memset(c, 0, sizeof *c);
}

void serve_csv_release(serve_csv *c)
{
    free(c->text);
    free(c->cells);
    free(c->row_off);
    memset(c, 0, sizeof *c);
}

int serve_is_number(const char *s)
{
    const char *p = s;
    if (*p == '+' || *p == '-')
        p++;
    if (!((*p >= '0' && *p <= '9') || *p == '.'))
        return 0;
    char *end;
    strtod(s, &end);
    return end != s && *end == '\0';
}

static int missing_mark(const char *s)
{
    return !*s || !strcmp(s, "NA") || !strcmp(s, "NaN") || !strcmp(s, "nan") ||
           !strcmp(s, "null") || !strcmp(s, "?");
}

static int csv_push_cell(serve_csv *c, size_t ncells, const char *cell)
{
    if (ncells >= c->cells_cap) {
        size_t ncap = c->cells_cap ? c->cells_cap * 2 : 256;
        const char **x = realloc(c->cells, ncap * sizeof *x);
        if (!x)
            return KILN_ENOMEM;
        c->cells = x;
        c->cells_cap = ncap;
    }
    c->cells[ncells] = cell;
    return 0;
}

static int csv_push_row(serve_csv *c, int row, int off)
{
    if ((size_t)row + 1 >= c->rows_cap) {
        size_t ncap = c->rows_cap ? c->rows_cap * 2 : 64;
        int *x = realloc(c->row_off, ncap * sizeof *x);
        if (!x)
            return KILN_ENOMEM;
        c->row_off = x;
        c->rows_cap = ncap;
    }
    c->row_off[row] = off;
    return 0;
}

int serve_parse_csv(serve_csv *c, const char *body, size_t len, kiln_error *err)
{
    c->nrows = 0;
    c->header = 0;
    c->status = 400;
    if (len >= (size_t)INT_MAX)
        return bad(&c->status, 413, err, "the CSV body is too large");
    if (len + 1 > c->text_cap) {
        char *t = realloc(c->text, len + 1);
        if (!t)
            return bad(&c->status, 413, err, "the CSV body is too large");
        c->text = t;
        c->text_cap = len + 1;
    }
    /* Cells are unquoted in place: the write cursor never passes the read
     * cursor, so one copy of the body is enough. */
    memcpy(c->text, body, len);
    c->text[len] = '\0';
    char *r = c->text, *end = c->text + len, *w = c->text;
    size_t ncells = 0;
    int row = 0;
    if (csv_push_row(c, 0, 0))
        return bad(&c->status, 413, err, "the CSV body is too large");
    while (r < end) {
        /* one line */
        size_t first = ncells;
        int blank = 1;
        for (;;) {
            char *cell = w;
            if (r < end && *r == '"') {
                r++;
                for (;;) {
                    if (r >= end)
                        return bad(&c->status, 400, err, "CSV: unterminated quoted cell");
                    if (*r == '"') {
                        if (r + 1 < end && r[1] == '"') {
                            *w++ = '"';
                            r += 2;
                            continue;
                        }
                        r++;
                        break;
                    }
                    *w++ = *r++;
                }
                if (r < end && *r != ',' && *r != '\n' && *r != '\r')
                    return bad(&c->status, 400, err, "CSV: text after a closing quote");
                blank = 0;
            } else {
                while (r < end && *r != ',' && *r != '\n' && *r != '\r') {
                    if (*r == '\0')
                        return bad(&c->status, 400, err, "CSV: NUL byte in the body");
                    *w++ = *r++;
                }
            }
            /* trim blanks around unquoted cells */
            while (w > cell && (w[-1] == ' ' || w[-1] == '\t'))
                w--;
            while (cell < w && (*cell == ' ' || *cell == '\t'))
                cell++;
            if (w > cell)
                blank = 0;
            /* the terminator may land on the separator: read it first */
            char sep = r < end ? *r : '\n';
            *w++ = '\0';
            if (csv_push_cell(c, ncells++, cell))
                return bad(&c->status, 413, err, "the CSV body is too large");
            if (r < end)
                r++;
            if (sep == ',') {
                blank = 0;
                continue;
            }
            if (sep == '\r' && r < end && *r == '\n')
                r++;
            break;
        }
        if (blank) {
            ncells = first; /* skip an empty line */
            continue;
        }
        if (row == 0 && !c->header) {
            int header = c->nnames > 0 ? 0 : 1;
            for (size_t i = first; i < ncells; i++) {
                const char *s = c->cells[i];
                if (c->nnames > 0) {
                    for (int k = 0; k < c->nnames && !header; k++)
                        header = c->names[k] && !strcmp(s, c->names[k]);
                    continue;
                }
                if (!*s)
                    continue;
                if (serve_is_number(s) || missing_mark(s)) {
                    header = 0;
                    break;
                }
            }
            if (header) {
                c->header = 1;
                ncells = first;
                continue;
            }
        }
        if (ncells > (size_t)INT_MAX || csv_push_row(c, ++row, (int)ncells))
            return bad(&c->status, 413, err, "the CSV body is too large");
    }
    c->nrows = row;
    if (!row)
        return bad(&c->status, 400, err, "CSV: the body holds no data row");
    return 0;
}
