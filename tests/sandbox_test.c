/*
 * sandbox_test - the child can compute and write its result, and nothing
 * else: every forbidden act ends in a reported failure, the parent stays
 * healthy (no zombie, no leaked descriptor), and the real sanitizer runs
 * inside the allow-list.
 */
#include "sandbox.h"
#include "policy.h"
#include "sanitize.h"
#include "testutil.h"
#include "util/buf.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const sandbox_limits LIM = {
    .max_memory_bytes = 256u << 20,
    .cpu_seconds = 5,
    .wall_ms = 10000,
    .max_output_bytes = 8u << 20,
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    if (d == NULL)
        return -1;
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n;
}

/* ---- child functions ---- */

static int fn_hello(void *arg, int fd)
{
    return sandbox_write(fd, "hello, sandbox", 14);
}

static int fn_nothing(void *arg, int fd)
{
    return 0;
}

static int fn_big(void *arg, int fd)
{
    size_t n = *(const size_t *)arg;
    uint8_t *p = malloc(n);
    if (p == NULL)
        return 1;
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 7 + (i >> 13));
    int rc = sandbox_write(fd, p, n);
    free(p);
    return rc;
}

static int fn_fail(void *arg, int fd)
{
    return 3;
}

static int fn_open(void *arg, int fd)
{
    int f = open("/etc/passwd", O_RDONLY);
    char b[64];
    if (f >= 0) {
        ssize_t k = read(f, b, sizeof b);
        if (k > 0)
            sandbox_write(fd, b, (size_t)k);
    } else if (errno == EACCES) {
        sandbox_write(fd, "EACCES", 6);
    }
    return 0;
}

static int fn_socket(void *arg, int fd)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    return s >= 0 ? 0 : 2;
}

static int fn_exec(void *arg, int fd)
{
    char *argv[] = {(char *)"/bin/echo", (char *)"escaped", NULL};
    char *envp[] = {NULL};
    execve("/bin/echo", argv, envp);
    return 2;
}

static int fn_fork(void *arg, int fd)
{
    pid_t p = fork();
    if (p == 0)
        _exit(0);
    return p > 0 ? 0 : 2;
}

static int fn_kill_parent(void *arg, int fd)
{
    kill(getppid(), SIGTERM);
    return 0;
}

static int fn_spin(void *arg, int fd)
{
    volatile unsigned long x = 0;
    for (;;)
        x++;
    return 0;
}

static int fn_alloc(void *arg, int fd)
{
    /* 16 MiB blocks (mmap-backed in glibc and ASan alike), touched, up to 2 GiB. */
    enum { BLOCK = 16u << 20, MAXB = 128 };
    void *blocks[MAXB];
    int n = 0, rc = 0;
    for (; n < MAXB; n++) {
        blocks[n] = malloc(BLOCK);
        if (blocks[n] == NULL) {
            rc = 4; /* refused: the limit works */
            break;
        }
        memset(blocks[n], n, BLOCK);
    }
    for (int i = 0; i < n; i++)
        free(blocks[i]);
    return rc;
}

/* The parent's descriptor number that the child must not be able to use. */
static int parent_fd = -1;

static int fn_write_foreign(void *arg, int fd)
{
    ssize_t k = write(parent_fd, "x", 1);
    char r[32];
    int n = snprintf(r, sizeof r, "%zd %d", k, k < 0 ? errno : 0);
    sandbox_write(fd, r, (size_t)n);
    return 0;
}

static int fn_dup(void *arg, int fd)
{
    int d = dup(fd);
    if (d >= 0)
        sandbox_write(d, "dup", 3);
    return 0;
}

static int fn_abort(void *arg, int fd)
{
    abort();
}

static int *volatile null_ptr;

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

static int fn_segv(void *arg, int fd)
{
    *null_ptr = 42;
    return 0;
}

static int fn_g_warning(void *arg, int fd)
{
    g_warning("sandbox_test: a warning from inside the sandbox (expected)");
    return sandbox_write(fd, "ok", 2);
}

/* ---- helpers ---- */

static int run(const sandbox_limits *lim, sandbox_fn fn, void *arg, buf *out, buf *why)
{
    buf_reset(out);
    buf_reset(why);
    return sandbox_run(lim, fn, arg, out, why);
}

