/* serve: `kiln-trainer serve`, the model server (KServe v1 and Open
 * Inference Protocol v2 over HTTP, CSV uploads, health, Prometheus metrics,
 * hot reload of a newer checkpoint). Entry point called by main.c. */
#ifndef KILN_SERVE_H
#define KILN_SERVE_H

/* argv[0] is "serve". Returns the process exit code. */
int serve_main(int argc, char **argv);

#endif
