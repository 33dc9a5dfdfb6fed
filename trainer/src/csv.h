/* csv: an RFC 4180 reader over an in-memory buffer. Fields may be quoted
 * ("" is a quote inside a quoted field; separators and line breaks inside
 * quotes are data), lines end in LF, CRLF or CR, the separator (',' or ';')
 * is detected from the first line, a UTF-8 byte-order mark is skipped,
 * blank lines are skipped, and every record must have as many fields as
 * the first. Unquoted fields are trimmed of spaces and tabs.
 *
 * It also holds the cell rules every text-reading part of Kiln shares:
 * what counts as missing (empty, NA, NaN in any case) and as a number.
 * It does not decide column types or labels: dataset.c does.
 *
 * Ownership: csv_parse returns a table freed by csv_free; cells are
 * borrowed from it. */
#ifndef KILN_CSV_H
#define KILN_CSV_H

#include <stddef.h>
#include <stdint.h>

#include "kiln_err.h"

typedef struct csv_table {
    int n_rows;     /* records, the header (if any) included */
    int n_cols;     /* fields per record */
    char sep;       /* ',' or ';' */
    char *text;     /* the cells, unescaped, each NUL-terminated; owned */
    uint32_t *cell; /* (n_rows, n_cols) offsets into text; owned */
    int *line;      /* (n_rows) 1-based line number where each record starts; owned */
} csv_table;

/* Parses buf[len]. name is used in messages ("data.csv: row 12 has 3
 * fields, expected 5"); rows are counted from 1, the header included. */
int csv_parse(const char *buf, size_t len, const char *name, csv_table **out, kiln_error *err);
void csv_free(csv_table *t);

/* Cell (r, c); borrowed. */
static inline const char *csv_cell(const csv_table *t, int r, int c)
{
    return t->text + t->cell[(size_t)r * (size_t)t->n_cols + (size_t)c];
}

/* 1 when the first record looks like a header: all its cells are
 * non-empty text, and either some column below it is numeric, or none of
 * its cells occurs again in its column. */
int csv_detect_header(const csv_table *t);

/* 1 when the cell is missing: empty or blank, "NA" or "NaN" (any case). */
int csv_cell_missing(const char *s);

/* Parses a finite decimal number (surrounding blanks allowed; no hex, no
 * inf/nan). Returns 1 and sets *v, or 0. */
int csv_cell_number(const char *s, double *v);

#endif
