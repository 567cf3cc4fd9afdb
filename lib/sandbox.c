/*
 * sandbox - untrusted bytes are parsed in a process that can do nothing else.
 *
 * PURPOSE
 *   sandbox_run() forks; the child locks itself down and runs the caller's
 *   function over memory it inherited (the message is read before the fork),
 *   writing its result into a pipe. The parent reads that pipe under a wall
 *   clock and a byte limit, reaps the child and says in words what happened.
 *   sandbox_worker_start() forks a child locked down the same way that
 *   answers requests until it is stopped: the input is put into a shared
 *   region the child maps read-only (from a descriptor opened O_RDONLY
 *   through /proc, so mprotect() cannot make it writable; the mapping is made
 *   before the lock-down and the descriptor closed), the request and the
 *   reply (length-prefixed) cross one socketpair on fd 3. The CLI runs one
 *   worker for a whole run (recycled every 1000 messages), the milter a pool.
 *   sandbox_worker_spawn() starts the same kind of worker as a fresh program
 *   instead of a fork (a multi-threaded caller such as the milter must not
 *   fork: a lock another thread holds stays held in the child): posix_spawn
 *   of the caller's own binary (/proc/self/exe) with an argument of the
 *   caller's choosing, the socket, the read-only region and a diagnostics
 *   page (a memfd: mappings do not survive exec) on fixed descriptors 3, 4
 *   and 5. The program recognises its argument, calls
 *   sandbox_worker_accept() (which closes every other inherited descriptor
 *   and reads the limits and the caller's init bytes, e.g. the policy, from
 *   the socket), initialises its libraries, calls sandbox_preload() and then
 *   sandbox_worker_serve(), which runs child_main() below: the very same
 *   lock-down, then the same request loop after one "ready" word, which
 *   sandbox_worker_spawn() waits for. sandbox_worker_call/alive/stop do not
 *   know which kind they drive. The caller stays the parent and reaps.
 *
 * CONTRACT
 *   0 only when the child exited 0 and its output fit; every other outcome
 *   is a negative errno (see sandbox.h) and the caller fails closed (the
 *   message is not released; TEMPFAIL). The result bytes come from a process
 *   that parsed hostile input: the caller treats them as untrusted too. The
 *   shared page the child fills in for diagnostics is read only after the
 *   child was reaped and only as integers. No zombie, no descriptor and no
 *   mapping outlives a call, on any path.
 *
 * THE CHILD, IN ORDER
 *   1. every signal back to SIG_DFL and unblocked (the caller's handlers,
 *      an ignored SIGPIPE, ASan's SEGV handler do not belong in the child:
 *      a crash is reported as the signal that caused it); GLib's log handler
 *      replaced (below); TZ pinned so that glibc reads the zone file once;
 *   2. a worker's input region mapped read-only; the result pipe (a worker:
 *      its socket) moved to fd 3, every other descriptor closed, 0 and 1
 *      included (only 2, stderr, stays for diagnostics);
 *   3. rlimits: AS = inherited address space + a worker's region +
 *      max_memory_bytes (so callers
 *      need not know how much ICU and the libraries map), CPU = cpu_seconds
 *      (hard = soft + 1: SIGXCPU, then SIGKILL), FSIZE = 0 (SIGXFSZ
 *      ignored: when stderr is a regular file, the child's diagnostics fail
 *      with EFBIG and are lost instead of killing it; debug mode leaves
 *      FSIZE alone so that its report reaches a log file), CORE = 0,
 *      NOFILE = 4, NPROC = 0 (no effect for root, which seccomp covers);
 *   4. PR_SET_DUMPABLE 0 (no ptrace or /proc/pid/mem by the same uid),
 *      PR_SET_NO_NEW_PRIVS 1;
 *   5. the seccomp filter below; if it cannot be installed and the caller set
 *      require_seccomp, the child exits before fn runs;
 *   6. fn(arg, 3), then _exit(): no atexit handlers, no stdio flush of the
 *      parent's buffers and no LeakSanitizer pass (LSan stops the world with
 *      clone and ptrace, which the filter forbids).
 *
 * THE ALLOW-LIST (default action SCMP_ACT_KILL_PROCESS: the child dies with
 * SIGSYS; a syscall of a foreign ABI (x32, i386 via int 0x80) is killed too)
 *   write      only fd 3 (the result) and fd 2 (stderr): argument filter.
 *   read       only fd 3: a worker's requests (a one-shot child's fd 3 is the
 *              write end of a pipe, so there is nothing to read there).
 *   writev     only fd 2: glibc's fatal messages ("malloc(): corrupted ...").
 *   mmap, mprotect   only without PROT_EXEC (masked compare on the prot
 *              argument): malloc and ICU need anonymous memory, never new
 *              code; the parsers' code is mapped before the fork. A page can
 *              be made writable, but then it is no longer executable: no
 *              W+X, no new code (pkey_mprotect is denied). mremap, munmap,
 *              brk, madvise: the rest of the allocator's needs.
 *   futex      GLib's and ICU's mutexes and once-initialisers.
 *   clock_gettime, clock_getres, gettimeofday, time   the parser's own time
 *              limit (g_get_monotonic_time); normally vDSO, but the vDSO falls
 *              back to the syscall for some clock sources.
 *   getrandom  GLib's hash seeds and GHashTable; reveals nothing.
 *   close      harmless; libraries close what they no longer need.
 *   getpid, gettid, rt_sigprocmask, tgkill (only to this process and only
 *              SIGABRT: the filter is built in the child and knows its pid)
 *              so that abort() and a failed assertion die as SIGABRT, not as
 *              an allow-list violation.
 *   exit, exit_group, rt_sigreturn, restart_syscall, sched_yield.
 *   alarm, setitimer   a caller's per-item time limit inside the child: the
 *              default SIGALRM or SIGPROF action ends the child, which the parent reports.
 *   open, openat   not allowed, but fail with EACCES instead of killing: a
 *              lazy load (an iconv module for a charset a header names,
 *              beyond those sandbox_preload() loads) degrades instead of
 *              leaving the message in TEMPFAIL for ever.
 *   ioctl, getpeername   not allowed, but fail (ENOTTY, ENOTSOCK) instead
 *              of killing: GLib's log writer probes stderr for a terminal or
 *              journald; a warning must not turn into a crash. (The child
 *              also replaces GLib's default log handler with a plain one,
 *              because the default one stamps local time: stat/open of
 *              /etc/localtime.)
 *   Denied, so killed: creat/openat2/stat of paths, read of any other
 *   descriptor (the input is in memory), socket/connect/bind/sendto,
 *   execve/execveat, fork/vfork/clone/clone3, ptrace, kill (other than the
 *   one tgkill above), dup/dup2/dup3/fcntl, pipe, mknod, chdir, chroot,
 *   mount, prctl, seccomp, bpf, io_uring, AIO, rt_sigaction (the handlers
 *   stay as step 1 left them).
 *
 * DEBUGGING: SEKISHO_SANDBOX_DEBUG=1 makes the default action SCMP_ACT_TRAP.
 *   A SIGSYS handler prints "sandbox: denied syscall N" to stderr, counts it
 *   in the shared page and makes the syscall fail with ENOSYS, so one run
 *   lists every syscall a new code path needs (name: scmp_sys_resolver N, or
 *   the status text, which names the first). The denied syscall never runs,
 *   and a run with any denial still fails (-EPERM): fail closed here too.
 *
 * LAZY LOADING: a library that opens a file on first use (OpenSSL's config,
 *   glibc's gconv modules and time zone, GLib's charset, libmagic's database,
 *   ICU data) must have done so before the fork, or the child dies. The
 *   caller initialises its libraries, then calls sandbox_preload() once for
 *   the lazy loads we know of (see sandbox.h); SEKISHO_SANDBOX_DEBUG=1 and
 *   strace -f find new ones.
 *
 * SANITIZER BUILDS (the block marked SB_ASAN): ASan maps terabytes of shadow
 *   before main(); RLIMIT_AS counts from what was inherited, so it still
 *   works, but ASan's primary allocator carves small blocks out of a region
 *   reserved at start-up, so only large (mmap-backed) allocations count
 *   against the limit. The one extra syscall ASan needs in the child is in
 *   that block. Its error reports open /proc/self/maps and stat the
 *   symbolizer, which stay denied: a report from the child is cut short by
 *   SIGSYS (the child dies either way; rerun the input outside the sandbox
 *   to read it). LSan does not run in the child (step 6).
 *
 * LIMITS AND CAVEATS
 *   Fork from a single-threaded process (sandbox.h). The filter checks
 *   integer arguments only: it cannot see the bytes a pointer points to. The
 *   wall clock is the parent's; RLIMIT_CPU catches a child that spins while
 *   the parent waits. If seccomp is unavailable the child still gets the
 *   rlimits, closed descriptors and NO_NEW_PRIVS, and sandbox_run() says so
 *   once with msg_warn(); require_seccomp makes that a failure instead.
 */
