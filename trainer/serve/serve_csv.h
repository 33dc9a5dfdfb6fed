/* serve_csv: splits a CSV request body into rows of cells for the model
 * server (RFC 4180 quoting, CRLF or LF, blank lines skipped, an optional
 * header row recognised and dropped). Cells are text as written: turning
 * them into features is the model's job (model_predict_cells).
 *
 * Ownership: serve_csv is caller storage (serve_csv_init/release), reused
 * across requests; cells point into its own copy of the body. */
#ifndef KILN_SERVE_CSV_H
#define KILN_SERVE_CSV_H

#include <stddef.h>

#include "kiln_err.h"

typedef struct serve_csv {
    char *text; /* copy of the body, cells NUL-terminated in place */
    size_t text_cap;
    const char **cells; /* every cell of every kept row, row after row */
    size_t cells_cap;
    int *row_off; /* (nrows + 1) offsets into cells */
    size_t rows_cap;
    int nrows;  /* data rows (header excluded) */
    int header; /* 1 when the first row was a header and skipped */
    int status; /* HTTP status of the last failure (400 or 413) */
    /* Optional hint set by the caller: the training columns' names. When
     * given, the first row is a header iff one of its cells is one of
     * them (so a data row of text cells is never mistaken for a header). */
    const char *const *names;
    int nnames;
} serve_csv;

void serve_csv_init(serve_csv *c);
void serve_csv_release(serve_csv *c);

/* Splits a CSV body into rows of cells; blank lines are skipped. The first
 * row is taken as a header (and skipped) when it names a training column
 * (see serve_csv.names) or, without names, when every non-empty cell in it
 * is text that reads neither as a number nor as a missing-value mark. */
int serve_parse_csv(serve_csv *c, const char *body, size_t len, kiln_error *err);

/* 1 when s is a complete JSON/C decimal number (leading/trailing blanks
 * not allowed). */
int serve_is_number(const char *s);

#endif
