/* serve_infer: v1/v2/CSV payload parsing and response writing (see
 * serve_infer.h). */
#include "serve_infer.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#define MAX_DEPTH 64

/* ======================================================================
 * buffers
 * ====================================================================== */

void serve_batch_init(serve_batch *b)
{
    memset(b, 0, sizeof *b);
}

void serve_batch_release(serve_batch *b)
{
    free(b->x);
    memset(b, 0, sizeof *b);
}

static int batch_room(serve_batch *b, size_t floats)
{
    if (floats <= b->cap)
        return 0;
    size_t ncap = b->cap ? b->cap : 1024;
    while (ncap < floats) {
        if (ncap > SIZE_MAX / 2 / sizeof(float))
            return KILN_ENOMEM;
        ncap *= 2;
    }
    float *x = realloc(b->x, ncap * sizeof(float));
    if (!x)
        return KILN_ENOMEM;
    b->x = x;
    b->cap = ncap;
    return 0;
}

static int bad(int *status, int code, kiln_error *err, const char *msg)
{
    *status = code;
    return kiln_fail(err, KILN_EINVAL, "%s", msg);
}

/* ======================================================================
 * a minimal JSON reader for the v1 fast path
 * ====================================================================== */

typedef struct jp {
    const char *p, *e;
} jp;