#include "sandbox.h"
#include "util/fileio.h"
#include "util/msg.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <iconv.h>
#include <limits.h>
#include <poll.h>
#include <seccomp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include <openssl/crypto.h>

#if defined(__SANITIZE_ADDRESS__)
#define SB_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SB_ASAN 1
#endif
#endif

#define SB_RESULT_FD      3
#define SB_NOFILE         4
#define SB_EXIT_FAIL      1   /* fn returned non-zero */
#define SB_EXIT_SETUP     120 /* a lock-down step failed; stage in the shared page */
#define SB_EXIT_NOSECCOMP 121 /* seccomp could not be installed and is required */

enum sb_stage {
    SB_STAGE_NONE = 0,
    SB_STAGE_SIGNALS,
    SB_STAGE_FDS,
    SB_STAGE_RLIMIT,
    SB_STAGE_PRCTL,
    SB_STAGE_FILTER,
    SB_STAGE_LOAD,
};

static const char *const stage_names[] = {
    "",
    "signals",
    "closing descriptors",
    "rlimits",
    "prctl",
    "building the seccomp filter",
    "installing the seccomp filter",
};

/* Written by the child, read by the parent after reaping: untrusted integers. */
struct sb_shared {
    int stage;      /* enum sb_stage that failed */
    int err;        /* its errno */
    int seccomp_on; /* the filter was installed */
    int denied;     /* debug mode: syscalls denied */
    int first_nr;   /* debug mode: the first one */
};

static atomic_int avail_cache = -1;
static atomic_int warned_unavailable;

