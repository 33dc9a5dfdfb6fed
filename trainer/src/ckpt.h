/* ckpt: Kiln's self-describing checkpoint file.
 *
 *   offset 0   8 bytes  magic "KILNCKPT"
 *          8   u32 LE   format version (1)
 *         12   u32 LE   flags (reserved, 0)
 *         16   u64 LE   header length H
 *         24   H bytes  header: UTF-8 JSON object (architecture, preprocessing,
 *                       metrics, params, and "sections": [{"name","count"}])
 *       24+H   float32 LE arrays, one per section, in header order
 *    end - 4   u32 LE   CRC32 (zlib) of every byte before it
 *
 * Writes go to "PATH.tmp.<pid>", are fsync'd, renamed over PATH and the
 * directory fsync'd, so a reader sees the old file or the new one, never a
 * part. Readers check magic, version, sizes against the file length and the
 * CRC before trusting anything, and say what was expected and found.
 *
 * Ownership: ckpt_read / ckpt_read_mem return a ckpt freed by ckpt_free;
 * ckpt_section and ckpt_header return borrowed pointers into it. */
#ifndef KILN_CKPT_H
#define KILN_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "kiln_err.h"

#define CKPT_MAGIC "KILNCKPT"
#define CKPT_VERSION 1u
#define CKPT_MAX_SECTIONS 8

typedef struct ckpt_section {
    const char *name;  /* "params", "optim", "centroids", ... */
    const float *data;
    size_t count;
} ckpt_section;

/* header is not modified; its "sections" key is written by ckpt_write. */
int ckpt_write(const char *path, const cJSON *header, const ckpt_section *secs, int nsecs,
               kiln_error *err);

typedef struct ckpt ckpt;

int ckpt_read(const char *path, ckpt **out, kiln_error *err);
/* Same checks on a buffer; `what` names it in messages. */
int ckpt_read_mem(const void *buf, size_t len, const char *what, ckpt **out, kiln_error *err);
void ckpt_free(ckpt *c);

const cJSON *ckpt_header(const ckpt *c);
/* NULL when absent. */
const float *ckpt_section_data(const ckpt *c, const char *name, size_t *count);
/* CRC32 of the file, the checkpoint's identity ("model version"). */
uint32_t ckpt_crc(const ckpt *c);

#endif
