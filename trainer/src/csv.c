/* csv: RFC 4180 reader and the shared cell rules (see csv.h). */
#include "csv.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Records and columns beyond these are not data Kiln can train on; the
 * limits keep offsets in 32 bits and sizes far from overflow. */
#define CSV_MAX_BYTES ((size_t)UINT32_MAX / 2)
#define CSV_MAX_COLS  100000

/* ------------------------------------------------------------ cell rules */

static int is_blank(char c)
{
    return c == ' ' || c == '\t';
}

int csv_cell_missing(const char *s)
{
    while (is_blank(*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && is_blank(s[n - 1]))
        n--;
    return n == 0 || (n == 2 && !strncasecmp(s, "na", 2)) || (n == 3 && !strncasecmp(s, "nan", 3));
}

int csv_cell_number(const char *s, double *v)
{
    while (is_blank(*s))
        s++;
    /* Only plain decimal notation: strtod alone would also take hex,
     * "inf" and "nan". */
    const char *p = s;
    int digits = 0;
    if (*p == '+' || *p == '-')
        p++;
    while (*p >= '0' && *p <= '9') {
        p++;
        digits++;
    }
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') {
            p++;
            digits++;
        }
    }
    if (!digits)
        return 0;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!(*p >= '0' && *p <= '9'))
            return 0;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    const char *end = p;
    while (is_blank(*p))
        p++;
    if (*p)
        return 0;
    char *e;
    double d = strtod(s, &e);
    if (e != end || !isfinite(d))
        return 0;
    *v = d;
    return 1;
}

/* ------------------------------------------------------------ parser */

void csv_free(csv_table *t)
{
    if (!t)
        return;
    free(t->text);
    free(t->cell);
    free(t->line);
    free(t);
}

/* The separator of the first record: the more frequent of ',' and ';'
 * outside quotes (',' on a tie, e.g. a single column). */
static char detect_sep(const char *b, size_t len)
{
    size_t commas = 0, semis = 0;
    int q = 0;
    for (size_t i = 0; i < len; i++) {
        char c = b[i];
        if (c == '"')
            q = !q;
        else if (!q && (c == '\n' || c == '\r'))
            break;
        else if (!q && c == ',')
            commas++;
        else if (!q && c == ';')
            semis++;
    }
    return semis > commas ? ';' : ',';
}