static int env_is_1(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && strcmp(v, "1") == 0;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static pid_t reap(pid_t pid, int *status)
{
    pid_t w;
    do
        w = waitpid(pid, status, 0);
    while (w < 0 && errno == EINTR);
    return w;
}

int sandbox_write(int fd, const void *p, size_t n)
{
    return fileio_write_all(fd, p, n);
}

/* ---- the child ---------------------------------------------------------- */

static struct sb_shared *volatile dbg_shared;

static _Noreturn void child_fail(struct sb_shared *sh, enum sb_stage stage, int err, int code)
{
    sh->stage = stage;
    sh->err = err;
    _exit(code);
}

/* Debug mode only: report, count, and fail the syscall with ENOSYS. */
static void debug_sigsys(int sig, siginfo_t *si, void *ucv)
{
    int saved = errno;
    int nr = si->si_syscall;
    char line[64] = "sandbox: denied syscall ";
    size_t at = strlen(line);
    char digits[16];
    size_t nd = 0;
    unsigned v = nr < 0 ? 0u : (unsigned)nr;
    do {
        digits[nd++] = (char)('0' + v % 10);
        v /= 10;
    } while (v && nd < sizeof digits);
    while (nd)
        line[at++] = digits[--nd];
    line[at++] = '\n';
    ssize_t ignored = write(2, line, at);
    (void)ignored;
    struct sb_shared *sh = dbg_shared;
    if (sh != NULL && sh->denied++ == 0)
        sh->first_nr = nr;
    ucontext_t *uc = ucv;
#if defined(__x86_64__)
    uc->uc_mcontext.gregs[REG_RAX] = -ENOSYS;
#elif defined(__aarch64__)
    uc->uc_mcontext.regs[0] = (unsigned long long)(long long)-ENOSYS;
#else
    (void)uc;
#endif
    (void)sig;
    errno = saved;
}

/* GLib's default log writer stamps local time (a stat of /etc/localtime) and
 * probes the terminal: inside the sandbox a g_warning() from a library would
 * be a violation. The child logs through this instead: plain, to fd 2. */
static void child_log(const gchar *domain, GLogLevelFlags level, const gchar *message,
                      gpointer unused)
{
    const char *lv = (level & G_LOG_LEVEL_ERROR)      ? "error"
                     : (level & G_LOG_LEVEL_CRITICAL) ? "critical"
                     : (level & G_LOG_LEVEL_WARNING)  ? "warning"
                     : (level & G_LOG_LEVEL_MESSAGE)  ? "message"
                                                      : "info";
    if (level & (G_LOG_LEVEL_INFO | G_LOG_LEVEL_DEBUG))
        return;
    char line[1024];
    int n = snprintf(line, sizeof line, "%s: sandbox: %s%s%s: %s\n", msg_progname(),
                     domain ? domain : "", domain ? " " : "", lv, message ? message : "");
    if (n > 0)
        (void)sandbox_write(2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
    (void)unused;
}

static struct scmp_arg_cmp arg_cmp(unsigned arg, enum scmp_compare op, uint64_t a, uint64_t b)
{
    struct scmp_arg_cmp c = {.arg = arg, .op = op, .datum_a = a, .datum_b = b};
    return c;
}

static int allow(scmp_filter_ctx f, int nr)
{
    return seccomp_rule_add_array(f, SCMP_ACT_ALLOW, nr, 0, NULL);
}

static int allow_if(scmp_filter_ctx f, int nr, struct scmp_arg_cmp c)
{
    return seccomp_rule_add_array(f, SCMP_ACT_ALLOW, nr, 1, &c);
}

/* Builds the allow-list described at the top of this file. */
static scmp_filter_ctx build_filter(int debug)
{
    uint32_t deny = debug ? SCMP_ACT_TRAP : SCMP_ACT_KILL_PROCESS;
    scmp_filter_ctx f = seccomp_init(deny);
    if (f == NULL)
        return NULL;
    int rc = 0;
    rc = rc ? rc : seccomp_attr_set(f, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
    rc = rc ? rc : seccomp_attr_set(f, SCMP_FLTATR_CTL_NNP, 1);

    rc = rc ? rc : allow_if(f, SCMP_SYS(write), arg_cmp(0, SCMP_CMP_EQ, SB_RESULT_FD, 0));
    /* a worker's requests arrive on the same socket (a one-shot child's fd 3
     * is the write end of a pipe: nothing to read there) */
    rc = rc ? rc : allow_if(f, SCMP_SYS(read), arg_cmp(0, SCMP_CMP_EQ, SB_RESULT_FD, 0));
    rc = rc ? rc : allow_if(f, SCMP_SYS(write), arg_cmp(0, SCMP_CMP_EQ, 2, 0));
    rc = rc ? rc : allow_if(f, SCMP_SYS(writev), arg_cmp(0, SCMP_CMP_EQ, 2, 0));

    rc = rc ? rc : allow_if(f, SCMP_SYS(mmap), arg_cmp(2, SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
    rc = rc ? rc : allow_if(f, SCMP_SYS(mprotect), arg_cmp(2, SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
    /* Allowed without conditions; why each is here: see the top of this file. */
    static const int plain[] = {
        SCMP_SYS(munmap),
        SCMP_SYS(mremap),
        SCMP_SYS(brk),
        SCMP_SYS(madvise),
        SCMP_SYS(futex),
        SCMP_SYS(clock_gettime),
        SCMP_SYS(clock_getres),
        SCMP_SYS(gettimeofday),
#ifdef __NR_time
        SCMP_SYS(time),
#endif
        SCMP_SYS(getrandom),
        SCMP_SYS(close),
        SCMP_SYS(getpid),
        SCMP_SYS(gettid),
        SCMP_SYS(rt_sigprocmask),
        SCMP_SYS(exit),
        SCMP_SYS(exit_group),
        SCMP_SYS(rt_sigreturn),
        SCMP_SYS(restart_syscall),
        SCMP_SYS(sched_yield),
        /* a per-item time limit inside the child (its SIGALRM or SIGPROF ends it) */
        SCMP_SYS(alarm),
        SCMP_SYS(setitimer),
    };
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++)
        rc = rc ? rc : allow(f, plain[i]);
    struct scmp_arg_cmp self_abort[2] = {
        arg_cmp(0, SCMP_CMP_EQ, (uint64_t)getpid(), 0),
        arg_cmp(2, SCMP_CMP_EQ, SIGABRT, 0),
    };
    rc = rc ? rc : seccomp_rule_add_array(f, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 2, self_abort);

    /* Opening a file fails instead of killing: a library that loads
     * something lazily (GMime asks iconv for a charset module the first time
     * a header names that charset; sandbox_preload() covers the common ones)
     * then sees "permission denied" and degrades, and the message is not
     * stuck in TEMPFAIL. Nothing can be opened either way. */
    rc = rc ? rc : seccomp_rule_add_array(f, SCMP_ACT_ERRNO(EACCES), SCMP_SYS(openat), 0, NULL);
    rc = rc ? rc : seccomp_rule_add_array(f, SCMP_ACT_ERRNO(EACCES), SCMP_SYS(open), 0, NULL);
    rc = rc ? rc : seccomp_rule_add_array(f, SCMP_ACT_ERRNO(ENOTTY), SCMP_SYS(ioctl), 0, NULL);
    rc = rc ? rc
            : seccomp_rule_add_array(f, SCMP_ACT_ERRNO(ENOTSOCK), SCMP_SYS(getpeername), 0, NULL);

#ifdef SB_ASAN
    /* Sanitizer builds only (found with SEKISHO_SANDBOX_DEBUG=1 under
     * -Db_sanitize=address,undefined): the ASan runtime calls sigaltstack on
     * its way out of every child (without it each child dies of SIGSYS at
     * _exit). Nothing else: ASan's error reports want /proc/self/maps and
     * stat() the symbolizer, which stay denied, so a report from a child is
     * cut short by SIGSYS (the child dies either way). */
    rc = rc ? rc : allow(f, SCMP_SYS(sigaltstack));
#endif
    if (rc != 0) {
        seccomp_release(f);
        errno = rc < 0 ? -rc : EINVAL;
        return NULL;
    }
    return f;
}

/* Address space already mapped (what the child inherited), in bytes; 0 if unknown. */
static uint64_t inherited_vm_bytes(void)
{
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    char t[128];
    ssize_t k = read(fd, t, sizeof t - 1);
    close(fd);
    if (k <= 0)
        return 0;
    t[k] = 0;
    unsigned long long pages = strtoull(t, NULL, 10);
    long ps = sysconf(_SC_PAGESIZE);
    return ps > 0 ? (uint64_t)pages * (uint64_t)ps : 0;
}

static int set_limit(int res, uint64_t soft, uint64_t hard)
{
    struct rlimit rl = {.rlim_cur = (rlim_t)soft, .rlim_max = (rlim_t)hard};
    struct rlimit old;
    /* Never raise a hard limit the caller already had below ours. */
    if (getrlimit(res, &old) == 0 && old.rlim_max != RLIM_INFINITY) {
        if (rl.rlim_max > old.rlim_max)
            rl.rlim_max = old.rlim_max;
        if (rl.rlim_cur > rl.rlim_max)
            rl.rlim_cur = rl.rlim_max;
    }
    return setrlimit(res, &rl);
}

static void close_from(unsigned lowfd)
{
    if (syscall(SYS_close_range, lowfd, ~0u, 0u) == 0)
        return;
    struct rlimit rl;
    long hi = 65536;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < 1048576)
        hi = (long)rl.rlim_cur;
    for (long fd = lowfd; fd < hi; fd++)
        close((int)fd);
}

/* In a child, before the lock-down: unmaps every writable shared mapping it
 * inherited except the diagnostics page keep, so that nothing the caller
 * shares with the kernel or other processes can be written from here.
 * Reads /proc/self/maps with plain syscalls (no stdio in a fork child). */
static int drop_shared_writable(const void *keep)
{
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    /* collect first: unmapping while reading would shift the file */
    enum { MAXR = 256 };
    static uintptr_t lo[MAXR], hi[MAXR];
    size_t nr = 0;
    char chunk[4096], line[512];
    size_t ll = 0;
    int overflow = 0;
    ssize_t k;
    while ((k = read(fd, chunk, sizeof chunk)) > 0) {
        for (ssize_t i = 0; i < k; i++) {
            if (chunk[i] != '\n') {
                if (ll < sizeof line - 1)
                    line[ll++] = chunk[i];
                continue;
            }
            line[ll] = 0;
            ll = 0;
            /* "start-end perms ..." with perms like "rw-s" */
            char *dash = strchr(line, '-'), *sp = strchr(line, ' ');
            if (dash == NULL || sp == NULL || dash > sp || strlen(sp) < 5)
                continue;
            if (sp[2] != 'w' || sp[4] != 's')
                continue;
            uintptr_t a = (uintptr_t)strtoull(line, NULL, 16);
            uintptr_t b = (uintptr_t)strtoull(dash + 1, NULL, 16);
            if (a == (uintptr_t)keep)
                continue;
            if (nr == MAXR) {
                overflow = 1;
                continue;
            }
            lo[nr] = a;
            hi[nr] = b;
            nr++;
        }
    }
    close(fd);
    if (k < 0 || overflow) {
        errno = k < 0 ? errno : E2BIG;
        return -1;
    }
    for (size_t i = 0; i < nr; i++)
        if (munmap((void *)lo[i], hi[i] - lo[i]) != 0)
            return -1;
    return 0;
}

/* A worker's view of its shared input region (read-only; set in the child). */
static const uint8_t *child_shared;
static size_t child_shared_len;

static _Noreturn void child_main(const sandbox_limits *lim, sandbox_fn fn, void *arg, int rfd,
                                 int wfd, int shared_fd, size_t shared_len, struct sb_shared *sh,
                                 int use_seccomp, int debug)
{
    /* 1. signals */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    for (int s = 1; s < NSIG; s++)
        if (s != SIGKILL && s != SIGSTOP)
            sigaction(s, &dfl, NULL); /* glibc-internal signals fail with EINVAL: fine */
    /* FSIZE is 0: a write to a stderr that is a regular file (a log) must
     * fail with EFBIG, not kill the child with SIGXFSZ. */
    signal(SIGXFSZ, SIG_IGN);
    sigset_t none;
    sigemptyset(&none);
    if (sigprocmask(SIG_SETMASK, &none, NULL) != 0)
        child_fail(sh, SB_STAGE_SIGNALS, errno, SB_EXIT_SETUP);

    g_log_set_default_handler(child_log, NULL);
    /* glibc's mktime() and localtime() re-stat /etc/localtime on every call
     * while TZ is unset (libarchive's zip reader calls mktime per entry); with
     * TZ naming the same file they read it once, here, before the filter. */
    if (getenv("TZ") == NULL)
        setenv("TZ", ":/etc/localtime", 0);
    tzset();

    /* 2. descriptors (the address-space size is read while /proc can still be opened);
     * a worker maps its input region from a read-only descriptor, so that
     * not even mprotect() can make it writable, and keeps no descriptor of it.
     * A fork inherits the caller's writable shared mappings (a worker's input
     * region as the caller maps it, an SQLite index's -shm file): they go. */
    if (drop_shared_writable(sh) != 0)
        child_fail(sh, SB_STAGE_FDS, errno, SB_EXIT_SETUP);
    uint64_t vm = lim->max_memory_bytes ? inherited_vm_bytes() : 0;
    if (shared_fd >= 0) {
        void *m = mmap(NULL, shared_len, PROT_READ, MAP_SHARED, shared_fd, 0);
        if (m == MAP_FAILED)
            child_fail(sh, SB_STAGE_FDS, errno, SB_EXIT_SETUP);
        close(shared_fd);
        child_shared = m;
        child_shared_len = shared_len;
    }
    if (rfd >= 0)
        close(rfd);
    if (wfd != SB_RESULT_FD) {
        if (dup2(wfd, SB_RESULT_FD) < 0)
            child_fail(sh, SB_STAGE_FDS, errno, SB_EXIT_SETUP);
        if (wfd < SB_RESULT_FD)
            close(wfd);
    }
    close_from(SB_RESULT_FD + 1);
    if (wfd != 0)
        close(0);
    if (wfd != 1)
        close(1);

    /* 3. rlimits */
    int bad = 0;
    if (lim->max_memory_bytes) {
        uint64_t as = vm + shared_len + lim->max_memory_bytes;
        if (as < vm)
            as = UINT64_MAX;
        bad |= set_limit(RLIMIT_AS, as, as);
    }
    if (lim->cpu_seconds)
        bad |= set_limit(RLIMIT_CPU, lim->cpu_seconds, lim->cpu_seconds + 1);
    if (!debug) /* debug mode: let its report reach a log file */
        bad |= set_limit(RLIMIT_FSIZE, 0, 0);
    bad |= set_limit(RLIMIT_CORE, 0, 0);
    bad |= set_limit(RLIMIT_NOFILE, SB_NOFILE, SB_NOFILE);
    set_limit(RLIMIT_NPROC, 0, 0); /* "where possible": ignored for root anyway */
    if (bad)
        child_fail(sh, SB_STAGE_RLIMIT, errno, SB_EXIT_SETUP);

    /* 4. prctl */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        child_fail(sh, SB_STAGE_PRCTL, errno, SB_EXIT_SETUP);

    /* 5. seccomp */
    if (use_seccomp) {
        if (debug) {
            struct sigaction sa;
            memset(&sa, 0, sizeof sa);
            sa.sa_sigaction = debug_sigsys;
            sa.sa_flags = SA_SIGINFO;
            sigemptyset(&sa.sa_mask);
            dbg_shared = sh;
            if (sigaction(SIGSYS, &sa, NULL) != 0)
                child_fail(sh, SB_STAGE_SIGNALS, errno, SB_EXIT_SETUP);
        }
        scmp_filter_ctx f = build_filter(debug);
        if (f == NULL)
            child_fail(sh, SB_STAGE_FILTER, errno,
                       lim->require_seccomp ? SB_EXIT_NOSECCOMP : SB_EXIT_SETUP);
        int rc = seccomp_load(f);
        /* The context is not released: freeing it would only touch memory
         * that dies with the child. */
        if (rc != 0) {
            if (lim->require_seccomp)
                child_fail(sh, SB_STAGE_LOAD, -rc, SB_EXIT_NOSECCOMP);
            sh->stage = SB_STAGE_LOAD; /* reported, but not fatal */
            sh->err = -rc;
        } else {
            sh->seccomp_on = 1;
        }
    } else if (lim->require_seccomp) {
        child_fail(sh, SB_STAGE_LOAD, ENOSYS, SB_EXIT_NOSECCOMP);
    }

    /* 6. the work */
    int r = fn(arg, SB_RESULT_FD);
    if (debug && sh->denied > 0)
        _exit(SB_EXIT_FAIL);
    _exit(r == 0 ? 0 : SB_EXIT_FAIL);
}

/* ---- preloading ---------------------------------------------------------- */

/* Charsets seen in RFC 2047 words of mail reaching Japanese offices, by the
 * names GMime hands to iconv_open(). The Japanese ones first. */
static const char *const preload_charsets[] = {
    "ISO-2022-JP", "ISO-2022-JP-2", "SHIFT_JIS",  "CP932",       "EUC-JP",      "EUC-KR",
    "ISO-2022-KR", "GB2312",        "GBK",        "GB18030",     "BIG5",        "BIG5-HKSCS",
    "ISO-8859-1",  "ISO-8859-2",    "ISO-8859-3", "ISO-8859-4",  "ISO-8859-5",  "ISO-8859-6",
    "ISO-8859-7",  "ISO-8859-8",    "ISO-8859-9", "ISO-8859-10", "ISO-8859-13", "ISO-8859-14",
    "ISO-8859-15", "ISO-8859-16",   "CP1250",     "CP1251",      "CP1252",      "CP1253",
    "CP1254",      "CP1255",        "CP1256",     "CP1257",      "CP1258",      "KOI8-R",
    "KOI8-U",      "TIS-620",       "UTF-7",      "UTF-16",      "UTF-32",
};

static iconv_t preloaded[sizeof preload_charsets / sizeof preload_charsets[0]];
static atomic_int preload_done;
static atomic_int preload_missing;

int sandbox_preload(void)
{
    if (atomic_exchange(&preload_done, 1))
        return atomic_load(&preload_missing);
    OPENSSL_init_crypto(OPENSSL_INIT_LOAD_CONFIG, NULL);
    tzset();
    g_time_zone_unref(g_time_zone_new_local());
    const char *cs = NULL;
    (void)g_get_charset(&cs);
    int missing = 0;
    for (size_t i = 0; i < sizeof preload_charsets / sizeof preload_charsets[0]; i++) {
        preloaded[i] = iconv_open("UTF-8", preload_charsets[i]);
        if (preloaded[i] == (iconv_t)-1)
            missing++;
    }
    atomic_store(&preload_missing, missing);
    return missing;
}

/* ---- availability ------------------------------------------------------- */

/* 1 available, 0 not, -1 unknown (the probe itself could not run: not
 * cached, so that a transient fork failure does not switch seccomp off for
 * the life of the process). */
static int probe_seccomp(void)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
            _exit(1);
        scmp_filter_ctx f = seccomp_init(SCMP_ACT_ALLOW);
        if (f == NULL)
            _exit(1);
        if (seccomp_rule_add_array(f, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ptrace), 0, NULL) != 0)
            _exit(1);
        _exit(seccomp_load(f) == 0 ? 0 : 1);
    }
    int st = 0;
    if (reap(pid, &st) != pid)
        return -1;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

int sandbox_available(void)
{
    if (env_is_1("SEKISHO_SANDBOX_NO_SECCOMP"))
        return 0;
    int v = atomic_load(&avail_cache);
    if (v < 0) {
        v = probe_seccomp();
        if (v < 0)
            return 0; /* not known now: no seccomp for this child, ask again next time */
        atomic_store(&avail_cache, v);
    }
    return v;
}

/* ---- the parent --------------------------------------------------------- */

static void say(buf *status_text, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(buf *status_text, const char *fmt, ...)
{
    if (status_text == NULL)
        return;
    buf_reset(status_text);
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(status_text, fmt, ap);
    va_end(ap);
}

static const char *sig_name(int sig, char *tmp, size_t n)
{
    const char *abbr = sigabbrev_np(sig);
    if (abbr != NULL)
        snprintf(tmp, n, "SIG%s", abbr);
    else
        snprintf(tmp, n, "signal %d", sig);
    return tmp;
}

/* Turns the child's end into a return code and a sentence. */
static int judge(const sandbox_limits *lim, int st, const struct sb_shared *sh, int debug,
                 buf *status_text)
{
    /* Copy the untrusted page once, then only compare integers. */
    struct sb_shared s = *sh;
    if (s.denied > 0) {
        char *name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, s.first_nr);
        say(status_text, "seccomp violation (debug mode): denied syscall %d (%s), %d denial%s",
            s.first_nr, name ? name : "?", s.denied, s.denied == 1 ? "" : "s");
        free(name);
        return -EPERM;
    }
    if (WIFEXITED(st)) {
        int code = WEXITSTATUS(st);
        int stage = s.stage > SB_STAGE_NONE && s.stage <= SB_STAGE_LOAD ? s.stage : 0;
        if (code == 0) {
            if (stage == SB_STAGE_LOAD) {
                say(status_text, "exited 0 (without seccomp: %s)", strerror(s.err));
                if (atomic_exchange(&warned_unavailable, 1) == 0)
                    msg_warn("sandbox: the seccomp filter could not be installed (%s); "
                             "untrusted input is parsed with rlimits and closed descriptors only",
                             strerror(s.err));
            } else
                say(status_text, "exited 0%s", s.seccomp_on ? "" : " (without seccomp)");
            return 0;
        }
        if (code == SB_EXIT_NOSECCOMP && stage) {
            say(status_text, "seccomp is required but could not be installed (%s: %s); not run",
                stage_names[stage], strerror(s.err));
            return -EOPNOTSUPP;
        }
        if (code == SB_EXIT_SETUP && stage) {
            say(status_text, "could not enter the sandbox (%s: %s)", stage_names[stage],
                strerror(s.err));
            return -ECHILD;
        }
        say(status_text, "exited with status %d", code);
        return -ECHILD;
    }
    if (WIFSIGNALED(st)) {
        char tmp[32];
        int sig = WTERMSIG(st);
        if (sig == SIGSYS) {
            say(status_text, "killed by SIGSYS (seccomp violation)%s",
                debug ? "" : "; rerun with SEKISHO_SANDBOX_DEBUG=1 to name the syscall");
            return -EPERM;
        }
        if (sig == SIGXCPU) {
            say(status_text, "CPU time limit of %llu s exceeded (SIGXCPU)",
                (unsigned long long)lim->cpu_seconds);
            return -ETIMEDOUT;
        }
        say(status_text, "killed by %s", sig_name(sig, tmp, sizeof tmp));
        return -ECHILD;
    }
    say(status_text, "ended with wait status 0x%x", (unsigned)st);
    return -ECHILD;
}

int sandbox_run(const sandbox_limits *lim, sandbox_fn fn, void *arg, buf *out, buf *status_text)
{
    static const sandbox_limits none;
    if (lim == NULL)
        lim = &none;
    int debug = env_is_1("SEKISHO_SANDBOX_DEBUG");
    int use_seccomp = sandbox_available();
    if (!use_seccomp) {
        if (lim->require_seccomp) {
            say(status_text, "seccomp is required but not available here; not run");
            return -EOPNOTSUPP;
        }
        if (atomic_exchange(&warned_unavailable, 1) == 0)
            msg_warn("sandbox: seccomp is not available; untrusted input is parsed with "
                     "rlimits and closed descriptors only");
    }

    struct sb_shared *sh =
        mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) {
        int e = errno;
        say(status_text, "mmap: %s", strerror(e));
        return -e;
    }
    memset(sh, 0, sizeof *sh);
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        int e = errno;
        munmap(sh, sizeof *sh);
        say(status_text, "pipe: %s", strerror(e));
        return -e;
    }
    int64_t deadline =
        now_ms() + (int64_t)(lim->wall_ms > INT64_MAX / 4 ? INT64_MAX / 4 : lim->wall_ms);
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(p[0]);
        close(p[1]);
        munmap(sh, sizeof *sh);
        say(status_text, "fork: %s", strerror(e));
        return -e;
    }
    if (pid == 0)
        child_main(lim, fn, arg, p[0], p[1], -1, 0, sh, use_seccomp, debug);
    close(p[1]);

    /* Read the result until EOF, then wait for the exit; both under the deadline. */
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0u);
    uint64_t limit = lim->max_output_bytes ? lim->max_output_bytes : UINT64_MAX;
    uint64_t got = 0;
    int pipe_open = 1, reaped = 0, st = 0, why = 0;
    uint8_t chunk[65536];
    while (!reaped) {
        if (!pipe_open) {
            pid_t w = waitpid(pid, &st, WNOHANG);
            if (w == pid) {
                reaped = 1;
                break;
            }
            if (w < 0 && errno != EINTR) {
                why = errno;
                break;
            }
        }
        int timeout = -1;
        if (lim->wall_ms) {
            int64_t left = deadline - now_ms();
            if (left <= 0) {
                why = ETIMEDOUT;
                break;
            }
            timeout = left > INT_MAX ? INT_MAX : (int)left;
        }
        struct pollfd pf = {.fd = pipe_open ? p[0] : pidfd, .events = POLLIN};
        if (!pipe_open && pidfd < 0) {
            /* no pidfd (kernel < 5.3): poll the exit every few ms */
            pf.fd = -1;
            if (timeout < 0 || timeout > 5)
                timeout = 5;
        }
        int r = poll(&pf, 1, timeout);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            why = errno;
            break;
        }
        if (r == 0 || !pipe_open)
            continue;
        ssize_t k = read(p[0], chunk, sizeof chunk);
        if (k < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            why = errno;
            break;
        }
        if (k == 0) {
            pipe_open = 0;
            continue;
        }
        if (got + (uint64_t)k > limit) {
            why = EMSGSIZE;
            break;
        }
        int a = buf_append(out, chunk, (size_t)k);
        if (a != 0) {
            why = a == -ENOSPC ? EMSGSIZE : -a;
            break;
        }
        got += (uint64_t)k;
    }
    if (!reaped && why != ECHILD) { /* ECHILD: already reaped by a SIGCHLD=SIG_IGN caller */
        kill(pid, SIGKILL);
        reap(pid, &st);
    }
    close(p[0]);
    if (pidfd >= 0)
        close(pidfd);

    int rc;
    if (why == ETIMEDOUT) {
        say(status_text, "wall-time limit of %llu ms exceeded; killed",
            (unsigned long long)lim->wall_ms);
        rc = -ETIMEDOUT;
    } else if (why == EMSGSIZE) {
        say(status_text, "output passed %llu bytes; killed",
            (unsigned long long)(lim->max_output_bytes ? lim->max_output_bytes : out->max));
        rc = -EMSGSIZE;
    } else if (why != 0) {
        say(status_text, "reading the result: %s; killed", strerror(why));
        rc = -why;
    } else {
        rc = judge(lim, st, sh, debug, status_text);
    }
    munmap(sh, sizeof *sh);
    return rc;
}