static void test_round_trip(buf *out, buf *why)
{
    CHECK_INT(run(&LIM, fn_hello, NULL, out, why), 0);
    CHECK_STR(buf_cstr(out), "hello, sandbox");

    CHECK_INT(run(&LIM, fn_nothing, NULL, out, why), 0);
    CHECK_INT(out->len, 0);

    size_t n = 5u << 20;
    CHECK_INT(run(&LIM, fn_big, &n, out, why), 0);
    CHECK_INT(out->len, n);
    int same = out->len == n;
    for (size_t i = 0; same && i < n; i++)
        same = out->p[i] == (uint8_t)(i * 7 + (i >> 13));
    CHECK(same);

    CHECK_INT(run(&LIM, fn_fail, NULL, out, why), -ECHILD);
    CHECK_HAS(buf_cstr(why), "exited with status 1");
}

static void test_output_limit(buf *out, buf *why)
{
    sandbox_limits lim = LIM;
    lim.max_output_bytes = 1u << 20;
    size_t n = 3u << 20;
    CHECK_INT(run(&lim, fn_big, &n, out, why), -EMSGSIZE);
    CHECK(out->len <= lim.max_output_bytes);
    CHECK_HAS(buf_cstr(why), "output passed");

    /* exactly at the limit is fine */
    n = 1u << 20;
    CHECK_INT(run(&lim, fn_big, &n, out, why), 0);
    CHECK_INT(out->len, n);

    /* the out buffer's own max counts too */
    buf small;
    buf_init(&small, 1000);
    n = 5000;
    CHECK_INT(sandbox_run(&LIM, fn_big, &n, &small, why), -EMSGSIZE);
    buf_free(&small);
}

static void test_forbidden(buf *out, buf *why)
{
    /* opening a file fails (EACCES), it does not kill: nothing is read */
    CHECK_INT(run(&LIM, fn_open, NULL, out, why), 0);
    CHECK_STR(buf_cstr(out), "EACCES");

    CHECK_INT(run(&LIM, fn_socket, NULL, out, why), -EPERM);
    CHECK_HAS(buf_cstr(why), "SIGSYS");

    CHECK_INT(run(&LIM, fn_exec, NULL, out, why), -EPERM);
    CHECK_HAS(buf_cstr(why), "SIGSYS");
    CHECK(strstr(buf_cstr(out), "escaped") == NULL);

    CHECK_INT(run(&LIM, fn_fork, NULL, out, why), -EPERM);
    CHECK_HAS(buf_cstr(why), "SIGSYS");

    CHECK_INT(run(&LIM, fn_kill_parent, NULL, out, why), -EPERM);

    CHECK_INT(run(&LIM, fn_dup, NULL, out, why), -EPERM);
    CHECK_INT(out->len, 0);

    /* A descriptor the parent holds: writing to its number is a violation. */
    int nul = open("/dev/null", O_WRONLY);
    parent_fd = fcntl(nul, F_DUPFD, 50);
    close(nul);
    CHECK(parent_fd >= 50);
    CHECK_INT(run(&LIM, fn_write_foreign, NULL, out, why), -EPERM);
    CHECK_INT(out->len, 0);
}

static void test_time(buf *out, buf *why)
{
    sandbox_limits lim = LIM;
    lim.wall_ms = 300;
    int64_t t0 = now_ms();
    CHECK_INT(run(&lim, fn_spin, NULL, out, why), -ETIMEDOUT);
    int64_t dt = now_ms() - t0;
    CHECK(dt >= 290 && dt < 3000);
    CHECK_HAS(buf_cstr(why), "wall-time limit of 300 ms");

    /* The CPU limit stops a spinning child even with no wall limit. */
    lim.wall_ms = 0;
    lim.cpu_seconds = 1;
    t0 = now_ms();
    CHECK_INT(run(&lim, fn_spin, NULL, out, why), -ETIMEDOUT);
    dt = now_ms() - t0;
    CHECK(dt < 10000);
    CHECK_HAS(buf_cstr(why), "CPU time limit");
}

static void test_memory(buf *out, buf *why)
{
    sandbox_limits lim = LIM;
    lim.max_memory_bytes = 64u << 20;
    int rc = run(&lim, fn_alloc, NULL, out, why);
    CHECK(rc < 0);
    if (rc >= 0)
        fprintf(stderr, "memory: rc %d (%s)\n", rc, buf_cstr(why));
    /* either malloc failed (exit 1) or the runtime died of it */
    CHECK(why->len > 0);

    /* the same work fits in a generous limit */
    lim.max_memory_bytes = 0;
    lim.cpu_seconds = 20;
    lim.wall_ms = 60000;
    CHECK_INT(run(&lim, fn_alloc, NULL, out, why), 0);
}

