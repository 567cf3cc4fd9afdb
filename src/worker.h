/*
 * worker - the sanitizer's side of a sandboxed worker, shared by
 * `sekisho sanitize` (a forked worker) and sekisho-milter (spawned workers):
 * one message in through the worker's read-only input region, one packed
 * sanitize_result out through sandbox_reply().
 */
#ifndef SEKISHO_WORKER_H
#define SEKISHO_WORKER_H

#include "policy.h"
#include "sanitize.h"

#include <stddef.h>
#include <stdint.h>

typedef struct sanitize_worker {
    sanitize_ctx *sc;
    uint64_t time_limit_ms;
    /* Fault injection for the tests: the worker aborts (or hangs) on a
     * message containing SEKISHO_TEST_WORKER_ABORT_ON (_HANG_ON), as it
     * would on a parser fault. NULL or "" when unset. */
    const char *fault, *hang;
} sanitize_worker;

/* Fills w for sc under pol's limits, reading the test markers from the
 * environment. */
void sanitize_worker_init(sanitize_worker *w, sanitize_ctx *sc, const policy *pol);

/* A sandbox_worker_fn: arg is a sanitize_worker. Returns 0, or non-zero
 * (the worker then ends) when the result cannot be packed or sent. */
int sanitize_worker_fn(void *arg, const uint8_t *in, size_t n, int fd);

#endif