/* ---- persistent workers ---------------------------------------------------- */

struct sandbox_worker {
    pid_t pid;
    int pidfd; /* -1 on kernels without pidfd_open */
    int sock;  /* requests out, replies in */
    uint8_t *shared;
    size_t shared_len;
    struct sb_shared *sh;
    sandbox_limits lim;
    int debug;
    uint64_t calls;
};

struct serve_arg {
    sandbox_worker_fn fn;
    void *arg;
    int announce; /* a spawned worker: send SB_READY before the first request */
};

/* What a spawned worker says once it is locked down and ready to serve. */
#define SB_READY 0x5344414552424b53ull /* "SKBREADY" read as little-endian */

/* The setup a spawned worker reads from its socket before the lock-down. */
#define SB_SETUP_MAGIC "SKSBW-1"
struct sb_setup {
    char magic[8];
    uint64_t max_memory_bytes, cpu_seconds, max_output_bytes;
    uint64_t require_seccomp, use_seccomp, debug;
    uint64_t shared_len, init_len;
};

/* The fixed descriptors of a spawned worker. */
#define SB_SPAWN_SOCK   SB_RESULT_FD /* 3: requests and replies */
#define SB_SPAWN_REGION 4            /* the input region, opened read-only */
#define SB_SPAWN_DIAG   5            /* the diagnostics page (struct sb_shared) */

