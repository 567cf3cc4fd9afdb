/*
 * worker - the sanitizer's side of a sandboxed worker, shared by
 * `sekisho sanitize` (a forked worker) and sekisho-milter (spawned workers):
 * one message in through the worker's read-only input region, one packed
 * sanitize_result out through sandbox_reply().
 */
#ifndef SEKISHO_WORKER_H
#define SEKISHO_WORKER_H

#include "policy.h"
#include "quarantine.h"
#include "sandbox.h"
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

/* The quarantine's record of res, received at now and kept for pol's
 * retention_days: m's strings point into res, and *parts is allocated here
 * for the removed parts (the caller frees it; NULL when there are none).
 * 0, or -ENOMEM. */
int sanitize_quarantine_meta(const sanitize_result *res, const policy *pol, int64_t now,
                             quarantine_meta *m, quarantine_part **parts);

/* The hidden argument that makes `sekisho` or `sekisho-milter` a worker. */
#define SANITIZE_WORKER_ARG "--sekisho-sanitize-worker"

/*
 * Starts a sanitizer worker as a fresh program (posix_spawn of the running
 * binary, /proc/self/exe, with SANITIZE_WORKER_ARG): an exec keeps nothing of
 * the caller's memory, so the worker holds no writable mapping of the input
 * region nor of anything else the caller has open (the quarantine index's
 * shared memory), and no lock another thread held. The worker loads the
 * policy from policy_bytes (empty: the defaults), exactly as the caller did.
 * Limits follow the policy; recycle_after bounds the worker's CPU time.
 * With require_seccomp, no worker runs where the filter cannot be installed
 * (the milter); without, it runs with rlimits only and a warning (the CLI).
 * NULL (why says why) when it could not be started.
 */
sandbox_worker *sanitize_worker_spawn(const policy *pol, const uint8_t *policy_bytes, size_t n,
                                      uint64_t recycle_after, int require_seccomp,
                                      const char *argv0, buf *why);

/* main() of a worker (argv[1] == SANITIZE_WORKER_ARG): never returns. */
_Noreturn void sanitize_worker_main(const char *progname);

#endif
