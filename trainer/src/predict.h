/* predict: `kiln-trainer predict`: runs a checkpoint over a file of
 * instances (an IDX tensor whose items are instances, or a CSV file with
 * or without header in the training data's columns) and writes one JSON
 * line per instance: {"prediction": LABEL, "class": INDEX[, "probabilities": [...]]}. */
#ifndef KILN_PREDICT_H
#define KILN_PREDICT_H

#include <stdio.h>

#include "kiln_err.h"

int predict_file(const char *model_path, const char *input_uri, int with_probs, FILE *out,
                 kiln_error *err);

#endif