static void test_crash(buf *out, buf *why)
{
    int rc;
    (void)rc;
    sandbox_preload(); /* GLib's time zone and charset for the log line */
    CHECK_INT(run(&LIM, fn_abort, NULL, out, why), -ECHILD);
    CHECK_HAS(buf_cstr(why), "SIGABRT");

#ifdef UNDER_ASAN
    /* Under ASan+UBSan the sanitizer runtime catches the fault first, and its
     * report (symbolizing: fork/exec, /proc reads) is refused by the filter:
     * the child dies either of the fault or of the refusal. Both are reported
     * failures with the parent unharmed, which is what this checks here; the
     * normal build checks the exact signal. */
    rc = run(&LIM, fn_segv, NULL, out, why);
    CHECK(rc == -ECHILD || rc == -EPERM);
    CHECK(strstr(buf_cstr(why), "SIGSEGV") || strstr(buf_cstr(why), "SIGSYS") ||
          strstr(buf_cstr(why), "exited with status"));
#else
    CHECK_INT(run(&LIM, fn_segv, NULL, out, why), -ECHILD);
    CHECK_HAS(buf_cstr(why), "SIGSEGV");
#endif

    /* GLib's log writer probes the terminal (ioctl): not a violation */
    CHECK_INT(run(&LIM, fn_g_warning, NULL, out, why), 0);
    CHECK_STR(buf_cstr(out), "ok");
}

static int fn_stderr(void *arg, int fd)
{
    fputs("sandbox_test: a line on stderr from the child (expected)\n", stderr);
    return sandbox_write(fd, "ok", 2);
}

/* stderr on a regular file (a log): FSIZE=0 must not kill the child. */
static void test_stderr_file(buf *out, buf *why)
{
    char tmpl[] = "/tmp/sandbox_test_stderr_XXXXXX";
    int log = mkstemp(tmpl);
    CHECK(log >= 0);
    if (log < 0)
        return;
    unlink(tmpl);
    (void)!write(log, "earlier log lines\n", 18);
    fflush(stderr);
    int saved = dup(2);
    dup2(log, 2);
    int rc1 = run(&LIM, fn_stderr, NULL, out, why);
    int rc2 = run(&LIM, fn_g_warning, NULL, out, why);
    dup2(saved, 2);
    close(saved);
    close(log);
    CHECK_INT(rc1, 0);
    CHECK_INT(rc2, 0);
    CHECK_STR(buf_cstr(out), "ok");
}

static void test_debug_mode(buf *out, buf *why)
{
    /* keep the mode on when the whole test runs under it (to find syscalls) */
    int was_on = getenv("SEKISHO_SANDBOX_DEBUG") != NULL;
    setenv("SEKISHO_SANDBOX_DEBUG", "1", 1);
    CHECK_INT(run(&LIM, fn_socket, NULL, out, why), -EPERM);
    CHECK_HAS(buf_cstr(why), "debug mode");
    CHECK_HAS(buf_cstr(why), "socket");
    CHECK_INT(run(&LIM, fn_hello, NULL, out, why), 0);
    if (!was_on)
        unsetenv("SEKISHO_SANDBOX_DEBUG");
}

static void test_without_seccomp(buf *out, buf *why)
{
    setenv("SEKISHO_SANDBOX_NO_SECCOMP", "1", 1);
    sandbox_limits lim = LIM;
    lim.require_seccomp = 1;
    CHECK_INT(run(&lim, fn_hello, NULL, out, why), -EOPNOTSUPP);
    CHECK_HAS(buf_cstr(why), "seccomp is required");
    CHECK_INT(out->len, 0);

    /* degraded (warned once): the descriptors are still closed */
    CHECK_INT(run(&LIM, fn_write_foreign, NULL, out, why), 0);
    char expect[32];
    snprintf(expect, sizeof expect, "-1 %d", EBADF);
    CHECK_STR(buf_cstr(out), expect);
    CHECK_HAS(buf_cstr(why), "without seccomp");
    unsetenv("SEKISHO_SANDBOX_NO_SECCOMP");

    /* with seccomp the flag is satisfied */
    CHECK_INT(run(&lim, fn_hello, NULL, out, why), 0);
    CHECK_STR(buf_cstr(why), "exited 0");
}

/* ---- the real sanitizer inside ---- */

