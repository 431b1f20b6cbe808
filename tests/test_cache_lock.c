/*
 * test_cache_lock.c - waits for another process's build are bounded and
 * visible.
 *
 * A process that holds a key's lock can be stopped (SIGSTOP, a debugger)
 * and then holds it for ever.  The waiter must say whom it waits for (the
 * key and the holder's pid) after a few seconds and, after
 * PRISM_LOCK_TIMEOUT seconds, build the kernel itself and publish it.  The
 * holder here is a forked child that stops itself inside its build, or the
 * test process itself holding the lock file through its own descriptor
 * (OFD locks conflict between descriptions of one process too).  The last
 * test does the same through `prism compile`, as in the report.
 */
#include "test_cache_common.h"
#include "cli_testutil.h"

#include <signal.h>
#include <sys/prctl.h>

TestSuite(cache_lock, .init = setup, .fini = teardown, .timeout = 60);

static int64_t ms_since(const struct timespec *t0) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)(t.tv_sec - t0->tv_sec) * 1000 +
           (t.tv_nsec - t0->tv_nsec) / 1000000;
}

/* A builder that stops its own process: the lock stays held. */
static prism_status stop_in_build(void *user, void **payload, size_t *size,
                                  prism_cache_meta *meta, char **log,
                                  char *err, size_t err_size) {
    raise(SIGSTOP);
    return cache_tu_build(user, payload, size, meta, log, err, err_size);
}

/* Forks a child that takes key's lock in dir and stops; returns its pid
 * once it is stopped. */
static pid_t stopped_holder(const char *dir, const prism_cache_key *key) {
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a failed test */
        cache_tu_builder b = {.size = PAYLOAD, .fill = 1};
        prism_cache *c = cache_tu_open(dir, NULL, 0);
        prism_cache_entry e;
        bool hit;
        prism_status st =
            prism_cache_get(c, key, NULL, stop_in_build, &b, &e, &hit, NULL, 0);
        _exit(st == PRISM_OK ? 0 : 1);
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, WUNTRACED), pid);
    cr_assert(WIFSTOPPED(status), "the holder did not stop");
    return pid;
}

