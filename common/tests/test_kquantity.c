/* Unit tests for kquantity: suffixes, fractions, rounding, errors. */
#include "kquantity.h"
#include "ktest.h"

static void test_parse(void)
{
    kquantity q;
    kiln_error err = {0};
    KT_EQ_INT(kquantity_parse("500m", &q, &err), 0);
    KT_EQ_INT(q.milli, 500);
    KT_EQ_INT(q.value, 1);
    KT_EQ_INT(kquantity_parse("1Gi", &q, &err), 0);
    KT_EQ_INT(q.value, 1073741824LL);
    KT_EQ_INT(kquantity_parse("0.1", &q, &err), 0);
    KT_EQ_INT(q.milli, 100);
    KT_EQ_INT(kquantity_parse("1.5Mi", &q, &err), 0);
    KT_EQ_INT(q.value, 1572864);
    KT_EQ_INT(kquantity_parse("2", &q, &err), 0);
    KT_EQ_INT(q.milli, 2000);
    KT_EQ_INT(kquantity_parse("1e3", &q, &err), 0);
    KT_EQ_INT(q.value, 1000);
    KT_EQ_INT(kquantity_parse("128M", &q, &err), 0);
    KT_EQ_INT(q.value, 128000000);
    KT_EQ_INT(kquantity_parse("1k", &q, &err), 0);
    KT_EQ_INT(q.value, 1000);
    KT_EQ_INT(kquantity_parse("-2", &q, &err), 0);
    KT_EQ_INT(q.value, -2);
    KT_EQ_INT(kquantity_parse("100Ei", &q, &err), 0);
    KT_EQ_INT(q.value, INT64_MAX);
}

static void test_errors(void)
{
    kquantity q;
    kiln_error err = {0};
    KT_EQ_INT(kquantity_parse("", &q, &err), KILN_EINVAL);
    KT_EQ_INT(kquantity_parse("Gi", &q, &err), KILN_EINVAL);
    KT_EQ_INT(kquantity_parse("1Gb", &q, &err), KILN_EINVAL);
    KT_EQ_INT(kquantity_parse("1e", &q, &err), KILN_EINVAL);
    KT_EQ_INT(kquantity_parse("1 Gi", &q, &err), KILN_EINVAL);
}

static void test_format(void)
{
    char buf[32];
    KT_EQ_INT(kquantity_format_bytes(536870912, buf, sizeof(buf)), 0);
    KT_CHECK(strcmp(buf, "512Mi") == 0);
    KT_EQ_INT(kquantity_format_bytes(1000, buf, sizeof(buf)), 0);
    KT_CHECK(strcmp(buf, "1000") == 0);
}

int main(void)
{
    KT_RUN(test_parse);
    KT_RUN(test_errors);
    KT_RUN(test_format);
    return KT_DONE();
}
