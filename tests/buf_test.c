/* Unit tests for lib/util/buf and lib/util/fileio. */
#include "testutil.h"
#include "util/buf.h"
#include "util/digest.h"
#include "util/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

static void test_limits(void)
{
    buf b;
    buf_init(&b, 8);
    CHECK_INT(buf_puts(&b, "12345678"), 0);
    CHECK_INT(b.len, 8);
    CHECK_INT(buf_putc(&b, 'x'), -ENOSPC);
    CHECK_INT(b.err, -ENOSPC);
    CHECK_STR(buf_cstr(&b), "12345678");
    /* sticky: later small appends fail too */
    CHECK_INT(buf_puts(&b, ""), -ENOSPC);
    buf_reset(&b);
    CHECK_INT(buf_printf(&b, "%d-%s", 42, "ab"), 0);
    CHECK_STR(buf_cstr(&b), "42-ab");
    CHECK_INT(buf_printf(&b, "%s", "too long"), -ENOSPC);
    CHECK_STR(buf_cstr(&b), "42-ab");
    buf_free(&b);
    buf_free(NULL);
}

static void test_binary(void)
{
    buf b;
    buf_init(&b, BUF_UNLIMITED);
    CHECK_INT(buf_append(&b, "a\0b", 3), 0);
    CHECK_INT(b.len, 3);
    CHECK_INT(b.p[1], 0);
    CHECK_INT(b.p[3], 0);
    size_t n;
    char *s = buf_steal(&b, &n);
    CHECK_INT(n, 3);
    CHECK(b.p == NULL);
    free(s);
    s = buf_steal(&b, &n);
    CHECK_STR(s, "");
    free(s);
}

static void test_fileio(void)
{
    char dir[] = "/tmp/sekisho-buf-test-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/a/b/c", dir);
    CHECK_INT(fileio_mkdir_p(path, 0700), 0);
    snprintf(path, sizeof path, "%s/a/b/c/file", dir);
    CHECK_INT(fileio_write_atomic(path, "hello\n", 6, 0600, 1), 0);
    buf b;
    buf_init(&b, 100);
    CHECK_INT(fileio_read_file(path, &b), 0);
    CHECK_STR(buf_cstr(&b), "hello\n");
    buf_free(&b);
    buf_init(&b, 3);
    CHECK_INT(fileio_read_file(path, &b), -EFBIG);
    buf_free(&b);
    buf_init(&b, 6); /* exactly at the ceiling is not too big */
    CHECK_INT(fileio_read_file(path, &b), 0);
    CHECK_STR(buf_cstr(&b), "hello\n");
    buf_free(&b);
    /* into a fixed region: smaller, exactly, larger */
    uint8_t region[8];
    size_t n = 99;
    for (size_t cap = 5; cap <= 8; cap++) {
        int fd = open(path, O_RDONLY);
        CHECK(fd >= 0);
        int rc = fileio_read_into(fd, region, cap, &n);
        close(fd);
        CHECK_INT(rc, cap < 6 ? -EFBIG : 0);
        CHECK_INT(n, cap < 6 ? cap : 6);
        CHECK(memcmp(region, "hello\n", n) == 0);
    }
    unlink(path);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK_INT(system(cmd), 0);
}

static void test_digest(void)
{
    uint8_t d[DIGEST_SHA256_LEN];
    char hex[DIGEST_SHA256_HEX];
    digest_sha256("abc", 3, d);
    digest_hex(d, sizeof d, hex);
    CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

int main(void)
{
    test_limits();
    test_binary();
    test_fileio();
    test_digest();
    TEST_DONE();
}
