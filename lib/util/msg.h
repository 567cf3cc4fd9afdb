/*
 * msg - diagnostics, with the meaning Postfix gives the levels:
 *   msg_info   something an administrator may want to know
 *   msg_warn   something is wrong but the program goes on
 *   msg_fatal  the environment is broken (missing file, no memory): exit 75
 *   msg_panic  an internal invariant is broken (never bad input): abort
 * Messages go to stderr as "progname: level: text".
 */
#ifndef SEKISHO_MSG_H
#define SEKISHO_MSG_H

void msg_set_progname(const char *name);
const char *msg_progname(void);
void msg_set_verbose(int level);
int msg_verbose(void);
void msg_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void msg_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
_Noreturn void msg_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
_Noreturn void msg_panic(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* malloc/calloc/strdup that call msg_fatal on failure. */
void *xmalloc(unsigned long n);
void *xcalloc(unsigned long n, unsigned long size);
char *xstrdup(const char *s);

#endif
