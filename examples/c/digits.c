/*
 * digits.c: fine-tune an MLP on the 8x8 digits through Ember's C API.
 *
 * Reads data/digits/train.csv and test.csv (64 pixels 0-16 and a label per
 * row), creates the network of `ember finetune --task digits`
 * (64-128-64-10, ReLU, dropout 0.1), trains it with AdamW for 20 epochs
 * (learning rate 5e-3 with warm-up and cosine decay, weight decay 0.01,
 * batch 32, clipping at 1.0), prints the test accuracy before and after,
 * saves the weights, loads them into a second network and checks that it
 * predicts the same. Then it fine-tunes only the last layer for one more
 * epoch and saves just that layer, the "adapter" of a head-only fine-tune.
 *
 * Exits 1 unless the test accuracy after training is at least 95 %.
 *
 *   usage: digits [DATA_DIR [OUT_DIR]]     (defaults: data/digits and .)
 *
 * Build and run with tools/capi-example.sh.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ember.h"

#define FEATURES 64
#define CLASSES 10
#define MIN_ACCURACY 0.95

typedef struct {
    float *x;
    int32_t *y;
    size_t n;
} Digits;

/* Prints the failed call and the library's message, and exits. */
static void check(EmberStatus status, const char *what) {
    if (status != EMBER_STATUS_OK) {
        fprintf(stderr, "digits: %s failed: %s: %s\n", what, ember_status_name(status), ember_last_error());
        exit(2);
    }
}

static int read_digits(const char *path, Digits *out) {
    FILE *f = fopen(path, "r");
    if (!f) {
        perror(path);
        return -1;
    }
    size_t cap = 2048;
    out->x = malloc(cap * FEATURES * sizeof(float));
    out->y = malloc(cap * sizeof(int32_t));
    out->n = 0;
    if (!out->x || !out->y) {
        fprintf(stderr, "%s: out of memory\n", path);
        fclose(f);
        return -1;
    }
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "p0", 2) == 0 || line[0] == '\n') {
            continue; /* header or blank line */
        }
        if (out->n == cap) {
            cap *= 2;
            float *x = realloc(out->x, cap * FEATURES * sizeof(float));
            int32_t *y = realloc(out->y, cap * sizeof(int32_t));
            if (!x || !y) {
                fprintf(stderr, "%s: out of memory\n", path);
                fclose(f);
                return -1;
            }
            out->x = x;
            out->y = y;
        }
        char *p = line;
        for (int i = 0; i <= FEATURES; i++) {
            char *end;
            long v = strtol(p, &end, 10);
            if (end == p) {
                fprintf(stderr, "%s: row %zu: expected 64 pixels and a label\n", path, out->n + 1);
                fclose(f);
                return -1;
            }
            if (i < FEATURES) {
                out->x[out->n * FEATURES + i] = (float)v / 16.0f;
            } else {
                out->y[out->n] = (int32_t)v;
            }
            p = (*end == ',') ? end + 1 : end;
        }
        out->n++;
    }
    fclose(f);
    return 0;
}

int main(int argc, char **argv) {
    const char *data = argc > 1 ? argv[1] : "data/digits";
    const char *out_dir = argc > 2 ? argv[2] : ".";
    char path[4096];

    Digits train, test;
    snprintf(path, sizeof path, "%s/train.csv", data);
    if (read_digits(path, &train) != 0) return 2;
    snprintf(path, sizeof path, "%s/test.csv", data);
    if (read_digits(path, &test) != 0) return 2;
    printf("ember %s: %zu training and %zu test images\n", ember_version(), train.n, test.n);

    const size_t hidden[] = {128, 64};
    EmberMlpConfig shape = {
        .input = FEATURES, .hidden = hidden, .hidden_len = 2, .classes = CLASSES, .dropout = 0.1f, .seed = 0,
    };
    EmberMlp *model = NULL;
    check(ember_mlp_new(&shape, &model), "ember_mlp_new");

    double before, after;
    check(ember_mlp_accuracy(model, test.x, test.y, test.n, &before), "ember_mlp_accuracy");

    EmberTrainConfig config;
    check(ember_train_config_default(&config), "ember_train_config_default");
    config.epochs = 20;
    EmberTrainer *trainer = NULL;
    check(ember_trainer_new(model, &config, &trainer), "ember_trainer_new");
    EmberFitReport report;
    check(ember_fit(trainer, model, train.x, train.y, train.n, &report), "ember_fit");
    check(ember_mlp_accuracy(model, test.x, test.y, test.n, &after), "ember_mlp_accuracy");
    printf("trained %llu steps (%llu skipped), last epoch: loss %.4f, training accuracy %.1f %%\n",
           (unsigned long long)report.steps, (unsigned long long)report.skipped_steps, report.final_loss,
           100.0 * report.final_accuracy);
    printf("test accuracy: %.1f %% before, %.1f %% after (%zu images)\n", 100.0 * before, 100.0 * after, test.n);

    /* Save, load into a fresh network, compare the logits. */
    snprintf(path, sizeof path, "%s/digits.safetensors", out_dir);
    check(ember_mlp_save(model, path), "ember_mlp_save");
    EmberMlp *copy = NULL;
    shape.seed = 1;
    check(ember_mlp_new(&shape, &copy), "ember_mlp_new");
    check(ember_mlp_load(copy, path), "ember_mlp_load");
    float a[CLASSES], b[CLASSES];
    check(ember_mlp_predict(model, test.x, 1, a, CLASSES), "ember_mlp_predict");
    check(ember_mlp_predict(copy, test.x, 1, b, CLASSES), "ember_mlp_predict");
    if (memcmp(a, b, sizeof a) != 0) {
        fprintf(stderr, "digits: the reloaded network predicts differently\n");
        return 1;
    }
    printf("saved %s and loaded it back: same logits\n", path);

    /* A head-only fine-tune of the copy: one epoch at a lower rate with a
     * constant schedule; only the last layer changes, and only it is saved. */
    EmberTrainConfig head = config;
    head.trainable = EMBER_TRAINABLE_HEAD;
    head.epochs = 1;
    head.learning_rate = 1e-3;
    head.schedule = EMBER_SCHEDULE_CONSTANT;
    EmberTrainer *head_trainer = NULL;
    check(ember_trainer_new(copy, &head, &head_trainer), "ember_trainer_new");
    float loss = 0.0f;
    check(ember_train_step(head_trainer, copy, train.x, train.y, 32, &loss), "ember_train_step");
    check(ember_fit(head_trainer, copy, train.x, train.y, train.n, &report), "ember_fit");
    double head_accuracy;
    check(ember_mlp_accuracy(copy, test.x, test.y, test.n, &head_accuracy), "ember_mlp_accuracy");
    snprintf(path, sizeof path, "%s/digits-head.safetensors", out_dir);
    check(ember_mlp_save_trainable(copy, path), "ember_mlp_save_trainable");
    printf("head-only fine-tune: first batch loss %.4f, test accuracy %.1f %%, wrote %s\n", loss, 100.0 * head_accuracy,
           path);

    ember_trainer_free(head_trainer);
    ember_trainer_free(trainer);
    ember_mlp_free(copy);
    ember_mlp_free(model);
    free(train.x);
    free(train.y);
    free(test.x);
    free(test.y);

    if (after < MIN_ACCURACY) {
        fprintf(stderr, "digits: test accuracy %.1f %% is below %.0f %%\n", 100.0 * after, 100.0 * MIN_ACCURACY);
        return 1;
    }
    return 0;
}