static const char MAIL[] =
    "From: Yamada <yamada@example.jp>\r\n"
    "To: soumu@city.example.lg.jp\r\n"
    "Subject: =?ISO-2022-JP?B?GyRCJDMkcyRLJEEkTxsoQg==?=\r\n"
    "Message-ID: <sb-1@example.jp>\r\n"
    "Date: Mon, 23 Nov 2026 09:00:00 +0900\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=\"b1\"\r\n"
    "\r\n"
    "--b1\r\n"
    "Content-Type: text/html; charset=ISO-2022-JP\r\n"
    "Content-Transfer-Encoding: 7bit\r\n"
    "\r\n"
    "<html><body><p>\x1b$B$3$s$K$A$O!\"@$3&\x1b(B</p>"
    "<p>Report: <a href=\"http://evil.example.com/x\">click</a></p></body></html>\r\n"
    "--b1\r\n"
    "Content-Type: application/pdf; name=\"report.pdf\"\r\n"
    "Content-Disposition: attachment; filename=\"report.pdf\"\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "JVBERi0xLjQKMSAwIG9iajw8Pj5lbmRvYmoKdHJhaWxlcjw8Pj4KJSVFT0YK\r\n"
    "--b1--\r\n";

struct sanitize_job {
    sanitize_ctx *ctx;
    const uint8_t *p;
    size_t n;
};

static int fn_sanitize(void *arg, int fd)
{
    struct sanitize_job *j = arg;
    sanitize_result res;
    memset(&res, 0, sizeof res);
    int rc = sanitize_message(j->ctx, j->p, j->n, &res);
    if (rc == 0 && res.verdict == SANITIZE_OK)
        rc = sandbox_write(fd, res.text.p ? (const void *)res.text.p : "", res.text.len);
    else if (rc == 0)
        rc = 5;
    sanitize_result_free(&res);
    return rc;
}

static void test_sanitize_inside(buf *out, buf *why)
{
    policy *pol = policy_default();
    sanitize_ctx *ctx = sanitize_new(pol);
    CHECK(ctx != NULL);
    CHECK_INT(sandbox_preload(), 0);
    if (ctx == NULL) {
        policy_free(pol);
        return;
    }
    struct sanitize_job j = {ctx, (const uint8_t *)MAIL, sizeof MAIL - 1};
    int rc = run(&LIM, fn_sanitize, &j, out, why);
    CHECK_INT(rc, 0);
    if (rc != 0)
        fprintf(stderr, "sanitize in the sandbox: %s\n", buf_cstr(why));
    CHECK_HAS(buf_cstr(out), "こんにちは、世界");
    CHECK_HAS(buf_cstr(out), "report.pdf");

    /* The same in the parent gives the same text. */
    sanitize_result res;
    memset(&res, 0, sizeof res);
    CHECK_INT(sanitize_message(ctx, j.p, j.n, &res), 0);
    CHECK_INT(res.text.len, out->len);
    CHECK(res.text.len == out->len && memcmp(res.text.p, out->p, out->len) == 0);
    sanitize_result_free(&res);

    /* And again, to be sure nothing depended on a first-use side effect. */
    CHECK_INT(run(&LIM, fn_sanitize, &j, out, why), 0);

    /* Lazy loads found on real mail: a Latin-1 encoded word (gconv module)
     * and a zip attachment (libarchive calls mktime per entry: the zone file). */
    static const char latin1[] = "From: =?ISO-8859-1?Q?Andr=E9?= <a@example.fr>\r\n"
                                 "Subject: =?iso-8859-1?q?caf=E9?=\r\n"
                                 "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nhi\r\n";
    struct sanitize_job l1 = {ctx, (const uint8_t *)latin1, sizeof latin1 - 1};
    CHECK_INT(run(&LIM, fn_sanitize, &l1, out, why), 0);
    const char *src = getenv("SEKISHO_SRCDIR"); /* set by meson test */
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/corpus/composed/attach-ppap-zip.eml", src ? src : ".");
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL || src == NULL);
    if (f != NULL) {
        static uint8_t zipmail[1 << 20];
        size_t n = fread(zipmail, 1, sizeof zipmail, f);
        fclose(f);
        struct sanitize_job z = {ctx, zipmail, n};
        rc = run(&LIM, fn_sanitize, &z, out, why);
        CHECK_INT(rc, 0);
        if (rc != 0)
            fprintf(stderr, "zip mail in the sandbox: %s\n", buf_cstr(why));
        CHECK_HAS(buf_cstr(out), ".zip");
    }
    sanitize_free(ctx);
    policy_free(pol);
}

static void test_no_leaks(buf *out, buf *why)
{
    int before = count_fds();
    int ok = 1;
    for (int i = 0; i < 200; i++) {
        if (run(&LIM, i % 2 ? fn_hello : fn_socket, NULL, out, why) != (i % 2 ? 0 : -EPERM))
            ok = 0;
    }
    CHECK(ok);
    CHECK_INT(count_fds(), before);
}

/* ---- persistent workers ---- */

