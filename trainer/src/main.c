/* kiln-trainer: command-line entry point. Dispatches to train, serve,
 * predict and inspect. */
#include <stdio.h>
#include <string.h>

#if KILN_HAVE_SERVE
#include "serve.h"
#endif

static void usage(FILE *f)
{
    fprintf(f, "usage: kiln-trainer <command> [options]\n"
               "commands:\n"
               "  train    train a model (--config FILE.json | --config-json JSON) --output DIR\n"
               "  serve    serve a model over HTTP (--model PATH --name NAME --port 8080)\n"
               "  predict  predict with a model (--model PATH --input FILE)\n"
               "  inspect  print a checkpoint's header as JSON (inspect PATH)\n"
               "  version  print the version\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("kiln-trainer %s\n", KILN_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return 0;
    }
#if KILN_HAVE_SERVE
    if (!strcmp(cmd, "serve"))
        return serve_main(argc - 1, argv + 1);
#endif
    fprintf(stderr, "kiln-trainer: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
