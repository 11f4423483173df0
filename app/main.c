/* main.c - the egoworld command: dispatches to subcommands (see cli.h). */
#include <stdio.h>
#include <string.h>

#include "app/cli.h"
#include "models/dist.h"

int cmd_run(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_lua(int argc, char **argv);
int cmd_export_ngsim(int argc, char **argv);
int cmd_train_tracker(int argc, char **argv);
int cmd_eval_tracker(int argc, char **argv);
int cmd_train_predictor(int argc, char **argv);
int cmd_eval_predictor(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_train_world(int argc, char **argv);
int cmd_eval_world(int argc, char **argv);
int cmd_imagine(int argc, char **argv);
int cmd_collect(int argc, char **argv);
int cmd_train_policy(int argc, char **argv);

static const ew_command commands[] = {
    {"run", cmd_run, "run a scenario (viewer when a display exists, headless otherwise)"},
    {"bench", cmd_bench, "measure the hot paths: bench sim | nn | data | plan"},
    {"lua", cmd_lua, "run a headless Lua program with the egoworld module"},
    {"collect", cmd_collect, "record trajectory datasets with the noisy ego driver (docs/DATASET.md)"},
    {"eval", cmd_eval, "evaluate a controller on a fixed, seeded episode set (docs/EVAL.md)"},
    {"train-policy", cmd_train_policy, "train a driving policy: one-step imitation or MPUR through the world model"},
    {"export-ngsim", cmd_export_ngsim, "simulate a scenario and write it in the NGSIM text format"},
    {"train-world", cmd_train_world, "train the world model on trajectory datasets"},
    {"eval-world", cmd_eval_world, "evaluate a world model against baselines on held-out episodes"},
    {"imagine", cmd_imagine, "draw real versus imagined futures of a world model as a PNG strip"},
    {"train-tracker", cmd_train_tracker, "train the unsupervised vehicle tracker on rendered video"},
    {"eval-tracker", cmd_eval_tracker, "score the tracker and a thresholding baseline against the truth"},
    {"train-predictor", cmd_train_predictor, "train the motion predictor on tracked (or true) positions from video"},
    {"eval-predictor", cmd_eval_predictor, "score motion predictors against constant velocity and the truth"},
};
static const int n_commands = (int)(sizeof commands / sizeof commands[0]);

static void usage(FILE *out) {
    fprintf(out, "usage: egoworld <command> [options]   (egoworld <command> --help for details)\n\ncommands:\n");
    for (int i = 0; i < n_commands; i++) fprintf(out, "  %-14s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (int i = 0; i < n_commands; i++)
        if (!strcmp(argv[1], commands[i].name)) {
            /* MPI only under an MPI launcher (models/dist.h); a no-op otherwise */
            char err[256];
            if (ew_dist_init(&argc, &argv, err, sizeof err)) {
                fprintf(stderr, "egoworld %s: %s\n", argv[1], err);
                return 1;
            }
            int rc = commands[i].fn(argc - 1, argv + 1);
            ew_dist_finalize();
            return rc;
        }
    fprintf(stderr, "egoworld: unknown command '%s' (see egoworld --help)\n", argv[1]);
    return 2;
}
