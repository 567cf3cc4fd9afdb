/*
 * worker - the sanitizer's side of a sandboxed worker. See worker.h.
 */
#include "worker.h"
#include "cli.h"
#include "sandbox.h"
#include "util/buf.h"
#include "util/msg.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

void sanitize_worker_init(sanitize_worker *w, sanitize_ctx *sc, const policy *pol)
{
    w->sc = sc;
    w->time_limit_ms = pol->mail.limits.time_limit_ms;
    w->fault = getenv("SEKISHO_TEST_WORKER_ABORT_ON");
    w->hang = getenv("SEKISHO_TEST_WORKER_HANG_ON");
}

int sanitize_worker_fn(void *arg, const uint8_t *in, size_t n, int fd)
{
    sanitize_worker *a = arg;
    if (a->fault && *a->fault && memmem(in, n, a->fault, strlen(a->fault)))
        abort();
    /* The sanitizer checks its own deadline (CPU time) between parts; a
     * parser that never returns is ended by SIGPROF after the limit + 2 s of
     * CPU time, and that message alone fails. CPU time, not the wall clock:
     * on a loaded machine a message must not fail for waiting its turn (the
     * caller's wall-clock backstop is far longer). */
    uint64_t ms = a->time_limit_ms + 2000;
    struct itimerval it = {
        .it_value = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000}};
    setitimer(ITIMER_PROF, &it, NULL);
    if (a->hang && *a->hang && memmem(in, n, a->hang, strlen(a->hang)))
        for (volatile int spin = 1; spin;)
            ;
    sanitize_result res;
    buf packed;
    buf_init(&packed, BUF_UNLIMITED);
    int rc = sanitize_message(a->sc, n ? in : (const uint8_t *)"", n, &res);
    if (rc == 0)
        rc = sanitize_result_pack(&res, &packed);
    sanitize_result_free(&res);
    if (rc == 0)
        rc = sandbox_reply(fd, packed.p, packed.len);
    buf_free(&packed);
    struct itimerval off = {0};
    setitimer(ITIMER_PROF, &off, NULL);
    return rc == 0 ? 0 : 3;
}

int sanitize_quarantine_meta(const sanitize_result *res, const policy *pol, int64_t now,
                             quarantine_meta *m, quarantine_part **parts)
{
    quarantine_part *qp = NULL;
    if (res->n_parts) {
        qp = calloc(res->n_parts, sizeof *qp);
        if (qp == NULL)
            return -ENOMEM;
        for (size_t i = 0; i < res->n_parts; i++) {
            const sanitize_part *sp = &res->parts[i];
            qp[i].filename = sp->filename;
            qp[i].declared_type = sp->declared_type;
            qp[i].detected_type = sp->info.detected;
            qp[i].size = sp->info.size;
            qp[i].sha256 = sp->analysed ? sp->info.sha256 : "";
        }
    }
    *parts = qp;
    *m = (quarantine_meta){
        .received = now,
        .from = res->from ? res->from : "",
        .to = res->to ? res->to : "",
        .subject = res->subject ? res->subject : "",
        .message_id = res->message_id ? res->message_id : "",
        .verdict = res->verdict == SANITIZE_OK ? "sanitized" : "rejected",
        .retain_until = now + (int64_t)pol->mail.retention_days * 86400,
        .parts = qp,
        .n_parts = res->n_parts,
    };
    return 0;
}

sandbox_worker *sanitize_worker_spawn(const policy *pol, const uint8_t *policy_bytes, size_t n,
                                      uint64_t recycle_after, int require_seccomp,
                                      const char *argv0, buf *why)
{
    const policy_mail_limits *lim = &pol->mail.limits;
    sandbox_limits sl = {
        .max_memory_bytes = 4 * lim->max_message_bytes + ((uint64_t)256 << 20),
        .cpu_seconds = (lim->time_limit_ms * recycle_after + 999) / 1000 + 60,
        .max_output_bytes = lim->max_text_bytes + ((uint64_t)8 << 20),
        .wall_ms = 30000, /* start-up */
        .require_seccomp = require_seccomp,
    };
    char *argv[] = {(char *)argv0, (char *)SANITIZE_WORKER_ARG, NULL};
    return sandbox_worker_spawn(&sl, (size_t)lim->max_message_bytes, NULL, argv, policy_bytes, n,
                                why);
}

_Noreturn void sanitize_worker_main(const char *progname)
{
    msg_set_progname(progname);
    buf init, why;
    buf_init(&init, (size_t)1 << 21);
    buf_init(&why, 1024);
    if (sandbox_worker_accept(&init, &why) != 0) {
        fprintf(stderr, "%s: %s (this argument is for sekisho itself)\n", progname, buf_cstr(&why));
        _exit(EXIT_USAGE);
    }
    policy *pol;
    if (init.len == 0) {
        pol = policy_default();
    } else {
        buf errs;
        buf_init(&errs, 1 << 16);
        pol = policy_load_mem("(the caller's policy)", init.p, init.len, &errs);
        if (pol == NULL) {
            fputs(buf_cstr(&errs), stderr);
            _exit(EXIT_CONFIG);
        }
        buf_free(&errs);
    }
    sanitize_ctx *sc = sanitize_new(pol);
    if (sc == NULL)
        _exit(EXIT_TEMPFAIL);
    static sanitize_worker arg;
    sanitize_worker_init(&arg, sc, pol);
    sandbox_preload();
    sandbox_worker_serve(sanitize_worker_fn, &arg);
}