/* Echoes the input reversed; special inputs misbehave on purpose. */
static int wfn(void *arg, const uint8_t *in, size_t n, int fd)
{
    if (arg != NULL && n == 4 && memcmp(in, "init", 4) == 0) {
        const buf *init = arg; /* a spawned worker's init bytes */
        return sandbox_reply(fd, init->p, init->len) ? 1 : 0;
    }
    if (n > 6 && n < 16 && memcmp(in, "close ", 6) == 0) {
        /* is descriptor N open in here? (close is allowed, fcntl is not) */
        char num[16];
        memcpy(num, in + 6, n - 6);
        num[n - 6] = 0;
        int r = close(atoi(num));
        char msg[64];
        int k = snprintf(msg, sizeof msg, "close %d errno %d", r, r ? errno : 0);
        return sandbox_reply(fd, msg, (size_t)k) ? 1 : 0;
    }
    if (n == 5 && memcmp(in, "abort", 5) == 0)
        abort();
    if (n == 4 && memcmp(in, "hang", 4) == 0)
        for (volatile int spin = 1; spin;)
            ;
    if (n == 5 && memcmp(in, "write", 5) == 0) {
        /* the region is read-only, and cannot be made writable */
        uintptr_t page = (uintptr_t)in & ~(uintptr_t)4095;
        int r = mprotect((void *)page, 4096, PROT_READ | PROT_WRITE);
        char msg[64];
        int k = snprintf(msg, sizeof msg, "mprotect %d errno %d", r, r ? errno : 0);
        if (sandbox_reply(fd, msg, (size_t)k) != 0)
            return 1;
        return 0;
    }
    if (n == 6 && memcmp(in, "scribb", 6) == 0)
        *(volatile uint8_t *)in = 'X'; /* SIGSEGV */
    if (n == 3 && memcmp(in, "bye", 3) == 0)
        return sandbox_reply(fd, "ok", 2) ? 1 : 7; /* answers, then ends */
    if (n == 3 && memcmp(in, "big", 3) == 0) {
        static uint8_t big[1 << 16];
        return sandbox_reply(fd, big, sizeof big) ? 1 : 0;
    }
    if (n == 4 && memcmp(in, "open", 4) == 0) {
        int ofd = open("/etc/passwd", O_RDONLY);
        char msg[64];
        int k = snprintf(msg, sizeof msg, "open %d errno %d", ofd, ofd < 0 ? errno : 0);
        return sandbox_reply(fd, msg, (size_t)k) ? 1 : 0;
    }
    uint8_t rev[256];
    if (n > sizeof rev)
        n = sizeof rev;
    for (size_t i = 0; i < n; i++)
        rev[i] = in[n - 1 - i];
    return sandbox_reply(fd, rev, n) ? 1 : 0;
}

static int wcall(sandbox_worker **w, const char *in, uint64_t timeout_ms, buf *out, buf *why)
{
    size_t cap = 0;
    uint8_t *p = sandbox_worker_input(*w, &cap);
    size_t n = strlen(in);
    if (p == NULL || n > cap)
        return -EINVAL;
    memcpy(p, in, n);
    buf_reset(out);
    buf_reset(why);
    return sandbox_worker_call(*w, n, timeout_ms, out, why);
}

