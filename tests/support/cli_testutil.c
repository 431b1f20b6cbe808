/*
 * cli_testutil.c - see cli_testutil.h.
 */
#include "cli_testutil.h"

#include <criterion/criterion.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void read_into(FILE *f, char *buf, size_t size) {
    size_t n = f ? fread(buf, 1, size - 1, f) : 0;
    buf[n] = '\0';
}

int cli_tu_run(char *out, size_t out_size, char *err, size_t err_size,
               const char *fmt, ...) {
    char cmd[8192], err_path[64] = "";
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    cr_assert(len > 0 && (size_t)len < sizeof cmd, "command too long: %s", cmd);
    if (err) {
        int fd = -1;
        snprintf(err_path, sizeof err_path, "/tmp/prism-cli-err-XXXXXX");
        cr_assert((fd = mkstemp(err_path)) >= 0, "mkstemp %s", err_path);
        close(fd);
    }
    int tail = snprintf(cmd + len, sizeof cmd - (size_t)len,
                        err ? " 2>'%s'" : " 2>&1", err_path);
    cr_assert((size_t)(len + tail) < sizeof cmd, "command too long: %s", cmd);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "popen %s", cmd);
    read_into(p, out, out_size);
    int status = pclose(p);
    if (err) {
        FILE *e = fopen(err_path, "r");
        read_into(e, err, err_size);
        if (e)
            fclose(e);
        unlink(err_path);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