int csv_parse(const char *buf, size_t len, const char *name, csv_table **out, kiln_error *err)
{
    *out = NULL;
    if (len >= 3 && (unsigned char)buf[0] == 0xef && (unsigned char)buf[1] == 0xbb &&
        (unsigned char)buf[2] == 0xbf) {
        buf += 3;
        len -= 3;
    }
    if (len > CSV_MAX_BYTES)
        return kiln_fail(err, KILN_EINVAL, "%s: %zu bytes is more than the CSV limit of %zu", name,
                         len, CSV_MAX_BYTES);
    char sep = detect_sep(buf, len);
    /* Upper bound on cells: one per separator or line break, plus one. */
    size_t max_cells = 1, max_rows = 1;
    for (size_t i = 0; i < len; i++) {
        if (buf[i] == sep)
            max_cells++;
        else if (buf[i] == '\n' || buf[i] == '\r') {
            max_cells++;
            max_rows++;
        }
    }
    csv_table *t = calloc(1, sizeof *t);
    if (!t)
        return kiln_fail(err, KILN_ENOMEM, "%s: out of memory", name);
    t->sep = sep;
    t->text = malloc(len + max_cells + 1);
    t->cell = malloc(max_cells * sizeof *t->cell);
    t->line = malloc(max_rows * sizeof *t->line);
    if (!t->text || !t->cell || !t->line) {
        csv_free(t);
        return kiln_fail(err, KILN_ENOMEM, "%s: out of memory for %zu bytes of CSV", name, len);
    }
    size_t i = 0, tlen = 0, ncell = 0;
    int line = 1, rc = 0;
    while (i < len) {
        /* Blank lines separate nothing: skip them. */
        if (buf[i] == '\n' || buf[i] == '\r') {
            if (buf[i] == '\r' && i + 1 < len && buf[i + 1] == '\n')
                i++;
            i++;
            line++;
            continue;
        }
        int rec_line = line;
        size_t rec_start = ncell;
        int row = t->n_rows + 1;
        for (;;) {
            /* One field starting at buf[i]. */
            if (ncell >= max_cells) {
                rc = kiln_fail(err, KILN_EINTERNAL, "%s: CSV cell bound exceeded", name);
                goto done;
            }
            t->cell[ncell++] = (uint32_t)tlen;
            size_t k = i;
            while (k < len && is_blank(buf[k]))
                k++;
            if (k < len && buf[k] == '"') {
                size_t open = k;
                k++;
                for (;;) {
                    if (k >= len) {
                        rc = kiln_fail(err, KILN_EINVAL,
                                       "%s: row %d (line %d): the quoted field opened at byte %zu "
                                       "is never closed",
                                       name, row, rec_line, open);
                        goto done;
                    }
                    char c = buf[k];
                    if (c == '"') {
                        if (k + 1 < len && buf[k + 1] == '"') {
                            t->text[tlen++] = '"';
                            k += 2;
                            continue;
                        }
                        k++;
                        break;
                    }
                    if (c == '\0') {
                        rc = kiln_fail(err, KILN_EINVAL,
                                       "%s: NUL byte at byte offset %zu (is this a binary file?)",
                                       name, k);
                        goto done;
                    }
                    if (c == '\n' || (c == '\r' && !(k + 1 < len && buf[k + 1] == '\n')))
                        line++;
                    t->text[tlen++] = c;
                    k++;
                }
                while (k < len && is_blank(buf[k]))
                    k++;
                if (k < len && buf[k] != sep && buf[k] != '\n' && buf[k] != '\r') {
                    rc = kiln_fail(err, KILN_EINVAL,
                                   "%s: row %d (line %d): unexpected '%c' after the closing quote "
                                   "at byte offset %zu (expected '%c' or end of line)",
                                   name, row, line, buf[k] >= 32 && buf[k] < 127 ? buf[k] : '?', k,
                                   sep);
                    goto done;
                }
            } else {
                size_t start = k;
                while (k < len && buf[k] != sep && buf[k] != '\n' && buf[k] != '\r') {
                    if (buf[k] == '\0') {
                        rc = kiln_fail(err, KILN_EINVAL,
                                       "%s: NUL byte at byte offset %zu (is this a binary file?)",
                                       name, k);
                        goto done;
                    }
                    k++;
                }
                size_t end = k;
                while (end > start && is_blank(buf[end - 1]))
                    end--;
                memcpy(t->text + tlen, buf + start, end - start);
                tlen += end - start;
            }
            t->text[tlen++] = '\0';
            i = k;
            if (i < len && buf[i] == sep) {
                i++;
                continue;
            }
            /* End of record: a line break or the end of the buffer. */
            if (i < len) {
                if (buf[i] == '\r' && i + 1 < len && buf[i + 1] == '\n')
                    i++;
                i++;
                line++;
            }
            break;
        }
        size_t nf = ncell - rec_start;
        if (t->n_rows == 0) {
            if (nf > CSV_MAX_COLS) {
                rc = kiln_fail(err, KILN_EINVAL, "%s: %zu columns is more than the limit of %d",
                               name, nf, CSV_MAX_COLS);
                goto done;
            }
            t->n_cols = (int)nf;
        } else if (nf != (size_t)t->n_cols) {
            if (row == rec_line)
                rc = kiln_fail(err, KILN_EINVAL, "%s: row %d has %zu fields, expected %d", name,
                               row, nf, t->n_cols);
            else
                rc = kiln_fail(err, KILN_EINVAL, "%s: row %d (line %d) has %zu fields, expected %d",
                               name, row, rec_line, nf, t->n_cols);
            goto done;
        }
        t->line[t->n_rows++] = rec_line;
    }
    if (t->n_rows == 0)
        rc = kiln_fail(err, KILN_EINVAL, "%s: the file is empty (expected a CSV header or rows)",
                       name);
done:
    if (rc) {
        csv_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

/* ------------------------------------------------------------ header */

int csv_detect_header(const csv_table *t)
{
    if (t->n_rows < 1)
        return 0;
    double v;
    for (int c = 0; c < t->n_cols; c++) {
        const char *h = csv_cell(t, 0, c);
        if (csv_cell_missing(h) || csv_cell_number(h, &v))
            return 0;
    }
    if (t->n_rows == 1)
        return 1;
    /* A numeric column under a text first cell is the usual case. */
    for (int c = 0; c < t->n_cols; c++) {
        int numeric = 0, text = 0;
        for (int r = 1; r < t->n_rows && !text; r++) {
            const char *s = csv_cell(t, r, c);
            if (csv_cell_missing(s))
                continue;
            if (csv_cell_number(s, &v))
                numeric = 1;
            else
                text = 1;
        }
        if (numeric && !text)
            return 1;
    }
    /* All text: a header's names do not recur as values in their column. */
    for (int c = 0; c < t->n_cols; c++) {
        const char *h = csv_cell(t, 0, c);
        for (int r = 1; r < t->n_rows; r++)
            if (!strcmp(h, csv_cell(t, r, c)))
                return 0;
    }
    return 1;
}