static void test_worker(buf *out, buf *why)
{
    sandbox_limits lim = {.max_memory_bytes = 256u << 20, .max_output_bytes = 4096};
    int fds_before = count_fds();
    sandbox_worker *w = sandbox_worker_start(&lim, 1 << 20, wfn, NULL, why);
    CHECK(w != NULL);
    if (w == NULL) {
        fprintf(stderr, "%s\n", buf_cstr(why));
        return;
    }
    /* many requests, one process */
    char in[32], want[32];
    int bad = 0;
    for (int i = 0; i < 500; i++) {
        snprintf(in, sizeof in, "request %d", i);
        size_t n = strlen(in);
        for (size_t k = 0; k < n; k++)
            want[k] = in[n - 1 - k];
        want[n] = 0;
        if (wcall(&w, in, 5000, out, why) != 0 || strcmp(buf_cstr(out), want) != 0)
            bad++;
    }
    CHECK_INT(bad, 0);
    CHECK_INT(sandbox_worker_calls(w), 500);
    /* the input region cannot be made writable in the worker */
    CHECK_INT(wcall(&w, "write", 5000, out, why), 0);
    char expect[64];
    snprintf(expect, sizeof expect, "mprotect -1 errno %d", EACCES);
    CHECK_STR(buf_cstr(out), expect);
    /* open fails inside (EACCES), the worker lives on */
    CHECK_INT(wcall(&w, "open", 5000, out, why), 0);
    snprintf(expect, sizeof expect, "open -1 errno %d", EACCES);
    CHECK_STR(buf_cstr(out), expect);
    /* writing to the region kills the worker; the caller learns it */
    CHECK_INT(wcall(&w, "scribb", 5000, out, why), -ECHILD);
    CHECK(!sandbox_worker_alive(w));
    CHECK_HAS(buf_cstr(why), "SIGSEGV");
    /* the caller can still read the region (it stores the original from it) */
    CHECK(memcmp(sandbox_worker_input(w, NULL), "scribb", 6) == 0);
    CHECK_INT(wcall(&w, "ok", 5000, out, why), -ECHILD);
    CHECK_HAS(buf_cstr(why), "ended");
    CHECK_INT(sandbox_worker_stop(w, why), 0);

    w = sandbox_worker_start(&lim, 1 << 20, wfn, NULL, why);
    CHECK(w != NULL);
    if (w == NULL)
        return;
    CHECK_INT(wcall(&w, "abort", 5000, out, why), -ECHILD);
    CHECK(!sandbox_worker_alive(w));
    CHECK_HAS(buf_cstr(why), "SIGABRT");
    sandbox_worker_stop(w, why);

    w = sandbox_worker_start(&lim, 1 << 20, wfn, NULL, why);
    CHECK(w != NULL);
    if (w == NULL)
        return;
    CHECK_INT(wcall(&w, "hang", 300, out, why), -ETIMEDOUT);
    CHECK(!sandbox_worker_alive(w));
    CHECK_HAS(buf_cstr(why), "300 ms");
    sandbox_worker_stop(w, why);

    w = sandbox_worker_start(&lim, 1 << 20, wfn, NULL, why);
    CHECK(w != NULL);
    if (w == NULL)
        return;
    CHECK_INT(wcall(&w, "big", 5000, out, why), -EMSGSIZE);
    CHECK(!sandbox_worker_alive(w));
    sandbox_worker_stop(w, why);

    w = sandbox_worker_start(&lim, 1 << 20, wfn, NULL, why);
    CHECK(w != NULL);
    if (w == NULL)
        return;
    /* a worker that ends between calls is noticed before the next message */
    CHECK_INT(wcall(&w, "bye", 5000, out, why), 0);
    CHECK_STR(buf_cstr(out), "ok");
    int alive = 1;
    for (int i = 0; i < 200 && (alive = sandbox_worker_alive(w)); i++)
        usleep(10000);
    CHECK_INT(alive, 0);
    sandbox_worker_stop(w, why);

    w = sandbox_worker_start(&lim, 1 << 20, wfn, NULL, why);
    CHECK(w != NULL);
    if (w == NULL)
        return;
    CHECK_INT(wcall(&w, "ok", 5000, out, why), 0);
    CHECK(sandbox_worker_alive(w));
    CHECK_STR(buf_cstr(out), "ko");
    buf_reset(why);
    CHECK_INT(sandbox_worker_stop(w, why), 0);
    CHECK_INT(sandbox_worker_stop(NULL, why), 0);
    /* nothing left behind */
    CHECK_INT(count_fds(), fds_before);
}

/* ---- spawned workers ---- */

#define SPAWN_ARG "--spawned-test-worker"

/* This program, started by sandbox_worker_spawn() with SPAWN_ARG. */
static _Noreturn void spawned_main(void)
{
    static buf init, why;
    buf_init(&init, 1 << 20);
    buf_init(&why, 1024);
    if (sandbox_worker_accept(&init, &why) != 0) {
        fprintf(stderr, "spawned worker: %s\n", buf_cstr(&why));
        _exit(9);
    }
    sandbox_preload();
    if (init.len == 4 && memcmp(init.p, "fail", 4) == 0)
        _exit(7); /* a program that cannot initialise itself */
    sandbox_worker_serve(wfn, &init);
}

static const char *self_exe;

static sandbox_worker *spawn(const sandbox_limits *lim, const char *init, buf *why)
{
    char *argv[] = {(char *)"sandbox_test", (char *)SPAWN_ARG, NULL};
    buf_reset(why);
    return sandbox_worker_spawn(lim, 1 << 20, self_exe, argv, init, init ? strlen(init) : 0, why);
}

static volatile int churn_stop;

/* Another thread that allocates and logs all the time: a fork() from this
 * process could copy a held malloc or GLib lock; a spawn cannot. */
static void *churn(void *unused)
{
    while (!churn_stop) {
        void *p = g_malloc(1000);
        g_free(p);
    }
    return unused;
}