/* Reads exactly n bytes; 1 = done, 0 = EOF before any byte, -1 = error or
 * EOF inside. */
static int read_full(int fd, void *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)p + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r == 0 && got == 0 ? 0 : -1;
        got += (size_t)r;
    }
    return 1;
}

/* The worker's loop (in the child, locked down): a request is the length of
 * the input the parent put at the start of the shared region; fn answers it
 * with sandbox_reply(). Ends when the parent closes its end. */
static int serve(void *argp, int fd)
{
    struct serve_arg *a = argp;
    if (a->announce) {
        uint64_t ready = SB_READY;
        if (sandbox_write(fd, &ready, sizeof ready) != 0)
            return 2;
    }
    for (;;) {
        uint64_t len = 0;
        int r = read_full(fd, &len, sizeof len);
        if (r == 0)
            return 0;
        if (r < 0 || len > child_shared_len)
            return 2;
        int rc = a->fn(a->arg, child_shared, (size_t)len, fd);
        if (rc != 0)
            return rc;
    }
}

int sandbox_reply(int fd, const void *p, size_t n)
{
    uint64_t len = n;
    int rc = sandbox_write(fd, &len, sizeof len);
    return rc ? rc : sandbox_write(fd, p, n);
}

/* Whether seccomp can be used for a new worker; NULL lim is "none". Fails
 * (EOPNOTSUPP) when it is required and unavailable. */
