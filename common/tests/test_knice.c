/* Unit tests for knice: only the calling thread's niceness changes, by
 * the steps asked for, capped at 19. */
#include <pthread.h>

#include "knice.h"
#include "ktest.h"

typedef struct seen {
    int before, after, returned, again;
} seen;

static void *lower_here(void *arg)
{
    seen *s = arg;
    s->before = knice_thread();
    s->returned = knice_lower_thread(3);
    s->after = knice_thread();
    s->again = knice_lower_thread(40); /* past the top: 19 */
    return NULL;
}

static void test_lowers_only_its_thread(void)
{
    int mine = knice_thread();
    KT_CHECK(mine != KNICE_UNKNOWN);
    seen s;
    pthread_t t;
    KT_EQ_INT(pthread_create(&t, NULL, lower_here, &s), 0);
    pthread_join(t, NULL);
    KT_EQ_INT(s.before, mine); /* a new thread starts at its creator's */
    int want = mine + 3 > 19 ? 19 : mine + 3;
    KT_EQ_INT(s.returned, want);
    KT_EQ_INT(s.after, want);
    KT_EQ_INT(s.again, 19);
    KT_EQ_INT(knice_thread(), mine);
}

int main(void)
{
    KT_RUN(test_lowers_only_its_thread);
    return KT_DONE();
}