static void end_child(pid_t pid) {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

Test(cache_lock, stopped_holder_is_named_then_the_waiter_builds) {
    setenv("PRISM_LOCK_TIMEOUT", "2", 1);
    prism_cache_key key = cache_tu_key("held by a stopped process");
    pid_t holder = stopped_holder(g_dir, &key);

    cache_tu_builder b = {.size = PAYLOAD, .fill = 1};
    prism_cache *c = cache_tu_open(g_dir, &g_logger, 0);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    bool hit = get_ok(c, &key, &b);
    int64_t waited = ms_since(&t0);
    end_child(holder);
    cr_assert_not(hit);
    cr_assert_eq(b.calls, 1, "the waiter builds it itself");
    cr_assert(waited >= 1900 && waited < 15000, "waited %lld ms",
              (long long)waited);
    char pid_text[32];
    snprintf(pid_text, sizeof pid_text, "pid %ld", (long)holder);
    cr_assert_eq(g_log.warnings, 2, "a notice, then the timeout: %s",
                 g_log.text);
    cr_assert_eq(cache_tu_log_count(&g_log, pid_text), 2, "%s", g_log.text);
    cr_assert_eq(cache_tu_log_count(&g_log, key.hex), 2, "%s", g_log.text);
    cr_assert_eq(cache_tu_log_count(&g_log, "waiting"), 1, "%s", g_log.text);
    cr_assert_eq(cache_tu_log_count(&g_log, "PRISM_LOCK_TIMEOUT"), 2);
    prism_cache_close(c);

    /* published: the next process finds it without waiting */
    char path[2048];
    cache_tu_entry_path(path, sizeof path, g_dir, &key);
    cr_assert(exists(path), "the waiter must publish what it built");
    c = cache_tu_open(g_dir, &g_logger, 0);
    cr_assert(get_ok(c, &key, &b));
    prism_cache_close(c);
}

/* Holds key's lock file through a descriptor of our own, with `pid` in it
 * as a holder would write it.  Returns the descriptor. */
static int hold_lock(const prism_cache_key *key, const char *pid) {
    char path[2048];
    snprintf(path, sizeof path, "%s/%s.lock", g_dir, key->hex);
    int fd = open(path, O_RDWR | O_CREAT, 0600);
    cr_assert_geq(fd, 0);
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    cr_assert_eq(fcntl(fd, F_OFD_SETLK, &fl), 0, "%s", strerror(errno));
    cr_assert_eq(write(fd, pid, strlen(pid)), (ssize_t)strlen(pid));
    return fd;
}

Test(cache_lock, timeout_zero_builds_at_once_and_names_the_holder) {
    setenv("PRISM_LOCK_TIMEOUT", "0", 1);
    prism_cache_key key = cache_tu_key("busy, no wait");
    int fd = hold_lock(&key, "4242\n");
    cache_tu_builder b = {.size = PAYLOAD, .fill = 1};
    prism_cache *c = cache_tu_open(g_dir, &g_logger, 0);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cr_assert_not(get_ok(c, &key, &b));
    cr_assert_lt(ms_since(&t0), 1000);
    cr_assert_eq(g_log.warnings, 1, "%s", g_log.text);
    cr_assert_eq(cache_tu_log_count(&g_log, "pid 4242"), 1, "%s", g_log.text);
    prism_cache_close(c);
    close(fd);
}

Test(cache_lock, a_free_lock_is_taken_without_a_message) {
    setenv("PRISM_LOCK_TIMEOUT", "1", 1);
    prism_cache_key key = cache_tu_key("free");
    cache_tu_builder b = {.size = PAYLOAD, .fill = 1};
    prism_cache *c = cache_tu_open(g_dir, &g_logger, 0);
    cr_assert_not(get_ok(c, &key, &b));
    cr_assert_eq(g_log.warnings, 0, "%s", g_log.text);
    prism_cache_close(c);
    cr_assert_eq(cache_tu_count(g_dir, ".lock"), 0);
}

Test(cache_lock, the_holder_writes_its_pid_into_the_lock_file) {
    prism_cache_key key = cache_tu_key("pid inside");
    pid_t holder = stopped_holder(g_dir, &key);
    char path[2048], text[64] = "";
    snprintf(path, sizeof path, "%s/%s.lock", g_dir, key.hex);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    cr_assert_not_null(fgets(text, sizeof text, f));
    fclose(f);
    end_child(holder);
    cr_assert_eq(atol(text), (long)holder, "lock file holds '%s'", text);
}

Test(cache_lock, bad_timeout_values_warn_and_use_the_default) {
    static const char *const bad[] = {"soon", "-1", "1.5", "100000"};
    for (size_t i = 0; i < PRISM_ARRAY_LEN(bad); i++) {
        setenv("PRISM_LOCK_TIMEOUT", bad[i], 1);
        g_log.warnings = 0;
        g_log.text[0] = '\0';
        prism_cache *c = cache_tu_open(g_dir, &g_logger, 0);
        cr_assert_eq(g_log.warnings, 1, "'%s': %s", bad[i], g_log.text);
        cr_assert_eq(cache_tu_log_count(&g_log, "PRISM_LOCK_TIMEOUT"), 1);
        cr_assert_eq(cache_tu_log_count(&g_log, "using 120"), 1);
        prism_cache_close(c);
    }
}

/* ---- through the CLI ----------------------------------------------------- */

#define SMOLLM PRISM_SOURCE_DIR "/configs/smollm2-135m.yaml"

static char g_out[32768], g_err[32768];

static int compile_into(const char *dir, const char *env) {
    return cli_tu_run(g_out, sizeof g_out, g_err, sizeof g_err,
                      "PRISM_CACHE_DIR='%s' PRISM_CACHE_PATH= %s timeout 60 "
                      "'%s' compile '%s' --arch sm_80",
                      dir, env, PRISM_CLI_PATH, SMOLLM);
}

/* The full key of the entry of dir whose name starts with prefix. */
static void key_with_prefix(const char *dir, const char *prefix, char *hex) {
    char *names = cache_tu_listing(dir);
    char *at = strstr(names, prefix);
    cr_assert_not_null(at, "no entry %s in\n%s", prefix, names);
    memcpy(hex, at, 64);
    hex[64] = '\0';
    free(names);
}

/* The report's case: `prism compile` while another process that holds a
 * key's lock is stopped. */
Test(cache_lock, prism_compile_does_not_hang_on_a_stopped_holder) {
    char *first = subdir("first", true), *second = subdir("second", true);
    cr_assert_eq(compile_into(first, ""), 0, "%s%s", g_out, g_err);
    char *line = strstr(g_out, "pool_stats");
    cr_assert_not_null(line, "%s", g_out);
    char prefix[13];
    cr_assert_eq(sscanf(line, "pool_stats sm_80 miss %12s", prefix), 1, "%s",
                 line);
    char hex[65];
    key_with_prefix(first, prefix, hex);

    /* a child holds pool_stats's lock in the second cache and stops */
    char lock[2048];
    snprintf(lock, sizeof lock, "%s/%s.lock", second, hex);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(lock, O_RDWR | O_CREAT, 0600);
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
        char text[32];
        int n = snprintf(text, sizeof text, "%ld\n", (long)getpid());
        if (fd < 0 || fcntl(fd, F_OFD_SETLK, &fl) != 0 ||
            write(fd, text, (size_t)n) != n)
            _exit(1);
        raise(SIGSTOP);
        _exit(0);
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, WUNTRACED), pid);
    cr_assert(WIFSTOPPED(status));

    int rc = compile_into(second, "PRISM_LOCK_TIMEOUT=2");
    end_child(pid);
    cr_assert_eq(rc, 0, "exit %d\n%s%s", rc, g_out, g_err);
    char pid_text[32];
    snprintf(pid_text, sizeof pid_text, "pid %ld", (long)pid);
    cr_assert(strstr(g_err, pid_text), "%s", g_err);
    cr_assert(strstr(g_err, hex), "%s", g_err);
    cr_assert(strstr(g_out, "pool_stats       sm_80   miss"), "%s", g_out);
    cr_assert_eq(cache_tu_count(second, ".prc"), 3, "everything published");
}