static int worker_seccomp(const sandbox_limits *lim, int *use_seccomp, buf *status_text)
{
    *use_seccomp = sandbox_available();
    if (!*use_seccomp) {
        if (lim->require_seccomp) {
            say(status_text, "seccomp is required but not available here; not started");
            return -EOPNOTSUPP;
        }
        if (atomic_exchange(&warned_unavailable, 1) == 0)
            msg_warn("sandbox: seccomp is not available; untrusted input is parsed with "
                     "rlimits and closed descriptors only");
    }
    return 0;
}

/* Descriptors of a worker being started, until they are handed over. */
struct worker_fds {
    int mfd;   /* the input region, read-write (the parent maps it) */
    int rofd;  /* the same region opened read-only (for the worker) */
    int shfd;  /* the diagnostics page (spawned workers only; else -1) */
    int sv[2]; /* the socket: [0] the parent's end, [1] the worker's */
};

static void close_fds(struct worker_fds *f)
{
    int *all[] = {&f->mfd, &f->rofd, &f->shfd, &f->sv[0], &f->sv[1]};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (*all[i] >= 0) {
            close(*all[i]);
            *all[i] = -1;
        }
}

/* Frees a worker that never started (its process, if any, already reaped). */
static void worker_free(sandbox_worker *w)
{
    if (w->shared)
        munmap(w->shared, w->shared_len);
    if (w->sh)
        munmap(w->sh, sizeof *w->sh);
    free(w);
}

/* What both kinds of worker need before their process exists: the
 * diagnostics page (an anonymous shared mapping for a fork, a memfd for a
 * spawned program, which cannot inherit mappings), the input region and the
 * socket. Returns the worker (no process yet) or NULL with errno set and
 * status_text saying which step failed. */
static sandbox_worker *worker_prepare(const sandbox_limits *lim, size_t shared_len, int debug,
                                      int spawned, struct worker_fds *f, buf *status_text)
{
    f->mfd = f->rofd = f->shfd = f->sv[0] = f->sv[1] = -1;
    sandbox_worker *w = xcalloc(1, sizeof *w);
    w->pid = -1;
    w->pidfd = w->sock = -1;
    w->lim = *lim;
    w->debug = debug;
    w->shared_len = shared_len;
    int e = 0;
    const char *step = "";
    if (spawned) {
        f->shfd = memfd_create("sekisho-sandbox-diag", MFD_CLOEXEC);
        if (f->shfd < 0) {
            e = errno, step = "memfd_create (diagnostics page)";
            goto fail;
        }
        if (ftruncate(f->shfd, (off_t)sizeof *w->sh) < 0) {
            e = errno, step = "ftruncate (diagnostics page)";
            goto fail;
        }
    }
    w->sh = spawned ? mmap(NULL, sizeof *w->sh, PROT_READ | PROT_WRITE, MAP_SHARED, f->shfd, 0)
                    : mmap(NULL, sizeof *w->sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                           -1, 0);
    if (w->sh == MAP_FAILED) {
        w->sh = NULL;
        e = errno, step = "mmap";
        goto fail;
    }
    memset(w->sh, 0, sizeof *w->sh);
    /* The input region: a memfd the parent maps read-write; the worker gets a
     * descriptor opened read-only (through /proc), so its mapping can never
     * be made writable: a compromised worker cannot change an original the
     * parent is about to store. */
    f->mfd = memfd_create("sekisho-input", MFD_CLOEXEC);
    if (f->mfd < 0) {
        e = errno, step = "memfd_create";
        goto fail;
    }
    if (ftruncate(f->mfd, (off_t)shared_len) < 0) {
        e = errno, step = "ftruncate";
        goto fail;
    }
    w->shared = mmap(NULL, shared_len, PROT_READ | PROT_WRITE, MAP_SHARED, f->mfd, 0);
    if (w->shared == MAP_FAILED) {
        w->shared = NULL;
        e = errno, step = "mmap";
        goto fail;
    }
    char self[64];
    snprintf(self, sizeof self, "/proc/self/fd/%d", f->mfd);
    f->rofd = open(self, O_RDONLY | O_CLOEXEC);
    if (f->rofd < 0) {
        e = errno, step = "reopening the input region read-only (/proc)";
        goto fail;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, f->sv) < 0) {
        e = errno, step = "socketpair";
        goto fail;
    }
    return w;
fail:
    say(status_text, "%s: %s", step, strerror(e));
    close_fds(f);
    worker_free(w);
    errno = e;
    return NULL;
}

/* What both kinds of worker do first: the limits (NULL: none), whether
 * seccomp will be used, the shared pages and the descriptors. NULL with errno
 * set and status_text saying why. */
static sandbox_worker *worker_begin(const sandbox_limits *lim, size_t shared_len, int spawned,
                                    struct worker_fds *f, int *use_seccomp, buf *status_text)
{
    static const sandbox_limits none;
    *use_seccomp = 0;
    int e = worker_seccomp(lim ? lim : &none, use_seccomp, status_text);
    if (e < 0) {
        errno = -e;
        return NULL;
    }
    return worker_prepare(lim ? lim : &none, shared_len ? shared_len : 1,
                          env_is_1("SEKISHO_SANDBOX_DEBUG"), spawned, f, status_text);
}

sandbox_worker *sandbox_worker_start(const sandbox_limits *lim, size_t shared_len,
                                     sandbox_worker_fn fn, void *arg, buf *status_text)
{
    struct worker_fds f;
    int use_seccomp;
    sandbox_worker *w = worker_begin(lim, shared_len, 0, &f, &use_seccomp, status_text);
    if (w == NULL)
        return NULL;
    struct serve_arg sa = {fn, arg, 0};
    w->pid = fork();
    if (w->pid < 0) {
        int e = errno;
        say(status_text, "fork: %s", strerror(e));
        close_fds(&f);
        worker_free(w);
        errno = e;
        return NULL;
    }
    if (w->pid == 0) {
        close(f.mfd);
        child_main(&w->lim, serve, &sa, f.sv[0], f.sv[1], f.rofd, w->shared_len, w->sh, use_seccomp,
                   w->debug);
    }
    close(f.mfd);
    close(f.rofd);
    close(f.sv[1]);
    w->sock = f.sv[0];
    w->pidfd = (int)syscall(SYS_pidfd_open, w->pid, 0u);
    return w;
}

/* ---- spawned workers ------------------------------------------------------ */

static int wait_readable(int fd, int64_t deadline);
static int read_deadline(int fd, void *p, size_t n, int64_t deadline);
static int worker_end(sandbox_worker *w, int64_t grace_ms, int kill_now, buf *status_text);

