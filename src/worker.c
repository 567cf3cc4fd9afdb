/*
 * worker - the sanitizer's side of a sandboxed worker. See worker.h.
 */
#include "worker.h"
#include "sandbox.h"
#include "util/buf.h"

#include <stdlib.h>
#include <string.h>
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
    /* The sanitizer checks its own deadline between parts; a parser that
     * never returns is ended by SIGALRM, and that message alone is held. */
    alarm((unsigned)(a->time_limit_ms / 1000 + 2));
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
    alarm(0);
    return rc == 0 ? 0 : 3;
}