static void ws(jp *j)
{
    while (j->p < j->e && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int peek(jp *j)
{
    ws(j);
    return j->p < j->e ? (unsigned char)*j->p : -1;
}

/* At '"': moves past the closing quote. When key is not NULL, copies the
 * raw (unescaped bytes kept as written) content, truncated to keyn - 1. */
static int read_string(jp *j, char *key, size_t keyn)
{
    size_t k = 0;
    j->p++;
    while (j->p < j->e) {
        unsigned char c = (unsigned char)*j->p++;
        if (c == '"') {
            if (key)
                key[k] = '\0';
            return 0;
        }
        if (c < 0x20)
            return -1;
        if (c == '\\') {
            if (j->p >= j->e)
                return -1;
            char x = *j->p++;
            if (x == 'u') {
                for (int i = 0; i < 4; i++, j->p++) {
                    if (j->p >= j->e || !strchr("0123456789abcdefABCDEF", *j->p) || !*j->p)
                        return -1;
                }
                c = '?';
            } else if (strchr("\"\\/bfnrt", x) && x) {
                c = (unsigned char)x;
            } else {
                return -1;
            }
        }
        if (key && k + 1 < keyn)
            key[k++] = (char)c;
    }
    return -1;
}

static const double pow10_tab[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                   1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                   1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static int isdig(const char *p, const char *e)
{
    return p < e && *p >= '0' && *p <= '9';
}

/* A JSON number. Up to 19 significant digits are exact in the mantissa
 * and one multiplication by an exact power of ten (|exp| <= 22) rounds
 * once, which is well within float precision; anything else goes through
 * strtod on a bounded copy. */
static int read_number(jp *j, double *out)
{
    const char *p = j->p, *e = j->e, *start = p;
    int neg = 0;
    if (p < e && *p == '-') {
        neg = 1;
        p++;
    }
    if (!isdig(p, e))
        return -1;
    uint64_t mant = 0;
    int digits = 0, exp10 = 0, slow = 0;
    if (*p == '0') {
        p++;
    } else {
        while (isdig(p, e)) {
            if (digits < 19) {
                mant = mant * 10 + (uint64_t)(*p - '0');
                digits++;
            } else {
                exp10++;
                slow = 1;
            }
            p++;
        }
    }
    if (p < e && *p == '.') {
        p++;
        if (!isdig(p, e))
            return -1;
        while (isdig(p, e)) {
            if (digits < 19) {
                mant = mant * 10 + (uint64_t)(*p - '0');
                if (mant)
                    digits++;
                exp10--;
            } else {
                slow = 1;
            }
            p++;
        }
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        int es = 1, ev = 0;
        if (p < e && (*p == '+' || *p == '-')) {
            es = *p == '-' ? -1 : 1;
            p++;
        }
        if (!isdig(p, e))
            return -1;
        while (isdig(p, e)) {
            if (ev < 100000)
                ev = ev * 10 + (*p - '0');
            p++;
        }
        exp10 += es * ev;
    }
    double v;
    if (!slow && exp10 >= -22 && exp10 <= 22 && mant < ((uint64_t)1 << 53)) {
        v = (double)mant;
        v = exp10 < 0 ? v / pow10_tab[-exp10] : v * pow10_tab[exp10];
    } else {
        char tmp[128];
        size_t n = (size_t)(p - start);
        if (n >= sizeof tmp)
            return -1;
        memcpy(tmp, start, n);
        tmp[n] = '\0';
        v = strtod(tmp, NULL);
        neg = 0; /* the sign was part of the copy */
    }
    *out = neg ? -v : v;
    j->p = p;
    return 0;
}

static int literal(jp *j, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(j->e - j->p) < n || memcmp(j->p, lit, n))
        return -1;
    j->p += n;
    return 0;
}

static int skip_value(jp *j, int depth)
{
    if (depth > MAX_DEPTH)
        return -1;
    int c = peek(j);
    if (c == '"')
        return read_string(j, NULL, 0);
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        j->p++;
        if (peek(j) == close) {
            j->p++;
            return 0;
        }
        for (;;) {
            if (c == '{') {
                if (peek(j) != '"' || read_string(j, NULL, 0) || peek(j) != ':')
                    return -1;
                j->p++;
            }
            if (skip_value(j, depth + 1))
                return -1;
            int d = peek(j);
            j->p++;
            if (d == ',')
                continue;
            if (d == close)
                return 0;
            return -1;
        }
    }
    if (c == 't')
        return literal(j, "true");
    if (c == 'f')
        return literal(j, "false");
    if (c == 'n')
        return literal(j, "null");
    double v;
    return read_number(j, &v);
}

/* ======================================================================
 * v1
 * ====================================================================== */

/* ----------------------------------------------------------------------
 * the common instance, a long array of small integers (pixels)
 *
 * Bodies such as [[0,0,13,255,...]] spend their parse time on the branch
 * per digit: pixel values of one to three digits mispredict it. comma_run
 * takes 64 bytes at a time, finds the digits and commas with SSE2 and
 * converts each "DIGITS," element with digits8, so the only data-dependent
 * branch left is the end of a window. Anything else (whitespace, signs,
 * fractions, the closing ']') ends the run and is left to the general
 * code below it.
 * ---------------------------------------------------------------------- */

#if defined(__SSE2__)
#include <emmintrin.h>

/* The value of the n (1..7) decimal digits at the start of v (8 bytes as
 * loaded from memory, little-endian). The digits are moved to the top of
 * the word, below them zero bytes that count as leading zeros, then
 * combined pairwise: bytes into 2-digit 16-bit lanes, those into 4-digit
 * 32-bit lanes, those into the result. Bytes after the digits may borrow
 * in the subtraction, but only upwards, into bytes the shift drops. */
static uint32_t digits8(uint64_t v, int n)
{
    v = (v - 0x3030303030303030u) << (8 * (8 - n));
    v = (v * 10 + (v >> 8)) & 0x00ff00ff00ff00ffu;
    v = (v * 100 + (v >> 16)) & 0x0000ffff0000ffffu;
    return (uint32_t)((v & 0xffffffffu) * 10000 + (v >> 32));
}

/* Bit i of *dig / *com / *zero set when p[i] (i < 16) is an ASCII digit /
 * a comma / the digit 0. */
static inline void classify16(const char *p, uint64_t *dig, uint64_t *com, uint64_t *zero,
                              int shift)
{
    const __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
    const __m128i d = _mm_sub_epi8(v, _mm_set1_epi8('0'));
    const __m128i isd = _mm_cmpeq_epi8(_mm_min_epu8(d, _mm_set1_epi8(9)), d);
    const __m128i isc = _mm_cmpeq_epi8(v, _mm_set1_epi8(','));
    const __m128i isz = _mm_cmpeq_epi8(v, _mm_set1_epi8('0'));
    *dig |= (uint64_t)(uint32_t)_mm_movemask_epi8(isd) << shift;
    *com |= (uint64_t)(uint32_t)_mm_movemask_epi8(isc) << shift;
    *zero |= (uint64_t)(uint32_t)_mm_movemask_epi8(isz) << shift;
}

/* Consumes elements "DIGITS," (1 to 7 digits, no leading zero) at j->p,
 * storing them at dst[*count...] (counted but not stored past cap). The
 * checks run once per window on its bit masks, so that the loop over its
 * elements has no data-dependent branch. */
static void comma_run(jp *j, float *dst, int cap, int *count)
{
    const char *p = j->p, *e = j->e;
    int k = *count;
    /* 64 bytes classified plus 8 readable after any element in them */
    while (e - p >= 72 && k <= INT_MAX - 64) {
        uint64_t dig = 0, com = 0, zero = 0;
        classify16(p, &dig, &com, &zero, 0);
        classify16(p + 16, &dig, &com, &zero, 16);
        classify16(p + 32, &dig, &com, &zero, 32);
        classify16(p + 48, &dig, &com, &zero, 48);
        /* where elements start (p is at one), and what the run must not
         * take: bytes other than digits and commas, empty elements,
         * leading zeros, runs of eight digits (bit i: bytes i..i+7) */
        const uint64_t starts = com << 1 | 1;
        uint64_t run8 = dig;
        for (int i = 1; i < 8; i++)
            run8 &= dig >> i;
        const uint64_t stop_at = ~(dig | com) | (starts & com) | (starts & zero & dig >> 1) | run8;
        /* only elements whose comma comes before the first such byte */
        if (stop_at)
            com &= ((uint64_t)1 << __builtin_ctzll(stop_at)) - 1;
        int start = 0;
        for (uint64_t c = com; c; c &= c - 1) {
            const int end = __builtin_ctzll(c);
            uint64_t v;
            memcpy(&v, p + start, 8);
            if (k < cap)
                dst[k] = (float)digits8(v, end - start);
            k++;
            start = end + 1;
        }
        p += start;
        /* the rest of this window needs the general code */
        if (stop_at)
            break;
    }
    j->p = p;
    *count = k;
}
#else
static void comma_run(jp *j, float *dst, int cap, int *count)
{
    (void)j, (void)dst, (void)cap, (void)count;
}
#endif

/* One instance: a number, null (missing) or a (nested) array of them,
 * appended in row-major order to b->x at *count. */
static int v1_values(jp *j, serve_batch *b, float *dst, int *count, int depth, int *status,
                     kiln_error *err)
{
    if (depth > MAX_DEPTH)
        return bad(status, 400, err, "instances are nested too deeply");
    int c = peek(j);
    if (c == '[') {
        j->p++;
        if (peek(j) == ']') {
            j->p++;
            return 0;
        }
        for (;;) {
            comma_run(j, dst, b->n_inputs, count);
            /* Fast path for the common element, a plain integer (a pixel,
             * a count) directly followed by ',' or ']': parsed in place
             * with one pass over its digits. Anything else takes the
             * general path below. */
            const char *p = j->p, *e = j->e;
            while (p < e && (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r'))
                p++;
            const char *s = p;
            uint32_t acc = 0;
            unsigned dg;
            while (p < e && p - s < 9 && (dg = (unsigned)(unsigned char)*p - '0') <= 9) {
                acc = acc * 10 + dg;
                p++;
            }
            if (p > s && p < e && (*p == ',' || *p == ']') && !(*s == '0' && p - s > 1)) {
                int k = *count;
                if (k == INT_MAX)
                    return bad(status, 413, err, "an instance holds too many values");
                *count = k + 1;
                if (k < b->n_inputs)
                    dst[k] = (float)acc;
                j->p = p + 1;
                if (*p == ']')
                    return 0;
                continue;
            }
            j->p = s;
            int rc = v1_values(j, b, dst, count, depth + 1, status, err);
            if (rc)
                return rc;
            int d = peek(j);
            j->p++;
            if (d == ',')
                continue;
            if (d == ']')
                return 0;
            return bad(status, 400, err, "malformed JSON: expected ',' or ']' in an instance");
        }
    }
    float v;
    if (c == 'n') {
        if (literal(j, "null"))
            return bad(status, 400, err, "malformed JSON in an instance");
        v = NAN;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
        double d;
        if (read_number(j, &d))
            return bad(status, 400, err, "malformed number in an instance");
        v = (float)d;
        if (!isfinite(v))
            return bad(status, 422, err, "a value is out of the float range");
    } else if (c == '"') {
        return bad(status, 422, err,
                   "instance values must be numbers (send text cells as text/csv)");
    } else if (c == '{' || c == 't' || c == 'f') {
        return bad(status, 422, err, "instance values must be numbers or arrays of numbers");
    } else {
        return bad(status, 400, err, "malformed JSON in an instance");
    }
    if (*count == INT_MAX)
        return bad(status, 413, err, "an instance holds too many values");
    if (*count >= b->n_inputs) {
        (*count)++; /* counted, not stored: reported by the caller */
        return 0;
    }
    dst[(*count)++] = v;
    return 0;
}

static int v1_instances(jp *j, serve_batch *b, int *status, kiln_error *err)
{
    if (peek(j) != '[')
        return bad(status, 400, err, "\"instances\" must be an array");
    j->p++;
    if (peek(j) == ']') {
        j->p++;
        return bad(status, 400, err, "\"instances\" is empty");
    }
    for (;;) {
        if (b->n == INT_MAX || batch_room(b, ((size_t)b->n + 1) * (size_t)b->n_inputs)) {
            *status = 413;
            return kiln_fail(err, KILN_ENOMEM, "too many instances");
        }
        float *dst = b->x + (size_t)b->n * (size_t)b->n_inputs;
        int count = 0;
        int rc = v1_values(j, b, dst, &count, 0, status, err);
        if (rc)
            return kiln_error_prefix(err, "instance %d: ", b->n), rc;
        if (count != b->n_inputs) {
            *status = 422;
            return kiln_fail(err, KILN_EINVAL, "instance %d has %d values; the model takes %d",
                             b->n, count, b->n_inputs);
        }
        b->n++;
        int d = peek(j);
        j->p++;
        if (d == ',')
            continue;
        if (d == ']')
            return 0;
        return bad(status, 400, err, "malformed JSON: expected ',' or ']' after an instance");
    }
}

static int parameters(const char *start, const char *end, serve_batch *b, int *status,
                      kiln_error *err)
{
    cJSON *p = cJSON_ParseWithLength(start, (size_t)(end - start));
    if (!p)
        return bad(status, 400, err, "malformed JSON in \"parameters\"");
    if (!cJSON_IsObject(p)) {
        cJSON_Delete(p);
        return bad(status, 400, err, "\"parameters\" must be an object");
    }
    const cJSON *pr = cJSON_GetObjectItemCaseSensitive(p, "probabilities");
    if (pr && !cJSON_IsBool(pr)) {
        cJSON_Delete(p);
        return bad(status, 400, err, "\"parameters.probabilities\" must be true or false");
    }
    if (cJSON_IsTrue(pr))
        b->want_probs = 1;
    cJSON_Delete(p);
    return 0;
}

int serve_parse_v1(serve_batch *b, const char *body, size_t len, int n_inputs, kiln_error *err)
{
    b->n = 0;
    b->n_inputs = n_inputs;
    b->want_probs = 0;
    b->id[0] = '\0';
    b->status = 400;
    if (n_inputs <= 0)
        return bad(&b->status, 503, err, "the model takes no inputs");
    jp j = {body, body + len};
    if (peek(&j) != '{')
        return bad(&b->status, 400, err, "malformed JSON: the body must be an object");
    j.p++;
    int seen = 0;
    if (peek(&j) == '}') {
        j.p++;
    } else {
        for (;;) {
            char key[32];
            if (peek(&j) != '"' || read_string(&j, key, sizeof key) || peek(&j) != ':')
                return bad(&b->status, 400, err, "malformed JSON: expected a key");
            j.p++;
            if (!strcmp(key, "instances") || !strcmp(key, "inputs")) {
                if (seen)
                    return bad(&b->status, 400, err, "\"instances\" given twice");
                int rc = v1_instances(&j, b, &b->status, err);
                if (rc)
                    return rc;
                seen = 1;
            } else if (!strcmp(key, "parameters")) {
                const char *s = (ws(&j), j.p);
                if (skip_value(&j, 0))
                    return bad(&b->status, 400, err, "malformed JSON in \"parameters\"");
                int rc = parameters(s, j.p, b, &b->status, err);
                if (rc)
                    return rc;
            } else if (skip_value(&j, 0)) {
                return bad(&b->status, 400, err, "malformed JSON");
            }
            int d = peek(&j);
            j.p++;
            if (d == ',')
                continue;
            if (d == '}')
                break;
            return bad(&b->status, 400, err, "malformed JSON: expected ',' or '}'");
        }
    }
    if (peek(&j) != -1)
        return bad(&b->status, 400, err, "malformed JSON: trailing data after the object");
    if (!seen)
        return bad(&b->status, 400, err, "the body has no \"instances\" array");
    return 0;
}

/* ======================================================================
 * v2 (Open Inference Protocol)
 * ====================================================================== */

enum dtype {
    DT_FP32,
    DT_FP64,
    DT_INT64,
    DT_INT32,
    DT_INT16,
    DT_INT8,
    DT_UINT8,
    DT_UINT16,
    DT_UINT32,
    DT_UINT64,
    DT_BAD
};

static enum dtype dtype_of(const char *s)
{
    static const char *const names[] = {"FP32", "FP64",  "INT64",  "INT32",  "INT16",
                                        "INT8", "UINT8", "UINT16", "UINT32", "UINT64"};
    for (int i = 0; i < DT_BAD; i++)
        if (!strcmp(s, names[i]))
            return (enum dtype)i;
    return DT_BAD;
}

static int dtype_accepts(enum dtype t, double v)
{
    if (t == DT_FP32 || t == DT_FP64)
        return 1;
    if (v != floor(v))
        return 0;
    switch (t) {
    case DT_INT64:
        return v >= -9223372036854775808.0 && v < 9223372036854775808.0;
    case DT_INT32:
        return v >= INT32_MIN && v <= INT32_MAX;
    case DT_INT16:
        return v >= INT16_MIN && v <= INT16_MAX;
    case DT_INT8:
        return v >= INT8_MIN && v <= INT8_MAX;
    case DT_UINT8:
        return v >= 0 && v <= UINT8_MAX;
    case DT_UINT16:
        return v >= 0 && v <= UINT16_MAX;
    case DT_UINT32:
        return v >= 0 && v <= UINT32_MAX;
    case DT_UINT64:
        return v >= 0 && v < 18446744073709551616.0;
    default:
        return 0;
    }
}

static int v2_flatten(const cJSON *d, enum dtype t, float *dst, size_t want, size_t *count,
                      int depth, int *status, kiln_error *err)
{
    if (depth > MAX_DEPTH)
        return bad(status, 400, err, "\"data\" is nested too deeply");
    if (cJSON_IsArray(d)) {
        for (const cJSON *e = d->child; e; e = e->next) {
            int rc = v2_flatten(e, t, dst, want, count, depth + 1, status, err);
            if (rc)
                return rc;
        }
        return 0;
    }
    if (!cJSON_IsNumber(d))
        return bad(status, 422, err, "\"data\" must hold numbers of the given datatype");
    if (!dtype_accepts(t, d->valuedouble))
        return bad(status, 422, err, "a value in \"data\" does not fit the declared datatype");
    float v = (float)d->valuedouble;
    if (!isfinite(v))
        return bad(status, 422, err, "a value in \"data\" is out of the float range");
    if (*count < want)
        dst[*count] = v;
    (*count)++;
    return 0;
}

static int wants_probs(const cJSON *root, int *status, kiln_error *err, int *out)
{
    *out = 0;
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(root, "parameters");
    if (params) {
        if (!cJSON_IsObject(params))
            return bad(status, 400, err, "\"parameters\" must be an object");
        const cJSON *pr = cJSON_GetObjectItemCaseSensitive(params, "probabilities");
        if (pr && !cJSON_IsBool(pr))
            return bad(status, 400, err, "\"parameters.probabilities\" must be true or false");
        if (cJSON_IsTrue(pr))
            *out = 1;
    }
    const cJSON *outs = cJSON_GetObjectItemCaseSensitive(root, "outputs");
    if (outs) {
        if (!cJSON_IsArray(outs))
            return bad(status, 400, err, "\"outputs\" must be an array");
        for (const cJSON *o = outs->child; o; o = o->next) {
            const cJSON *nm = cJSON_GetObjectItemCaseSensitive(o, "name");
            if (!cJSON_IsString(nm))
                return bad(status, 400, err, "every requested output needs a \"name\"");
            if (!strcmp(nm->valuestring, "probabilities"))
                *out = 1;
            else if (strcmp(nm->valuestring, "predictions"))
                return bad(status, 422, err,
                           "unknown output (the model has \"predictions\" and \"probabilities\")");
        }
    }
    return 0;
}

static int v2_parse_root(serve_batch *b, const cJSON *root, size_t len, kiln_error *err)
{
    int *status = &b->status;
    if (!cJSON_IsObject(root))
        return bad(status, 400, err, "malformed JSON: the body must be an object");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "id");
    if (id) {
        if (!cJSON_IsString(id))
            return bad(status, 400, err, "\"id\" must be a string");
        size_t n = strlen(id->valuestring);
        if (n >= sizeof b->id)
            return bad(status, 400, err, "\"id\" is too long");
        memcpy(b->id, id->valuestring, n + 1);
    }
    int rc = wants_probs(root, status, err, &b->want_probs);
    if (rc)
        return rc;
    const cJSON *inputs = cJSON_GetObjectItemCaseSensitive(root, "inputs");
    if (!cJSON_IsArray(inputs) || !inputs->child)
        return bad(status, 400, err, "the body needs a non-empty \"inputs\" array");
    if (inputs->child->next)
        return bad(status, 422, err, "the model takes exactly one input tensor");
    const cJSON *in = inputs->child;
    if (!cJSON_IsObject(in))
        return bad(status, 400, err, "an input must be an object");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(in, "name");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(in, "shape");
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(in, "datatype");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(in, "data");
    if (!cJSON_IsString(name) || !cJSON_IsArray(shape) || !cJSON_IsString(dt) || !data)
        return bad(status, 400, err,
                   "an input needs \"name\", \"shape\", \"datatype\" and \"data\"");
    enum dtype t = dtype_of(dt->valuestring);
    if (t == DT_BAD)
        return bad(status, 422, err,
                   "unsupported datatype (use FP32, FP64, INT64, INT32, INT16, INT8, UINT8, "
                   "UINT16, UINT32 or UINT64)");
    /* shape: (n, ...) whose trailing dimensions hold n_inputs values; a
     * rank-1 shape of exactly n_inputs is one instance. */
    int rank = cJSON_GetArraySize(shape);
    if (rank < 1 || rank > 8)
        return bad(status, 422, err, "\"shape\" must have 1 to 8 dimensions");
    double dims[8] = {0};
    int i = 0;
    for (const cJSON *s = shape->child; s; s = s->next, i++) {
        if (!cJSON_IsNumber(s) || s->valuedouble < 0 || s->valuedouble != floor(s->valuedouble) ||
            s->valuedouble > (double)INT_MAX)
            return bad(status, 422, err, "\"shape\" must hold non-negative integers");
        dims[i] = s->valuedouble;
    }
    double n, per = 1;
    if (rank == 1) {
        if (b->n_inputs == 1) {
            n = dims[0];
        } else {
            n = 1;
            per = dims[0];
        }
    } else {
        n = dims[0];
        for (i = 1; i < rank; i++)
            per *= dims[i];
    }
    if (per != b->n_inputs) {
        *status = 422;
        return kiln_fail(err, KILN_EINVAL,
                         "input shape gives %.0f values per instance; the model takes %d", per,
                         b->n_inputs);
    }
    if (n < 1)
        return bad(status, 422, err, "the input holds no instance");
    double total = n * per;
    /* every value takes at least two bytes of JSON, so a body of len bytes
     * cannot hold more than len / 2: refuse before allocating */
    if (total > (double)len / 2 + 1) {
        *status = 422;
        return kiln_fail(err, KILN_EINVAL, "the shape says %.0f values; the body cannot hold them",
                         total);
    }
    if (total > (double)INT_MAX || batch_room(b, (size_t)total)) {
        *status = 413;
        return kiln_fail(err, KILN_ENOMEM, "the input is too large");
    }
    size_t count = 0;
    rc = v2_flatten(data, t, b->x, (size_t)total, &count, 0, status, err);
    if (rc)
        return rc;
    if ((double)count != total) {
        *status = 422;
        return kiln_fail(err, KILN_EINVAL, "\"data\" holds %zu values; the shape says %.0f", count,
                         total);
    }
    b->n = (int)n;
    return 0;
}

int serve_parse_v2(serve_batch *b, const char *body, size_t len, int n_inputs, kiln_error *err)
{
    b->n = 0;
    b->n_inputs = n_inputs;
    b->want_probs = 0;
    b->id[0] = '\0';
    b->status = 400;
    if (n_inputs <= 0)
        return bad(&b->status, 503, err, "the model takes no inputs");
    cJSON *root = cJSON_ParseWithLength(body, len);
    if (!root)
        return bad(&b->status, 400, err, "malformed JSON");
    /* a shape that promises far more values than the body could hold is
     * refused before any allocation (see v2_parse_root) */
    int rc = v2_parse_root(b, root, len, err);
    cJSON_Delete(root);
    return rc;
}

/* ======================================================================
 * responses
 * ====================================================================== */

static int put_labels(sbuf *o, const serve_labels *l, const int32_t *cls, int n)
{
    int rc = sbuf_putc(o, '[');
    for (int i = 0; i < n && !rc; i++) {
        if (i)
            rc = sbuf_putc(o, ',');
        int k = cls[i];
        if (k >= 0 && k < l->n)
            rc = rc ? rc : sbuf_append(o, l->json[k], l->json_len[k]);
        else
            rc = rc ? rc : sbuf_int(o, k);
    }
    return rc ? rc : sbuf_putc(o, ']');
}

static int put_probs(sbuf *o, const float *p, int n, int n_out, int nested)
{
    int rc = sbuf_putc(o, '[');
    for (int i = 0; i < n && !rc; i++) {
        if (i)
            rc = sbuf_putc(o, ',');
        if (nested)
            rc = rc ? rc : sbuf_putc(o, '[');
        for (int k = 0; k < n_out && !rc; k++) {
            if (k)
                rc = sbuf_putc(o, ',');
            rc = rc ? rc : sbuf_json_float(o, p[(size_t)i * (size_t)n_out + (size_t)k]);
        }
        if (nested)
            rc = rc ? rc : sbuf_putc(o, ']');
    }
    return rc ? rc : sbuf_putc(o, ']');
}

int serve_write_v1(sbuf *o, const serve_labels *l, const int32_t *cls, const float *probs, int n,
                   int n_out)
{
    int rc = sbuf_puts(o, "{\"predictions\":");
    rc = rc ? rc : put_labels(o, l, cls, n);
    if (probs) {
        rc = rc ? rc : sbuf_puts(o, ",\"probabilities\":");
        rc = rc ? rc : put_probs(o, probs, n, n_out, 1);
    }
    return rc ? rc : sbuf_putc(o, '}');
}

int serve_write_v2(sbuf *o, const char *model, const char *version, const char *id,
                   const serve_labels *l, const int32_t *cls, const float *probs, int n, int n_out)
{
    int rc = sbuf_puts(o, "{\"model_name\":");
    rc = rc ? rc : sbuf_json_str(o, model);
    rc = rc ? rc : sbuf_puts(o, ",\"model_version\":");
    rc = rc ? rc : sbuf_json_str(o, version);
    if (id && *id) {
        rc = rc ? rc : sbuf_puts(o, ",\"id\":");
        rc = rc ? rc : sbuf_json_str(o, id);
    }
    rc = rc ? rc : sbuf_puts(o, ",\"outputs\":[{\"name\":\"predictions\",\"shape\":[");
    rc = rc ? rc : sbuf_int(o, n);
    rc = rc ? rc
            : sbuf_puts(o, l->numeric ? "],\"datatype\":\"INT64\",\"data\":"
                                      : "],\"datatype\":\"BYTES\",\"data\":");
    rc = rc ? rc : put_labels(o, l, cls, n);
    rc = rc ? rc : sbuf_putc(o, '}');
    if (probs) {
        rc = rc ? rc : sbuf_puts(o, ",{\"name\":\"probabilities\",\"shape\":[");
        rc = rc ? rc : sbuf_int(o, n);
        rc = rc ? rc : sbuf_putc(o, ',');
        rc = rc ? rc : sbuf_int(o, n_out);
        rc = rc ? rc : sbuf_puts(o, "],\"datatype\":\"FP32\",\"data\":");
        rc = rc ? rc : put_probs(o, probs, n, n_out, 0);
        rc = rc ? rc : sbuf_putc(o, '}');
    }
    return rc ? rc : sbuf_puts(o, "]}");
}

int serve_write_error(sbuf *o, const char *msg)
{
    int rc = sbuf_puts(o, "{\"error\":");
    rc = rc ? rc : sbuf_json_str(o, msg);
    return rc ? rc : sbuf_putc(o, '}');
}
