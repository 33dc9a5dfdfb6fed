/* kl_volume: a pod's directories and volumes on the host, for kubelite's
 * kubelet: logs and termination messages, emptyDir, hostPath,
 * persistentVolumeClaim (a directory per claim under the data dir),
 * configMap, secret and downwardAPI volumes, and subPaths.
 *
 * New directories are made on the kubelet's worker thread: on ext4 one can
 * cost a millisecond or more of inode search. The files of configMap,
 * secret and downwardAPI volumes are written on the caller's thread once
 * the directories exist, since they are read from the store. */
#ifndef KL_VOLUME_H
#define KL_VOLUME_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "kl_api.h"
#include "kl_kpod.h"
#include "kl_worker.h"

/* Queues the making of every directory the pod needs (p->dirs); w may be
 * NULL (made at once). data_dir is kubelite's data directory. */
void kl_volume_prepare(kl_worker *w, const char *data_dir, const cJSON *pod, kl_kpod *p);

/* 1 once those directories exist; the first time, it also fills the
 * pod's configMap, secret and downwardAPI volumes (p->dirs_ready). */
int kl_volume_ready(kl_api *api, const cJSON *pod, kl_kpod *p);

/* The host directory (or file, *is_file) of the pod's volume vname.
 * Returns 0, or -1 when there is no such volume or its hostPath is
 * missing. */
int kl_volume_dir(const char *data_dir, const cJSON *pod, const kl_kpod *p, const char *vname,
                  char *out, size_t n, int *is_file);

/* The value of a downward API fieldPath (metadata.name, status.podIP,
 * metadata.labels['k'], ...), or NULL. Borrowed from pod or p. */
const char *kl_volume_field_ref(const cJSON *pod, const kl_kpod *p, const char *path);

/* mkdir -p. Returns 0 or -1 (errno set). */
int kl_volume_mkdirs(const char *path);

/* Decodes base64 (a Secret's data; characters outside the alphabet are
 * skipped) into out, which has room for strlen(in) bytes. Returns the
 * length. */
size_t kl_volume_b64dec(const char *in, unsigned char *out);

/* Creates or truncates path with n bytes of data. Returns 0 or -1. */
int kl_volume_write_file(const char *path, const char *data, size_t n, int mode);

#endif
