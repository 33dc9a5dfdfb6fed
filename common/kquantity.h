/* kquantity: Kubernetes resource quantities ("500m", "1Gi", "2", "1e3",
 * "0.5") parsed into exact integer forms.
 *
 * Suffixes: binary Ki Mi Gi Ti Pi Ei, decimal n u m "" k M G T P E, and
 * decimal exponents e/E. Values are kept as milli-units (CPU) and as whole
 * units rounded up (bytes), the two forms the kubelet needs. No allocation. */
#ifndef KQUANTITY_H
#define KQUANTITY_H

#include <stdint.h>

#include "kiln_err.h"

typedef struct kquantity {
    int64_t milli; /* value * 1000, rounded up; saturates at INT64_MAX */
    int64_t value; /* value rounded up to a whole unit; saturates */
} kquantity;

/* Parses s. Returns 0 or KILN_EINVAL (message in err). Negative quantities
 * are accepted (the API allows them in some fields). */
int kquantity_parse(const char *s, kquantity *out, kiln_error *err);

/* Formats bytes in the canonical binary form when exact ("512Mi"), else
 * plain digits. Returns 0 or KILN_ENOMEM if buf is too small. */
int kquantity_format_bytes(int64_t bytes, char *buf, unsigned long bufsz);

#endif
