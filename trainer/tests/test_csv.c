/* Unit tests for csv: RFC 4180 parsing, separators, line endings, header
 * detection, cell rules, and the messages for broken files. */
#include <stdlib.h>
#include <string.h>

#include "csv.h"
#include "ktest.h"

static csv_table *parse(const char *text, kiln_error *e)
{
    csv_table *t = NULL;
    kiln_error_clear(e);
    csv_parse(text, strlen(text), "data.csv", &t, e);
    return t;
}

static void test_basic_quotes(void)
{
    kiln_error e = {0};
    const char *in = "a,b,c\n1,\"x, y\",\"say \"\"hi\"\"\"\n2,\"two\nlines\",\n";
    csv_table *t = parse(in, &e);
    KT_CHECK(t != NULL);
    if (!t)
        return;
    KT_EQ_INT(t->n_rows, 3);
    KT_EQ_INT(t->n_cols, 3);
    KT_EQ_INT(t->sep, ',');
    KT_CHECK(!strcmp(csv_cell(t, 0, 2), "c"));
    KT_CHECK(!strcmp(csv_cell(t, 1, 1), "x, y"));
    KT_CHECK(!strcmp(csv_cell(t, 1, 2), "say \"hi\""));
    KT_CHECK(!strcmp(csv_cell(t, 2, 1), "two\nlines"));
    KT_CHECK(!strcmp(csv_cell(t, 2, 2), ""));
    KT_EQ_INT(t->line[2], 3);
    csv_free(t);
}

static void test_semicolon_crlf_bom(void)
{
    kiln_error e = {0};
    const char *in = "\xef\xbb\xbfname;value\r\n\r\nfoo; 1,5 \r\n\"b;r\";2\r\n";
    csv_table *t = parse(in, &e);
    KT_CHECK(t != NULL);
    if (!t)
        return;
    KT_EQ_INT(t->sep, ';');
    KT_EQ_INT(t->n_rows, 3);
    KT_CHECK(!strcmp(csv_cell(t, 0, 0), "name"));
    KT_CHECK(!strcmp(csv_cell(t, 1, 1), "1,5"));
    KT_CHECK(!strcmp(csv_cell(t, 2, 0), "b;r"));
    KT_CHECK(!strcmp(csv_cell(t, 2, 1), "2"));
    /* The blank line is skipped but still counted as a line. */
    KT_EQ_INT(t->line[1], 3);
    csv_free(t);
}

static void test_no_trailing_newline_and_cr(void)
{
    kiln_error e = {0};
    csv_table *t = parse("x\ry\rz", &e);
    KT_CHECK(t != NULL);
    if (t) {
        KT_EQ_INT(t->n_rows, 3);
        KT_CHECK(!strcmp(csv_cell(t, 2, 0), "z"));
    }
    csv_free(t);
}

static void test_ragged(void)
{
    kiln_error e = {0};
    csv_table *t = parse("a,b,c,d,e\n1,2,3,4,5\n1,2,3\n", &e);
    KT_CHECK(t == NULL);
    KT_EQ_INT(e.code, KILN_EINVAL);
    KT_STR_CONTAINS(e.msg, "data.csv: row 3 has 3 fields, expected 5");
    csv_free(t);
    /* A quoted newline shifts lines against rows: both are named. */
    t = parse("a,b\n\"x\ny\",2\n1\n", &e);
    KT_CHECK(t == NULL);
    KT_STR_CONTAINS(e.msg, "row 3 (line 4) has 1 fields, expected 2");
    csv_free(t);
}

static void test_broken_quotes_and_binary(void)
{
    kiln_error e = {0};
    csv_table *t = parse("a,b\n1,\"open\n", &e);
    KT_CHECK(t == NULL);
    KT_EQ_INT(e.code, KILN_EINVAL);
    KT_STR_CONTAINS(e.msg, "never closed");
    t = parse("a,b\n\"x\"y,2\n", &e);
    KT_CHECK(t == NULL);
    KT_STR_CONTAINS(e.msg, "after the closing quote");
    const char bin[] = "a,b\n1,\0\n";
    kiln_error_clear(&e);
    KT_EQ_INT(csv_parse(bin, sizeof bin - 1, "data.csv", &t, &e), KILN_EINVAL);
    KT_STR_CONTAINS(e.msg, "NUL byte at byte offset 6");
}

static void test_empty(void)
{
    kiln_error e = {0};
    csv_table *t = parse("", &e);
    KT_CHECK(t == NULL);
    KT_EQ_INT(e.code, KILN_EINVAL);
    KT_STR_CONTAINS(e.msg, "data.csv: the file is empty");
    t = parse("\n\r\n\n", &e);
    KT_CHECK(t == NULL);
    KT_STR_CONTAINS(e.msg, "empty");
}

static int header_of(const char *text)
{
    kiln_error e = {0};
    csv_table *t = parse(text, &e);
    int h = t ? csv_detect_header(t) : -1;
    csv_free(t);
    return h;
}

static void test_header_detection(void)
{
    KT_EQ_INT(header_of("a,b\n1,2\n3,4\n"), 1);
    KT_EQ_INT(header_of("1,2\n3,4\n"), 0);
    KT_EQ_INT(header_of("color,size\nred,big\nblue,small\n"), 1);
    KT_EQ_INT(header_of("red,big\nblue,small\nred,small\n"), 0);
    KT_EQ_INT(header_of("x,,z\n1,2,3\n"), 0);
    KT_EQ_INT(header_of("NA,b\n1,2\n"), 0);
    KT_EQ_INT(header_of("species,len\nsetosa,1.5\n"), 1);
}

static void test_cell_rules(void)
{
    double v = 0;
    KT_CHECK(csv_cell_missing(""));
    KT_CHECK(csv_cell_missing("  "));
    KT_CHECK(csv_cell_missing("NA"));
    KT_CHECK(csv_cell_missing("na"));
    KT_CHECK(csv_cell_missing("NaN"));
    KT_CHECK(csv_cell_missing(" nan "));
    KT_CHECK(!csv_cell_missing("N/A x"));
    KT_CHECK(!csv_cell_missing("0"));
    KT_CHECK(csv_cell_number("1.5e3", &v));
    KT_NEAR(v, 1500, 0);
    KT_CHECK(csv_cell_number(" -.25 ", &v));
    KT_NEAR(v, -0.25, 0);
    KT_CHECK(csv_cell_number("+7.", &v));
    KT_NEAR(v, 7, 0);
    KT_CHECK(!csv_cell_number("0x10", &v));
    KT_CHECK(!csv_cell_number("inf", &v));
    KT_CHECK(!csv_cell_number("nan", &v));
    KT_CHECK(!csv_cell_number("1e", &v));
    KT_CHECK(!csv_cell_number("1e999", &v));
    KT_CHECK(!csv_cell_number("12abc", &v));
    KT_CHECK(!csv_cell_number(".", &v));
    KT_CHECK(!csv_cell_number("", &v));
}

int main(void)
{
    KT_RUN(test_basic_quotes);
    KT_RUN(test_semicolon_crlf_bom);
    KT_RUN(test_no_trailing_newline_and_cr);
    KT_RUN(test_ragged);
    KT_RUN(test_broken_quotes_and_binary);
    KT_RUN(test_empty);
    KT_RUN(test_header_detection);
    KT_RUN(test_cell_rules);
    return KT_DONE();
}
