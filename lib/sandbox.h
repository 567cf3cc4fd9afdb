/*
 * sandbox - run a parser over untrusted bytes in a child process that can do
 * nothing else: rlimits, no new privileges, no inherited descriptors but the
 * result pipe and stderr, and a seccomp allow-list that leaves it memory,
 * the clock and write(2) to those two descriptors. See sandbox.c for the
 * allow-list and docs/SECURITY.md for the process model.
 *
 * The child is a fork() of the caller: it sees the caller's memory as it was
 * (the message, the policy, libraries already initialised) and nothing the
 * caller does afterwards. Anything a library would open lazily (libmagic's
 * database, ICU data, gconv modules, locale files) must be loaded by the
 * caller BEFORE sandbox_run(): inside, open(2) kills the child. Run once with
 * SEKISHO_SANDBOX_DEBUG=1 to list the syscalls a new code path needs.
 *
 * Call sandbox_run() from a single-threaded process (or a pre-forked worker):
 * a fork of a multi-threaded process only gets the calling thread, and a lock
 * another thread held at fork time stays held in the child.
 */
#ifndef SEKISHO_SANDBOX_H
#define SEKISHO_SANDBOX_H

#include "util/buf.h"

#include <stddef.h>
#include <stdint.h>

typedef struct sandbox_limits {
    uint64_t max_memory_bytes; /* RLIMIT_AS; 0 = not set */
    uint64_t cpu_seconds;      /* RLIMIT_CPU soft (hard = soft + 1); 0 = not set */
    uint64_t wall_ms;          /* the parent SIGKILLs the child after this; 0 = none */
    uint64_t max_output_bytes; /* the parent refuses more result bytes; 0 = out->max only */
    int require_seccomp;       /* 1: fail (and never run fn) when seccomp cannot be installed */
} sandbox_limits;

/*
 * Work done inside the child once the sandbox is entered. It may only use
 * memory it inherited or allocates, and writes its result to result_fd with
 * sandbox_write(). Returns 0 on success; anything else makes sandbox_run()
 * fail with -ECHILD.
 */
typedef int (*sandbox_fn)(void *arg, int result_fd);

/*
 * Runs fn(arg, result_fd) in a sandboxed child and appends what it wrote to
 * out (not NULL; its own max applies too). The caller must not set SIGCHLD
 * to SIG_IGN (the child would be reaped behind its back). Never leaves a zombie or a descriptor
 * behind. Returns
 *   0            the child exited 0 and its output fit
 *   -ETIMEDOUT   wall_ms passed (child killed) or the CPU limit hit (SIGXCPU)
 *   -EMSGSIZE    the output passed max_output_bytes or out->max (child killed)
 *   -EPERM       the child broke the seccomp allow-list (SIGSYS)
 *   -ECHILD      the child crashed (other signal) or exited non-zero
 *   -EOPNOTSUPP  require_seccomp is set and seccomp cannot be installed
 *   other        -errno of pipe/fork/mmap in the parent
 * status_text (may be NULL) is replaced with a readable reason, e.g.
 * "killed by SIGSYS (seccomp violation)", "exited with status 1",
 * "wall-time limit 300 ms exceeded; killed". On failure out may hold a
 * partial result, which the caller must not use.
 */
int sandbox_run(const sandbox_limits *lim, sandbox_fn fn, void *arg, buf *out, buf *status_text);

/*
 * A persistent worker: one sandboxed child (the same lock-down as
 * sandbox_run()) that answers requests until it is stopped, so that a stream
 * of messages does not pay a fork each. Input goes through a shared region
 * of shared_len bytes: the caller writes the input at its start
 * (sandbox_worker_input()) and calls sandbox_worker_call(); in the child,
 * fn(arg, input, len, fd) sees that region read-only (a mapping of a
 * read-only descriptor: the worker cannot alter an input the caller keeps)
 * and answers with exactly one sandbox_reply(fd, ...). A non-zero return
 * from fn ends the worker. RLIMIT_AS counts the region on top of
 * max_memory_bytes; cpu_seconds is for the worker's whole life (recycle
 * it); wall_ms is unused (each call has its own timeout).
 */
typedef struct sandbox_worker sandbox_worker;
typedef int (*sandbox_worker_fn)(void *arg, const uint8_t *input, size_t len, int fd);

/* Starts a worker. NULL with errno set and status_text saying why. */
sandbox_worker *sandbox_worker_start(const sandbox_limits *lim, size_t shared_len,
                                     sandbox_worker_fn fn, void *arg, buf *status_text);
