/* cmd_lua.c - `egoworld lua SCRIPT.lua [args]`: runs a headless Lua program with the
 * egoworld module (lua/bindings.h), sandboxed unless --unsafe. */
#include <stdio.h>
#include <string.h>

#include "app/cli.h"
#include "lua/bindings.h"

static void help(void) {
    printf("usage: egoworld lua [options] SCRIPT.lua [args...]\n\n"
           "Runs a Lua 5.4 program with the `egoworld` module (worlds, controllers, episodes,\n"
           "observations as tensors, scenarios, NGSIM logs; see docs/LUA_API.md). The script's\n"
           "arguments are in the table `args`. Sandboxed by default: no io, os.execute, debug,\n"
           "C modules or bytecode; files readable only under --allow-read.\n\n"
           "  --allow-read DIR    grant reads (dofile, loadfile, readfile, require, scenario and\n"
           "                      log files) under DIR\n"
           "  --budget N          instruction budget of the whole program (default: unlimited)\n"
           "  --mem-mb N          memory cap of the Lua state in MiB (default 1024)\n"
           "  --seed S            seed of math.random (default 1)\n"
           "  --unsafe            no sandbox: every standard library (io, os, debug, package)\n"
           "  --json              print {\"ok\": true|false, \"error\": ...} when the script ends\n");
}

int cmd_lua(int argc, char **argv) {
    const char *cmd = "lua";
    ew_lua_opts o;
    ew_lua_opts_default(&o);
    o.budget_load = 0;
    o.mem_cap = (size_t)1024 << 20;
    int json = 0, i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i], *v;
        long n;
        if (a[0] != '-') break;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { help(); return 0; }
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--unsafe")) o.sandbox = 0;
        else if (!strcmp(a, "--allow-read")) { if (!(o.read_dir = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--budget")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 0, 2000000000000L, &n)) return 2; o.budget_load = n; }
        else if (!strcmp(a, "--mem-mb")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, a, v, 1, 1 << 20, &n)) return 2; o.mem_cap = (size_t)n << 20; }
        else if (!strcmp(a, "--seed")) { if (!(v = cli_value(cmd, argc, argv, &i)) || cli_u64(cmd, a, v, &o.seed)) return 2; o.has_seed = 1; }
        else return cli_unknown(cmd, a);
    }
    if (i >= argc) {
        fprintf(stderr, "egoworld lua: no script given (see egoworld lua --help)\n");
        return 2;
    }
    const char *script = argv[i];
    o.argc = argc - i - 1;
    o.argv = argv + i + 1;
    char err[8192];
    int rc = ew_lua_run_program(script, &o, err, (int)sizeof err);
    if (json) {
        printf("{\"script\": \"");
        for (const char *p = script; *p; p++) {
            if (*p == '"' || *p == '\\') putchar('\\');
            if ((unsigned char)*p >= 0x20) putchar(*p);
        }
        printf("\", \"ok\": %s", rc == 0 ? "true" : "false");
        if (rc != 0) {
            printf(", \"error\": \"");
            for (const char *p = err; *p && *p != '\n'; p++) {
                if (*p == '"' || *p == '\\') putchar('\\');
                if ((unsigned char)*p >= 0x20) putchar(*p);
            }
            putchar('"');
        }
        printf("}\n");
    }
    if (rc != 0) {
        size_t n = strcspn(err, "\n");
        fprintf(stderr, "egoworld lua: %.*s\n", (int)n, err);
        if (err[n]) fprintf(stderr, "%s\n", err + n + 1);
        return 1;
    }
    return 0;
}
