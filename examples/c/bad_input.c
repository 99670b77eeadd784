/*
 * bad_input.c: Ember's C API answers bad arguments with error codes and
 * messages, never with a crash.
 *
 * Passes NULL handles, buffers and paths, wrong lengths, NaN inputs,
 * out-of-range labels and settings, a path that does not exist, a corrupt
 * safetensors file and one of the wrong shape, and checks each status code
 * and that ember_last_error() explains it. Exits 1 on the first surprise.
 *
 *   usage: bad_input [SCRATCH_DIR]        (default: .)
 *
 * Build and run with tools/capi-example.sh.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ember.h"

static int checks = 0;

/* Fails unless `got` is `want` and the last error mentions `needle`. */
static void expect(EmberStatus got, EmberStatus want, const char *needle, const char *what) {
    const char *message = ember_last_error();
    checks++;
    if (got != want) {
        fprintf(stderr, "bad_input: %s: got %s, expected %s (%s)\n", what, ember_status_name(got),
                ember_status_name(want), message);
        exit(1);
    }
    if (want == EMBER_STATUS_OK ? message[0] != '\0' : strstr(message, needle) == NULL) {
        fprintf(stderr, "bad_input: %s: unexpected message \"%s\" (expected \"%s\")\n", what, message, needle);
        exit(1);
    }
    printf("%-46s %-30s %s\n", what, ember_status_name(got), message);
}