/* Moves *fd to a number >= 16 (close-on-exec), so that no source of the
 * spawn's dup2 actions is one of their targets (3, 4, 5). 0 or -errno. */
static int fd_high(int *fd)
{
    int hi = fcntl(*fd, F_DUPFD_CLOEXEC, 16);
    if (hi < 0)
        return -errno;
    close(*fd);
    *fd = hi;
    return 0;
}

/* Writes all of p[0..n) to a socket under a deadline: 0, -ETIMEDOUT, -errno. */
static int send_deadline(int fd, const void *p, size_t n, int64_t deadline)
{
    size_t done = 0;
    while (done < n) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd pf = {.fd = fd, .events = POLLOUT};
        int r = poll(&pf, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            return -ETIMEDOUT;
        ssize_t k = send(fd, (const char *)p + done, n - done, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (k < 0)
            return -errno;
        done += (size_t)k;
    }
    return 0;
}

extern char **environ;

sandbox_worker *sandbox_worker_spawn(const sandbox_limits *lim, size_t shared_len, const char *path,
                                     char *const argv[], const void *init, size_t init_len,
                                     buf *status_text)
{
    if (path == NULL)
        path = "/proc/self/exe";
    struct worker_fds f;
    int use_seccomp, e;
    sandbox_worker *w = worker_begin(lim, shared_len, 1, &f, &use_seccomp, status_text);
    if (w == NULL)
        return NULL;
    lim = &w->lim;
    shared_len = w->shared_len;
    int debug = w->debug;
    const char *step = "";
    if ((e = fd_high(&f.sv[1])) < 0 || (e = fd_high(&f.rofd)) < 0 || (e = fd_high(&f.shfd)) < 0) {
        step = "fcntl(F_DUPFD_CLOEXEC)";
        goto fail;
    }
    /* posix_spawn (clone with CLONE_VM|CLONE_VFORK, then exec) is safe in a
     * multi-threaded caller: the child runs no code of the caller's before
     * exec, so no lock another thread holds can matter. Signals: default
     * actions and an empty mask in the new program (a milter's threads block
     * the signals its signal thread waits for). */
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    if ((e = posix_spawn_file_actions_init(&fa)) != 0) {
        e = -e, step = "posix_spawn_file_actions_init";
        goto fail;
    }
    if ((e = posix_spawnattr_init(&at)) != 0) {
        posix_spawn_file_actions_destroy(&fa);
        e = -e, step = "posix_spawnattr_init";
        goto fail;
    }
    sigset_t none_set, all_set;
    sigemptyset(&none_set);
    sigfillset(&all_set);
    int r = posix_spawn_file_actions_adddup2(&fa, f.sv[1], SB_SPAWN_SOCK);
    r = r ? r : posix_spawn_file_actions_adddup2(&fa, f.rofd, SB_SPAWN_REGION);
    r = r ? r : posix_spawn_file_actions_adddup2(&fa, f.shfd, SB_SPAWN_DIAG);
    r = r ? r : posix_spawnattr_setsigmask(&at, &none_set);
    r = r ? r : posix_spawnattr_setsigdefault(&at, &all_set);
    r = r ? r : posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    pid_t pid = -1;
    if (r == 0)
        r = posix_spawn(&pid, path, &fa, &at, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    if (r != 0) {
        e = -r, step = "posix_spawn";
        goto fail;
    }
    w->pid = pid;
    close(f.mfd);
    close(f.rofd);
    close(f.shfd);
    close(f.sv[1]);
    f.mfd = f.rofd = f.shfd = f.sv[1] = -1;
    w->sock = f.sv[0];
    f.sv[0] = -1;
    w->pidfd = (int)syscall(SYS_pidfd_open, w->pid, 0u);

    /* The setup, then the caller's init bytes; then wait for "ready": the
     * worker has initialised its libraries and is locked down. */
    int64_t deadline = now_ms() + (int64_t)(lim->wall_ms ? lim->wall_ms : 30000);
    struct sb_setup su;
    memset(&su, 0, sizeof su);
    memcpy(su.magic, SB_SETUP_MAGIC, sizeof su.magic);
    su.max_memory_bytes = lim->max_memory_bytes;
    su.cpu_seconds = lim->cpu_seconds;
    su.max_output_bytes = lim->max_output_bytes;
    su.require_seccomp = (uint64_t)lim->require_seccomp;
    su.use_seccomp = (uint64_t)use_seccomp;
    su.debug = (uint64_t)debug;
    su.shared_len = shared_len;
    su.init_len = init_len;
    uint64_t ready = 0;
    step = "sending the setup";
    e = send_deadline(w->sock, &su, sizeof su, deadline);
    if (e == 0 && init_len)
        e = send_deadline(w->sock, init, init_len, deadline);
    if (e == 0) {
        step = "waiting for the worker to start";
        e = read_deadline(w->sock, &ready, sizeof ready, deadline);
        if (e == 0 && ready != SB_READY)
            e = -EPROTO;
    }
    if (e == 0)
        return w;
    buf why;
    buf_init(&why, 1024);
    int end = worker_end(w, 0, 1, &why);
    if (e == -EPIPE || e == -ECONNRESET)
        say(status_text, "%s: the worker ended: %s", step, buf_cstr(&why));
    else if (e == -ETIMEDOUT)
        say(status_text, "%s: no answer within %llu ms; killed", step,
            (unsigned long long)(lim->wall_ms ? lim->wall_ms : 30000));
    else
        say(status_text, "%s: %s; killed", step, strerror(-e));
    buf_free(&why);
    worker_free(w);
    errno = e == -EPIPE || e == -ECONNRESET ? (end ? -end : ECHILD) : -e;
    return NULL;
fail:
    say(status_text, "%s: %s", step, strerror(-e));
    close_fds(&f);
    worker_free(w);
    errno = -e;
    return NULL;
}

/* The spawned worker's side: what sandbox_worker_accept() read. */
static struct {
    int accepted;
    sandbox_limits lim;
    size_t shared_len;
    int use_seccomp, debug;
    struct sb_shared *sh;
} spawned;

int sandbox_worker_accept(buf *init, buf *status_text)
{
    if (spawned.accepted) {
        say(status_text, "already accepted");
        return -EALREADY;
    }
    struct stat st_sock, st_region, st_diag;
    if (fstat(SB_SPAWN_SOCK, &st_sock) != 0 || !S_ISSOCK(st_sock.st_mode) ||
        fstat(SB_SPAWN_REGION, &st_region) != 0 || !S_ISREG(st_region.st_mode) ||
        fstat(SB_SPAWN_DIAG, &st_diag) != 0 || !S_ISREG(st_diag.st_mode) ||
        (size_t)st_diag.st_size < sizeof(struct sb_shared)) {
        say(status_text, "not started by sandbox_worker_spawn() (descriptors 3-5 missing)");
        return -EBADF;
    }
    /* Nothing else the parent had open belongs here (a milter's client
     * connections, its listening socket). */
    close_from(SB_SPAWN_DIAG + 1);
    struct sb_shared *sh =
        mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED, SB_SPAWN_DIAG, 0);
    if (sh == MAP_FAILED) {
        int e = errno;
        say(status_text, "mmap of the diagnostics page: %s", strerror(e));
        return -e;
    }
    close(SB_SPAWN_DIAG);
    struct sb_setup su;
    if (read_full(SB_SPAWN_SOCK, &su, sizeof su) != 1 ||
        memcmp(su.magic, SB_SETUP_MAGIC, sizeof su.magic) != 0 ||
        su.shared_len != (uint64_t)st_region.st_size || su.shared_len > SIZE_MAX) {
        say(status_text, "no valid setup from the parent");
        munmap(sh, sizeof *sh);
        return -EPROTO;
    }
    if (su.init_len > init->max - init->len || buf_reserve(init, (size_t)su.init_len) != 0) {
        say(status_text, "the init bytes (%llu) do not fit", (unsigned long long)su.init_len);
        munmap(sh, sizeof *sh);
        return -EMSGSIZE;
    }
    if (su.init_len && read_full(SB_SPAWN_SOCK, init->p + init->len, (size_t)su.init_len) != 1) {
        say(status_text, "the init bytes were cut short");
        munmap(sh, sizeof *sh);
        return -EPROTO;
    }
    init->len += (size_t)su.init_len;
    if (init->p)
        init->p[init->len] = 0;
    spawned.lim.max_memory_bytes = su.max_memory_bytes;
    spawned.lim.cpu_seconds = su.cpu_seconds;
    spawned.lim.max_output_bytes = su.max_output_bytes;
    spawned.lim.require_seccomp = su.require_seccomp != 0;
    spawned.use_seccomp = su.use_seccomp != 0;
    spawned.debug = su.debug != 0;
    spawned.shared_len = (size_t)su.shared_len;
    spawned.sh = sh;
    spawned.accepted = 1;
    return 0;
}

_Noreturn void sandbox_worker_serve(sandbox_worker_fn fn, void *arg)
{
    if (!spawned.accepted) {
        msg_warn("sandbox_worker_serve() without a successful sandbox_worker_accept()");
        _exit(SB_EXIT_SETUP);
    }
    static struct serve_arg sa;
    sa.fn = fn;
    sa.arg = arg;
    sa.announce = 1;
    /* The very same lock-down as a forked worker's (the socket is already fd 3). */
    child_main(&spawned.lim, serve, &sa, -1, SB_SPAWN_SOCK, SB_SPAWN_REGION, spawned.shared_len,
               spawned.sh, spawned.use_seccomp, spawned.debug);
}

uint8_t *sandbox_worker_input(sandbox_worker *w, size_t *cap)
{
    if (cap)
        *cap = w ? w->shared_len : 0;
    return w ? w->shared : NULL;
}

uint64_t sandbox_worker_calls(const sandbox_worker *w)
{
    return w ? w->calls : 0;
}

/* Waits until fd is readable or the deadline (ms, monotonic; 0 = none)
 * passes. 1 readable, 0 timed out, -errno. */
static int wait_readable(int fd, int64_t deadline)
{
    for (;;) {
        int timeout = -1;
        if (deadline) {
            int64_t left = deadline - now_ms();
            if (left <= 0)
                return 0;
            timeout = left > INT_MAX ? INT_MAX : (int)left;
        }
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        int r = poll(&pf, 1, timeout);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r > 0)
            return 1;
    }
}

