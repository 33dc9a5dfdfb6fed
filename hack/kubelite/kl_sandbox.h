/* kl_sandbox: how kubelite's kubelet turns a container spec into a
 * process: the pod's directories and volumes (through kl_volume), the
 * image to local binary mapping (--images), the bubblewrap command line (own PID
 * namespace, read-only host /usr, volumes at their mount paths,
 * /dev/termination-log, env with $(VAR) expansion), memory limits through a
 * memory cgroup (or RLIMIT_AS), and the fork/exec itself. It also runs a
 * command inside a running container's namespaces (exec probes). System
 * calls that can block for milliseconds (new directories, moves into a
 * cpu cgroup) go to a worker thread (kl_worker).
 *
 * It does not decide when to start or restart anything: kl_kubelet does.
 * Ownership: kl_sandbox_new()/kl_sandbox_free(); the kl_api is borrowed. */
#ifndef KL_SANDBOX_H
#define KL_SANDBOX_H

#include <sys/types.h>

#include <cjson/cJSON.h>

#include "kiln_err.h"
#include "kl_api.h"
#include "kl_kpod.h"
#include "kl_worker.h"

typedef struct kl_sandbox kl_sandbox;

/* images_file may be NULL (no mapping: every command runs from the host's
 * /usr). Returns 0, KILN_ENOTFOUND (unreadable images file) or
 * KILN_ENOMEM. */
int kl_sandbox_new(kl_api *api, const char *data_dir, const char *images_file, kl_sandbox **out,
                   kiln_error *err);
void kl_sandbox_free(kl_sandbox *sb);
/* The worker thread its system calls run on (borrowed; NULL when none
 * could be started and they run on the caller's thread). */
kl_worker *kl_sandbox_worker(kl_sandbox *sb);

/* Has the pod's directories (logs, termination messages, its own volumes,
 * its claims' directories, subPaths) made on the worker thread: a new
 * directory can cost the file system a millisecond or more. Init and app
 * containers see the same volume directories. */
void kl_sandbox_prepare(kl_sandbox *sb, const cJSON *pod, kl_kpod *p);

/* 1 once the directories kl_sandbox_prepare asked for exist; the first
 * time, it also fills the pod's configMap, secret and downwardAPI
 * volumes. No container of the pod starts before. */
int kl_sandbox_ready(kl_sandbox *sb, const cJSON *pod, kl_kpod *p);

/* Starts container c of pod: sets running, started, started_at and clears
 * the previous exit. The process itself is started on the worker thread:
 * c->pid stays 0 until kl_sandbox_started() has taken it. When the spec
 * cannot run (no command, a missing volume) the container ends at once as
 * done with reason ContainerCannotRun. */
void kl_sandbox_start(kl_sandbox *sb, const cJSON *pod, kl_kpod *p, kl_kctr *c);

/* Takes the pid of a start the worker has finished (waiting for it with
 * wait), sends a signal asked for meanwhile, or ends the container with
 * reason StartError when the fork failed. Returns 1 when c has no start
 * in flight any more, 0 while it has. */
int kl_sandbox_started(kl_kctr *c, int wait);

/* For a pod being dropped: a start of c still on the worker is left to
 * it, which kills and reaps the process once started, and c no longer
 * runs. Without a start in flight, c is left as it is for the caller's
 * kill. */
void kl_sandbox_abandon(kl_sandbox *sb, kl_kctr *c);

/* After c exited: 1 if the exit was the memory limit's OOM kill. Then
 * removes the instance's cgroup. */
int kl_sandbox_finish(kl_kctr *c);

/* Runs cmd (a JSON array of strings) inside the namespaces of the
 * container whose bwrap process is sandbox, stdout and stderr discarded.
 * *out is the child to reap. Returns 0, KILN_ENOTFOUND (the container has
 * no process yet), KILN_EINVAL (empty command) or KILN_EIO (fork failed). */
int kl_sandbox_exec_in(pid_t sandbox, const cJSON *cmd, pid_t *out);

#endif