/* The writable start of the input region (cap: its size). */
uint8_t *sandbox_worker_input(sandbox_worker *w, size_t *cap);
/* Requests made so far that were answered. */
uint64_t sandbox_worker_calls(const sandbox_worker *w);
/* Hands the first len bytes of the region to the worker and appends its reply
 * to out, waiting at most timeout_ms (0 = no limit). 0 on success. On any
 * failure the worker process is ended (killed and reaped; the region stays
 * readable by the caller until sandbox_worker_stop(), which the caller must
 * call before starting another) and the code says how, as for sandbox_run(): -ETIMEDOUT,
 * -EMSGSIZE (reply over max_output_bytes or out->max), -EPERM (seccomp),
 * -ECHILD (crashed, e.g. by a parser fault, or exited), -EOPNOTSUPP, or
 * another -errno; status_text says it in words. out may then hold a partial
 * reply, which the caller must not use. */
int sandbox_worker_call(sandbox_worker *w, size_t len, uint64_t timeout_ms, buf *out,
                        buf *status_text);
/* 1 while the worker process runs and is idle as it should be, else 0. A
 * worker found dead or misbehaving between calls is ended (killed, reaped,
 * said with msg_warn) here; the caller then stops it and starts another. */
int sandbox_worker_alive(sandbox_worker *w);
/* Ends a worker: it leaves its loop when its socket closes; after 2 s it is
 * killed. Reaps it, unmaps the region and frees w (NULL is a no-op). Returns
 * 0 when it exited cleanly (or had already ended), else a code as above. */
int sandbox_worker_stop(sandbox_worker *w, buf *status_text);
/*
 * A spawned worker: the same worker, locked down the same way and driven by
 * the same sandbox_worker_input/call/calls/alive/stop, but its process is a
 * fresh program started with posix_spawn() instead of a fork of the caller.
 * Use it from a multi-threaded process (the milter): fork() there copies only
 * the calling thread, and a lock another thread held (GLib, ICU, OpenSSL,
 * malloc arenas, syslog) stays held in the child for ever.
 *
 * path (NULL: /proc/self/exe, the caller's own binary) is run with argv
 * (argv[0] first, NULL-terminated), the caller's environment, every signal
 * at its default action and none blocked; the socket, the read-only input
 * region and the diagnostics page are its descriptors 3, 4 and 5. The
 * program must recognise an argument of the caller's choosing in argv and
 * then, before doing anything else:
 *     sandbox_worker_accept(&init, ...)   (closes every other inherited
 *                                          descriptor, reads the setup and
 *                                          the caller's init bytes)
 *     initialise its libraries from init  (e.g. a policy file's bytes)
 *     sandbox_preload()
 *     sandbox_worker_serve(fn, arg)       (never returns)
 * sandbox_worker_spawn() returns once the worker has entered the lock-down
 * and said it is ready, or NULL (errno set; status_text says why, e.g. the
 * exit status of a program that failed to initialise). lim->wall_ms bounds
 * that start-up (0: 30 s). The caller remains the parent: it must not reap
 * the child behind the library's back (SIGCHLD not SIG_IGN, no wait(-1)).
 */
sandbox_worker *sandbox_worker_spawn(const sandbox_limits *lim, size_t shared_len, const char *path,
                                     char *const argv[], const void *init, size_t init_len,
                                     buf *status_text);
/* In the spawned program (see above): 0, or -EBADF when this process was not
 * started by sandbox_worker_spawn(), -EPROTO on a bad setup, -EMSGSIZE when
 * the init bytes pass init->max. The init bytes are appended to init. */
int sandbox_worker_accept(buf *init, buf *status_text);
/* In the spawned program, after sandbox_worker_accept() and the caller's own
 * initialisation: enters the lock-down and answers requests with fn until
 * the parent closes the socket. Never returns; the exit status is that of a
 * forked worker (0 when the parent closed the socket). */
_Noreturn void sandbox_worker_serve(sandbox_worker_fn fn, void *arg);

/* In a worker's fn: sends the one reply to a request. 0 or -errno. */
int sandbox_reply(int fd, const void *p, size_t n);

/* Writes all of p[0..n) to fd, retrying on EINTR and short writes. 0 or -errno. */
int sandbox_write(int fd, const void *p, size_t n);

/*
 * Loads in the calling process what the project's libraries would otherwise
 * load lazily on first use, which inside the sandbox means open(2) and a
 * SIGSYS: OpenSSL's configuration (the first SHA-256), GLib's local time
 * zone and charset (the first g_warning), glibc's gconv configuration, and
 * the gconv modules of the charsets mail commonly names in RFC 2047 words
 * (GMime's parser decodes those through iconv), kept loaded by descriptors
 * held for the life of the process. A charset outside that list still makes
 * the child die (the message is TEMPFAILed, not passed). Call once, before
 * the first sandbox_run(), after the libraries themselves are initialised
 * (sanitize_new()). Idempotent. Returns the number of charsets that could
 * not be loaded (0 normally).
 */
int sandbox_preload(void);

/* 1 if a seccomp filter can be installed here (kernel support, not forbidden
 * by an outer sandbox); probed once by a throw-away child, then cached.
 * SEKISHO_SANDBOX_NO_SECCOMP=1 makes it 0 (to test the degraded path). */
int sandbox_available(void);

#endif