static void write_file(const char *path, const void *bytes, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(bytes, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(2);
    }
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : ".";
    char path[4096];

    const size_t hidden[] = {8};
    EmberMlpConfig shape = {.input = 4, .hidden = hidden, .hidden_len = 1, .classes = 3, .dropout = 0.0f, .seed = 0};
    EmberMlp *model = (EmberMlp *)1; /* must be reset to NULL on failure */

    /* Creation. */
    expect(ember_mlp_new(NULL, &model), EMBER_STATUS_NULL_POINTER, "`config` is NULL", "ember_mlp_new(NULL config)");
    if (model != NULL) {
        fprintf(stderr, "bad_input: model_out was not reset to NULL\n");
        return 1;
    }
    expect(ember_mlp_new(&shape, NULL), EMBER_STATUS_NULL_POINTER, "`model_out` is NULL", "ember_mlp_new(NULL out)");
    EmberMlpConfig bad = shape;
    bad.input = 0;
    expect(ember_mlp_new(&bad, &model), EMBER_STATUS_INVALID_ARGUMENT, "input is 0", "ember_mlp_new(input 0)");
    bad = shape;
    bad.hidden = NULL;
    expect(ember_mlp_new(&bad, &model), EMBER_STATUS_NULL_POINTER, "config->hidden", "ember_mlp_new(NULL hidden)");
    bad = shape;
    bad.dropout = 1.5f;
    expect(ember_mlp_new(&bad, &model), EMBER_STATUS_INVALID_ARGUMENT, "dropout", "ember_mlp_new(dropout 1.5)");
    expect(ember_mlp_new(&shape, &model), EMBER_STATUS_OK, "", "ember_mlp_new(valid)");

    /* Inference. */
    float x[8] = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f, 0.8f};
    float logits[6];
    expect(ember_mlp_predict(NULL, x, 2, logits, 6), EMBER_STATUS_NULL_POINTER, "`model` is NULL",
           "ember_mlp_predict(NULL model)");
    expect(ember_mlp_predict(model, NULL, 2, logits, 6), EMBER_STATUS_NULL_POINTER, "`x` is NULL",
           "ember_mlp_predict(NULL x)");
    expect(ember_mlp_predict(model, x, 2, NULL, 6), EMBER_STATUS_NULL_POINTER, "`logits_out` is NULL",
           "ember_mlp_predict(NULL out)");
    expect(ember_mlp_predict(model, x, 2, logits, 5), EMBER_STATUS_SHAPE, "need 6", "ember_mlp_predict(out too short)");
    expect(ember_mlp_predict(model, x, 0, logits, 6), EMBER_STATUS_INVALID_ARGUMENT, "`n` is 0",
           "ember_mlp_predict(n = 0)");
    expect(ember_mlp_predict(model, x, (size_t)-1, logits, 6), EMBER_STATUS_INVALID_ARGUMENT, "overflows",
           "ember_mlp_predict(n = SIZE_MAX)");
    expect(ember_mlp_predict(model, (const float *)((const char *)x + 1), 1, logits, 3), EMBER_STATUS_INVALID_ARGUMENT,
           "not aligned", "ember_mlp_predict(misaligned x)");
    expect(ember_mlp_predict(model, x, 1, x + 2, 3), EMBER_STATUS_INVALID_ARGUMENT, "overlap",
           "ember_mlp_predict(x and out overlap)");
    x[5] = NAN;
    expect(ember_mlp_predict(model, x, 2, logits, 6), EMBER_STATUS_NON_FINITE, "example 1, feature 1",
           "ember_mlp_predict(NaN input)");
    x[5] = 0.6f;
    expect(ember_mlp_predict(model, x, 2, logits, 6), EMBER_STATUS_OK, "", "ember_mlp_predict(valid)");
    int32_t labels[2] = {0, 3};
    double accuracy;
    expect(ember_mlp_accuracy(model, x, labels, 2, &accuracy), EMBER_STATUS_INVALID_ARGUMENT, "labels[1] is 3",
           "ember_mlp_accuracy(label 3 of 3 classes)");
    labels[1] = 2;
    expect(ember_mlp_accuracy(model, x, labels, 2, NULL), EMBER_STATUS_NULL_POINTER, "`accuracy_out` is NULL",
           "ember_mlp_accuracy(NULL out)");

    /* Files. */
    expect(ember_mlp_load(model, NULL), EMBER_STATUS_NULL_POINTER, "`path` is NULL", "ember_mlp_load(NULL path)");
    expect(ember_mlp_load(model, ""), EMBER_STATUS_INVALID_ARGUMENT, "`path` is empty", "ember_mlp_load(\"\")");
    snprintf(path, sizeof path, "%s/no-such-file.safetensors", dir);
    expect(ember_mlp_load(model, path), EMBER_STATUS_IO, "no such file", "ember_mlp_load(missing file)");
    expect(ember_mlp_load(model, "\xff\xfe.safetensors"), EMBER_STATUS_INVALID_ARGUMENT, "not UTF-8",
           "ember_mlp_load(path not UTF-8)");
    snprintf(path, sizeof path, "%s/corrupt.safetensors", dir);
    /* A header length of 2^40 bytes followed by garbage. */
    const unsigned char corrupt[16] = {0, 0, 0, 0, 0, 1, 0, 0, '{', '"', 'x', 0, 1, 2, 3, 4};
    write_file(path, corrupt, sizeof corrupt);
    expect(ember_mlp_load(model, path), EMBER_STATUS_FORMAT, "not a valid safetensors file",
           "ember_mlp_load(corrupt file)");
    snprintf(path, sizeof path, "%s/no-such-dir/model.safetensors", dir);
    expect(ember_mlp_save(model, path), EMBER_STATUS_IO, "no-such-dir", "ember_mlp_save(missing directory)");

    /* A file of another shape: saved from a 5-input network. */
    EmberMlp *other = NULL;
    EmberMlpConfig five = shape;
    five.input = 5;
    expect(ember_mlp_new(&five, &other), EMBER_STATUS_OK, "", "ember_mlp_new(5 inputs)");
    snprintf(path, sizeof path, "%s/five-inputs.safetensors", dir);
    expect(ember_mlp_save(other, path), EMBER_STATUS_OK, "", "ember_mlp_save(valid)");
    expect(ember_mlp_load(model, path), EMBER_STATUS_MISMATCH, "module expects [4, 8], file has [5, 8]",
           "ember_mlp_load(wrong shape)");

    /* Training. */
    EmberTrainConfig config;
    expect(ember_train_config_default(NULL), EMBER_STATUS_NULL_POINTER, "`config_out` is NULL",
           "ember_train_config_default(NULL)");
    expect(ember_train_config_default(&config), EMBER_STATUS_OK, "", "ember_train_config_default(valid)");
    EmberTrainer *trainer = NULL;
    EmberTrainConfig wrong = config;
    wrong.learning_rate = -1.0;
    expect(ember_trainer_new(model, &wrong, &trainer), EMBER_STATUS_INVALID_ARGUMENT, "learning_rate",
           "ember_trainer_new(negative lr)");
    wrong = config;
    wrong.trainable = 42;
    expect(ember_trainer_new(model, &wrong, &trainer), EMBER_STATUS_INVALID_ARGUMENT, "trainable is 42",
           "ember_trainer_new(unknown trainable)");
    expect(ember_trainer_new(NULL, &config, &trainer), EMBER_STATUS_NULL_POINTER, "`model` is NULL",
           "ember_trainer_new(NULL model)");
    expect(ember_trainer_new(model, &config, &trainer), EMBER_STATUS_OK, "", "ember_trainer_new(valid)");
    float loss;
    expect(ember_train_step(NULL, model, x, labels, 2, &loss), EMBER_STATUS_NULL_POINTER, "`trainer` is NULL",
           "ember_train_step(NULL trainer)");
    expect(ember_train_step(trainer, other, x, labels, 2, &loss), EMBER_STATUS_INVALID_ARGUMENT, "not the one",
           "ember_train_step(another model)");
    expect(ember_train_step(trainer, model, x, NULL, 2, &loss), EMBER_STATUS_NULL_POINTER, "`labels` is NULL",
           "ember_train_step(NULL labels)");
    labels[0] = -1;
    expect(ember_train_step(trainer, model, x, labels, 2, &loss), EMBER_STATUS_INVALID_ARGUMENT, "labels[0] is -1",
           "ember_train_step(label -1)");
    labels[0] = 0;
    x[0] = INFINITY;
    expect(ember_fit(trainer, model, x, labels, 2, NULL), EMBER_STATUS_NON_FINITE, "is inf",
           "ember_fit(infinite input)");
    x[0] = 0.1f;
    expect(ember_train_step(trainer, model, x, labels, 2, NULL), EMBER_STATUS_OK, "", "ember_train_step(valid)");

    ember_trainer_free(trainer);
    ember_mlp_free(other);
    ember_mlp_free(model);
    ember_mlp_free(NULL);
    ember_trainer_free(NULL);
    if (strcmp(ember_status_name(99), "EMBER_STATUS_UNKNOWN") != 0) {
        fprintf(stderr, "bad_input: ember_status_name(99) is %s\n", ember_status_name(99));
        return 1;
    }
    printf("bad_input: all %d checks gave the expected status and message\n", checks);
    return 0;
}