static void test_spawned(buf *out, buf *why)
{
    sandbox_limits lim = {.max_memory_bytes = 256u << 20, .max_output_bytes = 4096};
    int fds_before = count_fds();
    /* a descriptor the parent leaves open without O_CLOEXEC */
    int dn = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int leaked = dn < 0 ? -1 : fcntl(dn, F_DUPFD, 20);
    if (dn >= 0)
        close(dn);
    CHECK(leaked >= 20);
    sandbox_worker *w = spawn(&lim, "policy bytes: 関所", why);
    CHECK(w != NULL);
    if (w == NULL) {
        fprintf(stderr, "spawn: %s\n", buf_cstr(why));
        close(leaked);
        return;
    }
    CHECK(sandbox_worker_alive(w));
    /* the init bytes arrived */
    CHECK_INT(wcall(&w, "init", 5000, out, why), 0);
    CHECK_STR(buf_cstr(out), "policy bytes: 関所");
    /* many requests, one process */
    char in[32], want[32];
    int bad = 0;
    for (int i = 0; i < 500; i++) {
        snprintf(in, sizeof in, "request %d", i);
        size_t n = strlen(in);
        for (size_t k = 0; k < n; k++)
            want[k] = in[n - 1 - k];
        want[n] = 0;
        if (wcall(&w, in, 5000, out, why) != 0 || strcmp(buf_cstr(out), want) != 0)
            bad++;
    }
    CHECK_INT(bad, 0);
    CHECK_INT(sandbox_worker_calls(w), 501);
    /* nothing of the parent's is open in the worker: not the leaked
     * descriptor, not the region's or the diagnostics page's (4, 5) */
    char req[32], expect[64];
    snprintf(expect, sizeof expect, "close -1 errno %d", EBADF);
    int fds[] = {leaked, 4, 5, 0, 1};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++) {
        snprintf(req, sizeof req, "close %d", fds[i]);
        CHECK_INT(wcall(&w, req, 5000, out, why), 0);
        CHECK_STR(buf_cstr(out), expect);
    }
    close(leaked);
    /* the input region cannot be made writable; open fails; the worker lives on */
    CHECK_INT(wcall(&w, "write", 5000, out, why), 0);
    snprintf(expect, sizeof expect, "mprotect -1 errno %d", EACCES);
    CHECK_STR(buf_cstr(out), expect);
    CHECK_INT(wcall(&w, "open", 5000, out, why), 0);
    snprintf(expect, sizeof expect, "open -1 errno %d", EACCES);
    CHECK_STR(buf_cstr(out), expect);
    /* writing to the region kills it; the caller still reads the region */
    CHECK_INT(wcall(&w, "scribb", 5000, out, why), -ECHILD);
    CHECK(!sandbox_worker_alive(w));
    CHECK_HAS(buf_cstr(why), "SIGSEGV");
    CHECK(memcmp(sandbox_worker_input(w, NULL), "scribb", 6) == 0);
    CHECK_INT(sandbox_worker_stop(w, why), 0);

    /* a crash, a hang, a reply too big, a forbidden syscall (socket: SIGSYS) */
    w = spawn(&lim, NULL, why);
    CHECK(w != NULL);
    if (w == NULL)
        return;
    CHECK_INT(wcall(&w, "abort", 5000, out, why), -ECHILD);
    CHECK_HAS(buf_cstr(why), "SIGABRT");
    sandbox_worker_stop(w, why);
    w = spawn(&lim, NULL, why);
    CHECK(w != NULL);
    if (w == NULL)
        return;
    int64_t t0 = now_ms();
    CHECK_INT(wcall(&w, "hang", 300, out, why), -ETIMEDOUT);
    CHECK(now_ms() - t0 < 3000);
    CHECK(!sandbox_worker_alive(w));
    CHECK_HAS(buf_cstr(why), "300 ms");
    sandbox_worker_stop(w, why);
    w = spawn(&lim, NULL, why);
    CHECK(w != NULL);
    if (w == NULL)
        return;
    CHECK_INT(wcall(&w, "big", 5000, out, why), -EMSGSIZE);
    CHECK(!sandbox_worker_alive(w));
    sandbox_worker_stop(w, why);

    /* a program that fails before serving: NULL and the reason */
    w = spawn(&lim, "fail", why);
    CHECK(w == NULL);
    CHECK_HAS(buf_cstr(why), "exited with status 7");
    sandbox_worker_stop(w, why);
    /* a program that does not exist */
    char *argv[] = {(char *)"nothing", NULL};
    buf_reset(why);
    w = sandbox_worker_spawn(&lim, 4096, "/nonexistent/sekisho", argv, NULL, 0, why);
    CHECK(w == NULL);
    CHECK_INT(errno, ENOENT);
    CHECK_HAS(buf_cstr(why), "posix_spawn");
    /* a program that never accepts (not ours): it is killed after wall_ms */
    sandbox_limits quick = lim;
    quick.wall_ms = 500;
    char *sleeper[] = {(char *)"sleep", (char *)"30", NULL};
    buf_reset(why);
    t0 = now_ms();
    w = sandbox_worker_spawn(&quick, 4096, "/bin/sleep", sleeper, NULL, 0, why);
    CHECK(w == NULL);
    CHECK(now_ms() - t0 < 5000);
    CHECK_HAS(buf_cstr(why), "500 ms");

    /* spawning while another thread allocates all the time */
    pthread_t th;
    churn_stop = 0;
    int started = pthread_create(&th, NULL, churn, NULL) == 0;
    CHECK(started);
    int ok = 0;
    for (int i = 0; i < 10; i++) {
        w = spawn(&lim, NULL, why);
        if (w && wcall(&w, "abc", 5000, out, why) == 0 && strcmp(buf_cstr(out), "cba") == 0)
            ok++;
        buf_reset(why);
        if (sandbox_worker_stop(w, why) != 0)
            ok--;
    }
    CHECK_INT(ok, 10);
    churn_stop = 1;
    if (started)
        pthread_join(th, NULL);
    /* nothing left behind */
    CHECK_INT(count_fds(), fds_before);
}

