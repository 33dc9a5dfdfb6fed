/* kube_yaml: libyaml event stream -> cJSON tree. */
#include "kube_yaml.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <yaml.h>

#define MAX_DEPTH 64

typedef struct frame {
    cJSON *node;
    char *pending_key; /* mapping: key read, value not yet */
} frame;

/* Plain scalars follow YAML 1.2 core-schema typing (a subset). */
static cJSON *scalar(const yaml_event_t *ev, int flags)
{
    const char *v = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length;
    if (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && (flags & KUBE_YAML_STRINGS)) {
        if (n == 0 || (n == 1 && v[0] == '~') || !strcmp(v, "null"))
            return cJSON_CreateNull();
    } else if (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
        if (n == 0 || (n == 1 && v[0] == '~') || !strcmp(v, "null") || !strcmp(v, "Null") ||
            !strcmp(v, "NULL"))
            return cJSON_CreateNull();
        if (!strcasecmp(v, "true"))
            return cJSON_CreateTrue();
        if (!strcasecmp(v, "false"))
            return cJSON_CreateFalse();
        char *end;
        if (strlen(v) == n && n < 32 &&
            ((v[0] >= '0' && v[0] <= '9') || ((v[0] == '-' || v[0] == '+') && n > 1))) {
            double d = strtod(v, &end);
            if (*end == '\0' && d == d && d < 1e300 && d > -1e300)
                return cJSON_CreateNumber(d);
        }
    }
    /* embedded NULs are cut: kubeconfig strings never carry them */
    return cJSON_CreateString(v);
}

/* Attaches child to the frame on top; takes ownership of child. */
static int attach(frame *top, cJSON *child, kiln_error *err, const yaml_event_t *ev)
{
    if (cJSON_IsArray(top->node)) {
        if (!cJSON_AddItemToArray(top->node, child)) {
            cJSON_Delete(child);
            return kiln_fail(err, KILN_ENOMEM, "yaml: out of memory");
        }
        return 0;
    }
    if (!top->pending_key) {
        /* a mapping key: must be a scalar */
        if (!cJSON_IsString(child) && !cJSON_IsNumber(child) && !cJSON_IsBool(child) &&
            !cJSON_IsNull(child)) {
            cJSON_Delete(child);
            return kiln_fail(err, KILN_EINVAL,
                             "yaml: line %zu: complex mapping keys are not supported",
                             ev->start_mark.line + 1);
        }
        const char *k = (const char *)ev->data.scalar.value;
        cJSON_Delete(child);
        if (cJSON_GetObjectItemCaseSensitive(top->node, k))
            return kiln_fail(err, KILN_EINVAL, "yaml: line %zu: duplicate key \"%.64s\"",
                             ev->start_mark.line + 1, k);
        top->pending_key = strdup(k);
        if (!top->pending_key)
            return kiln_fail(err, KILN_ENOMEM, "yaml: out of memory");
        return 0;
    }
    if (!cJSON_AddItemToObject(top->node, top->pending_key, child)) {
        cJSON_Delete(child);
        return kiln_fail(err, KILN_ENOMEM, "yaml: out of memory");
    }
    free(top->pending_key);
    top->pending_key = NULL;
    return 0;
}

int kube_yaml_parse(const char *text, size_t len, int flags, cJSON **out, kiln_error *err)
{
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p))
        return kiln_fail(err, KILN_ENOMEM, "yaml: out of memory");
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    frame stack[MAX_DEPTH + 1];
    int depth = 0; /* frames in use */
    cJSON *root = NULL;
    int rc = 0, done = 0;
    while (!done) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) {
            rc = kiln_fail(err, KILN_EINVAL, "yaml: line %zu column %zu: %s",
                           p.problem_mark.line + 1, p.problem_mark.column + 1,
                           p.problem ? p.problem : "syntax error");
            break;
        }
        cJSON *node = NULL;
        int push = 0;
        switch (ev.type) {
        case YAML_ALIAS_EVENT:
            rc = kiln_fail(err, KILN_EINVAL, "yaml: line %zu: aliases are not supported",
                           ev.start_mark.line + 1);
            break;
        case YAML_SCALAR_EVENT:
            if (ev.data.scalar.anchor) {
                rc = kiln_fail(err, KILN_EINVAL, "yaml: line %zu: anchors are not supported",
                               ev.start_mark.line + 1);
                break;
            }
            node = scalar(&ev, flags);
            if (!node)
                rc = kiln_fail(err, KILN_ENOMEM, "yaml: out of memory");
            break;
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            if ((ev.type == YAML_SEQUENCE_START_EVENT && ev.data.sequence_start.anchor) ||
                (ev.type == YAML_MAPPING_START_EVENT && ev.data.mapping_start.anchor)) {
                rc = kiln_fail(err, KILN_EINVAL, "yaml: line %zu: anchors are not supported",
                               ev.start_mark.line + 1);
                break;
            }
            if (depth >= MAX_DEPTH) {
                rc = kiln_fail(err, KILN_EINVAL, "yaml: nesting deeper than %d", MAX_DEPTH);
                break;
            }
            if (depth > 0 && cJSON_IsObject(stack[depth - 1].node) &&
                !stack[depth - 1].pending_key) {
                rc = kiln_fail(err, KILN_EINVAL,
                               "yaml: line %zu: complex mapping keys are not supported",
                               ev.start_mark.line + 1);
                break;
            }
            node =
                ev.type == YAML_SEQUENCE_START_EVENT ? cJSON_CreateArray() : cJSON_CreateObject();
            if (!node)
                rc = kiln_fail(err, KILN_ENOMEM, "yaml: out of memory");
            push = 1;
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT: {
            frame f = stack[--depth];
            free(f.pending_key); /* unreachable for well-formed input */
            if (depth == 0) {
                root = f.node;
            } else if ((rc = attach(&stack[depth - 1], f.node, err, &ev)) != 0) {
                break;
            }
            break;
        }
        case YAML_DOCUMENT_END_EVENT:
        case YAML_STREAM_END_EVENT:
            done = 1;
            break;
        default:
            break;
        }
        if (!rc && node) {
            if (push) {
                stack[depth].node = node;
                stack[depth].pending_key = NULL;
                depth++;
            } else if (depth == 0) {
                root = node;
            } else {
                rc = attach(&stack[depth - 1], node, err, &ev);
            }
        } else if (rc && node) {
            cJSON_Delete(node);
        }
        yaml_event_delete(&ev);
        if (rc)
            break;
    }
    yaml_parser_delete(&p);
    if (rc) {
        /* open collections are attached to their parent only when they end,
         * so every frame still owns its node */
        for (int i = 0; i < depth; i++) {
            free(stack[i].pending_key);
            cJSON_Delete(stack[i].node);
        }
        cJSON_Delete(root);
        return rc;
    }
    if (!root) {
        root = cJSON_CreateNull();
        if (!root)
            return kiln_fail(err, KILN_ENOMEM, "yaml: out of memory");
    }
    *out = root;
    return 0;
}

const char *kube_yaml_str(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int kube_yaml_bool(const cJSON *obj, const char *key, int dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (cJSON_IsTrue(v))
        return 1;
    if (cJSON_IsFalse(v))
        return 0;
    if (cJSON_IsString(v)) {
        if (!strcasecmp(v->valuestring, "true"))
            return 1;
        if (!strcasecmp(v->valuestring, "false"))
            return 0;
    }
    return dflt;
}
