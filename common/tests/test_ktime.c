/* Unit tests for ktime: RFC 3339 parse/format round trips and edge cases. */
#include <time.h>

#include "ktest.h"
#include "ktime.h"

static void test_parse_utc(void)
{
    ktime t;
    KT_EQ_INT(ktime_parse("1970-01-01T00:00:00Z", &t, NULL), 0);
    KT_EQ_INT(t.sec, 0);
    KT_EQ_INT(t.nsec, 0);
    KT_EQ_INT(ktime_parse("2026-11-22T10:45:25Z", &t, NULL), 0);
    KT_EQ_INT(t.sec, 1795344325LL);
    KT_EQ_INT(ktime_parse("2000-02-29t23:59:59z", &t, NULL), 0);
    KT_EQ_INT(t.sec, 951868799LL);
}

static void test_parse_fraction_and_offsets(void)
{
    ktime t, u;
    KT_EQ_INT(ktime_parse("2026-11-22T10:45:25.482992Z", &t, NULL), 0);
    KT_EQ_INT(t.nsec, 482992000);
    /* python-kubernetes writes +00:00 */
    KT_EQ_INT(ktime_parse("2026-11-22T10:45:25.482992+00:00", &u, NULL), 0);
    KT_EQ_INT(ktime_cmp(t, u), 0);
    KT_EQ_INT(ktime_parse("2026-11-22T12:45:25.482992+02:00", &u, NULL), 0);
    KT_EQ_INT(ktime_cmp(t, u), 0);
    KT_EQ_INT(ktime_parse("2026-11-22T05:15:25.482992-05:30", &u, NULL), 0);
    KT_EQ_INT(ktime_cmp(t, u), 0);
    /* more than 9 digits are truncated; 1 digit scales */
    KT_EQ_INT(ktime_parse("2026-11-22T10:45:25.1234567899Z", &u, NULL), 0);
    KT_EQ_INT(u.nsec, 123456789);
    KT_EQ_INT(ktime_parse("2026-11-22T10:45:25.5Z", &u, NULL), 0);
    KT_EQ_INT(u.nsec, 500000000);
    /* an offset crossing midnight backwards into the previous year */
    KT_EQ_INT(ktime_parse("2027-01-01T00:30:00+01:00", &u, NULL), 0);
    char buf[KTIME_BUFSZ];
    KT_EQ_INT(ktime_format(u, 0, buf, sizeof buf), 0);
    KT_CHECK(strcmp(buf, "2026-12-31T23:30:00Z") == 0);
}

static void test_parse_rejects(void)
{
    static const char *bad[] = {
        "",
        "2026",
        "2026-11-22",
        "2026-11-22T10:45:25",
        "2026-13-01T00:00:00Z",
        "2026-02-29T00:00:00Z",
        "2026-11-31T00:00:00Z",
        "2026-11-22T24:00:00Z",
        "2026-11-22T10:60:00Z",
        "2026-11-22T10:45:60Z",
        "2026-11-22T10:45:25.Z",
        "2026-11-22T10:45:25+0100",
        "2026-11-22T10:45:25Zjunk",
        "2026-11-22X10:45:25Z",
        "2026-11-22T10:45:25+24:00",
        "20a6-11-22T10:45:25Z",
        "2026-11-22T10:45:25 Z",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ktime t;
        kiln_error e = {0};
        int rc = ktime_parse(bad[i], &t, &e);
        if (rc != KILN_EINVAL)
            fprintf(stderr, "accepted: %s\n", bad[i]);
        KT_EQ_INT(rc, KILN_EINVAL);
        KT_CHECK(e.msg[0] != '\0');
    }
    ktime t;
    KT_EQ_INT(ktime_parse(NULL, &t, NULL), KILN_EINVAL);
    /* length-bounded parse ignores bytes past len */
    KT_EQ_INT(ktime_parse_n("1970-01-01T00:00:01Zxyz", 20, &t, NULL), 0);
    KT_EQ_INT(t.sec, 1);
}

static void test_format(void)
{
    ktime t = {.sec = 1795344325, .nsec = 482992123};
    char buf[KTIME_BUFSZ];
    KT_EQ_INT(ktime_format(t, 0, buf, sizeof buf), 0);
    KT_CHECK(strcmp(buf, "2026-11-22T10:45:25Z") == 0);
    KT_EQ_INT(ktime_format(t, 6, buf, sizeof buf), 0);
    KT_CHECK(strcmp(buf, "2026-11-22T10:45:25.482992Z") == 0);
    KT_EQ_INT(ktime_format(t, 9, buf, sizeof buf), 0);
    KT_CHECK(strcmp(buf, "2026-11-22T10:45:25.482992123Z") == 0);
    KT_EQ_INT(ktime_format(t, 3, buf, sizeof buf), 0);
    KT_CHECK(strcmp(buf, "2026-11-22T10:45:25.482Z") == 0);
    ktime neg = {.sec = -1, .nsec = 0};
    KT_EQ_INT(ktime_format(neg, 0, buf, sizeof buf), 0);
    KT_CHECK(strcmp(buf, "1969-12-31T23:59:59Z") == 0);
    char small[10];
    KT_EQ_INT(ktime_format(t, 0, small, sizeof small), KILN_ENOMEM);
    ktime far = {.sec = 253402300800LL, .nsec = 0}; /* year 10000 */
    KT_EQ_INT(ktime_format(far, 0, buf, sizeof buf), KILN_EINVAL);
}

static void test_round_trip_many(void)
{
    /* Every ~97 hours over 400 years, so leap days and century rules show. */
    int bad = 0;
    for (int64_t s = -2208988800LL; s < 10413792000LL; s += 349207) {
        ktime t = {.sec = s, .nsec = (int32_t)((s * 7919) % 1000000) * 1000};
        if (t.nsec < 0)
            t.nsec = -t.nsec;
        char buf[KTIME_BUFSZ];
        ktime u;
        if (ktime_format(t, 6, buf, sizeof buf) || ktime_parse(buf, &u, NULL) ||
            ktime_cmp(t, u) != 0)
            bad++;
    }
    KT_EQ_INT(bad, 0);
}

static void test_arith(void)
{
    ktime t = {.sec = 10, .nsec = 900000000};
    ktime u = ktime_add_ms(t, 250);
    KT_EQ_INT(u.sec, 11);
    KT_EQ_INT(u.nsec, 150000000);
    KT_EQ_INT(ktime_diff_ms(u, t), 250);
    u = ktime_add_ms(t, -1950);
    KT_EQ_INT(u.sec, 8);
    KT_EQ_INT(u.nsec, 950000000);
    KT_EQ_INT(ktime_diff_ms(u, t), -1950);
    KT_EQ_INT(ktime_cmp(u, t), -1);
    int64_t a = ktime_mono_ms(), b = ktime_mono_ms();
    KT_CHECK(b >= a);
    /* the same clock in microseconds */
    int64_t ua = ktime_mono_us();
    struct timespec pause = {0, 3000000};
    nanosleep(&pause, NULL);
    int64_t ub = ktime_mono_us(), mb = ktime_mono_ms();
    KT_CHECK(ub - ua >= 3000 && ub - ua < 3000000);
    KT_CHECK(mb - ub / 1000 >= 0 && mb - ub / 1000 < 1000);
    KT_CHECK(ktime_now().sec > 1700000000);
}

int main(void)
{
    KT_RUN(test_parse_utc);
    KT_RUN(test_parse_fraction_and_offsets);
    KT_RUN(test_parse_rejects);
    KT_RUN(test_format);
    KT_RUN(test_round_trip_many);
    KT_RUN(test_arith);
    return KT_DONE();
}