/* A writable shared mapping of the caller (the quarantine index's -shm file,
 * a worker's input region as the caller maps it) must not be writable from
 * a forked child: the child unmaps it before the lock-down. */
static volatile uint8_t *caller_shared;

static int fn_write_caller_shared(void *arg, int fd)
{
    (void)arg;
    caller_shared[0] = 'X';
    return sandbox_write(fd, "wrote", 5) ? 1 : 0;
}

static int wfn_write_caller_shared(void *arg, const uint8_t *in, size_t n, int fd)
{
    (void)arg;
    (void)in;
    (void)n;
    caller_shared[0] = 'X';
    return sandbox_reply(fd, "wrote", 5) ? 1 : 0;
}

static void test_caller_shared_not_writable(buf *out, buf *why)
{
    void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED);
    if (m == MAP_FAILED)
        return;
    caller_shared = m;
    caller_shared[0] = 'a';
    buf_reset(out);
    buf_reset(why);
    CHECK_INT(run(&LIM, fn_write_caller_shared, NULL, out, why), -ECHILD);
    CHECK_HAS(buf_cstr(why), "SIGSEGV");
    CHECK(caller_shared[0] == 'a');

    sandbox_limits lim = {.max_memory_bytes = 256u << 20, .max_output_bytes = 4096};
    sandbox_worker *w = sandbox_worker_start(&lim, 4096, wfn_write_caller_shared, NULL, why);
    CHECK(w != NULL);
    if (w != NULL) {
        buf_reset(why);
        CHECK_INT(sandbox_worker_call(w, 0, 5000, out, why), -ECHILD);
        CHECK_HAS(buf_cstr(why), "SIGSEGV");
        sandbox_worker_stop(w, why);
    }
    CHECK(caller_shared[0] == 'a');
    munmap(m, 4096);
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], SPAWN_ARG) == 0)
        spawned_main();
    self_exe = argv[0];
    buf out, why;
    buf_init(&out, BUF_UNLIMITED);
    buf_init(&why, 4096);

    CHECK(sandbox_available());
    if (!sandbox_available()) {
        fprintf(stderr, "seccomp is not available here: the violation tests cannot run\n");
        TEST_DONE();
    }
    test_round_trip(&out, &why);
    test_output_limit(&out, &why);
    test_forbidden(&out, &why);
    test_time(&out, &why);
    test_memory(&out, &why);
    test_crash(&out, &why);
    test_stderr_file(&out, &why);
    test_debug_mode(&out, &why);
    test_without_seccomp(&out, &why);
    test_sanitize_inside(&out, &why);
    test_no_leaks(&out, &why);
    test_worker(&out, &why);
    test_caller_shared_not_writable(&out, &why);
    test_spawned(&out, &why);

    if (parent_fd >= 0)
        close(parent_fd);
    /* no zombie on any path */
    errno = 0;
    CHECK_INT(waitpid(-1, NULL, WNOHANG), -1);
    CHECK_INT(errno, ECHILD);

    buf_free(&out);
    buf_free(&why);
    TEST_DONE();
}