/* Reads n bytes under the deadline: 0, -ETIMEDOUT, -EPIPE (EOF), -errno. */
static int read_deadline(int fd, void *p, size_t n, int64_t deadline)
{
    size_t got = 0;
    while (got < n) {
        int r = wait_readable(fd, deadline);
        if (r == 0)
            return -ETIMEDOUT;
        if (r < 0)
            return r;
        ssize_t k = read(fd, (char *)p + got, n - got);
        if (k < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (k < 0)
            return -errno;
        if (k == 0)
            return -EPIPE;
        got += (size_t)k;
    }
    return 0;
}

/* Ends the worker process: closes its socket (a live worker then leaves its
 * loop), waits up to grace_ms for it, kills it otherwise, and reaps it. The
 * region stays mapped until worker_free(). Returns what became of it
 * (sandbox_run's codes: 0 = exited 0). */
static int worker_end(sandbox_worker *w, int64_t grace_ms, int kill_now, buf *status_text)
{
    int st = 0, rc = 0;
    if (w->sock >= 0)
        close(w->sock);
    w->sock = -1;
    if (w->pid > 0) {
        pid_t got = 0;
        if (!kill_now) {
            int64_t deadline = now_ms() + grace_ms;
            while ((got = waitpid(w->pid, &st, WNOHANG)) == 0 && now_ms() < deadline) {
                if (w->pidfd >= 0)
                    wait_readable(w->pidfd, deadline);
                else
                    usleep(2000);
            }
        }
        if (got == 0 || kill_now) {
            kill(w->pid, SIGKILL);
            got = reap(w->pid, &st);
        }
        rc = got == w->pid ? judge(&w->lim, st, w->sh, w->debug, status_text) : -ECHILD;
        if (got != w->pid)
            say(status_text, "the worker could not be reaped: %s", strerror(errno));
        w->pid = -1;
    }
    if (w->pidfd >= 0)
        close(w->pidfd);
    w->pidfd = -1;
    return rc;
}

int sandbox_worker_alive(sandbox_worker *w)
{
    if (w == NULL || w->pid <= 0)
        return 0;
    /* Between calls an idle worker sends nothing: anything readable, a hang-up
     * or an error means it died (memory, CPU limit, a signal) or broke the
     * protocol. Found now, it costs no message a TEMPFAIL. */
    struct pollfd pf = {.fd = w->sock, .events = POLLIN};
    if (poll(&pf, 1, 0) == 0)
        return 1;
    buf why;
    buf_init(&why, 512);
    worker_end(w, 0, 1, &why);
    msg_warn("sandbox: an idle worker had ended: %s", buf_cstr(&why));
    buf_free(&why);
    return 0;
}

int sandbox_worker_call(sandbox_worker *w, size_t len, uint64_t timeout_ms, buf *out,
                        buf *status_text)
{
    if (w == NULL || len > w->shared_len)
        return -EINVAL;
    if (w->pid <= 0) {
        say(status_text, "the worker has ended");
        return -ECHILD;
    }
    int64_t deadline =
        timeout_ms ? now_ms() + (int64_t)(timeout_ms > INT64_MAX / 4 ? INT64_MAX / 4 : timeout_ms)
                   : 0;
    uint64_t req = len, rlen = 0;
    uint64_t limit = w->lim.max_output_bytes ? w->lim.max_output_bytes : UINT64_MAX;
    int rc = 0;
    const char *what = "";
    ssize_t s;
    do
        s = send(w->sock, &req, sizeof req, MSG_NOSIGNAL);
    while (s < 0 && errno == EINTR);
    if (s != (ssize_t)sizeof req) {
        rc = s < 0 ? -errno : -EIO;
        what = "sending the request";
    }
    if (rc == 0 && (rc = read_deadline(w->sock, &rlen, sizeof rlen, deadline)) != 0)
        what = "reading the reply";
    if (rc == 0 && (rlen > limit || rlen > out->max - out->len)) {
        rc = -EMSGSIZE;
        what = "reading the reply";
    }
    if (rc == 0) {
        if ((rc = buf_reserve(out, (size_t)rlen)) != 0) {
            rc = rc == -ENOSPC ? -EMSGSIZE : rc;
        } else if ((rc = read_deadline(w->sock, out->p + out->len, (size_t)rlen, deadline)) == 0) {
            out->len += (size_t)rlen;
            out->p[out->len] = 0;
        }
        what = "reading the reply";
    }
    if (rc == 0) {
        w->calls++;
        return 0;
    }
    /* The worker is gone or misbehaved: end it and say why. */
    int end = worker_end(w, 0, 1, status_text);
    if (rc == -ETIMEDOUT) {
        say(status_text, "wall-time limit of %llu ms exceeded; killed",
            (unsigned long long)timeout_ms);
        return -ETIMEDOUT;
    }
    if (rc == -EMSGSIZE) {
        say(status_text, "reply of %llu bytes passes the limit; killed", (unsigned long long)rlen);
        return -EMSGSIZE;
    }
    if (rc == -EPIPE || rc == -ECONNRESET) /* it died: judge() said how */
        return end ? end : -ECHILD;
    say(status_text, "%s: %s; killed", what, strerror(-rc));
    return rc;
}

int sandbox_worker_stop(sandbox_worker *w, buf *status_text)
{
    if (w == NULL)
        return 0;
    int rc = w->pid > 0 ? worker_end(w, 2000, 0, status_text) : 0;
    worker_free(w);
    return rc;
}
