/*
 * cache_entry.c - cache keys and the entry format (encode, read, validate).
 *
 * Why the format is what it is: an entry must prove on its own that it is
 * complete and is the entry it claims to be, because readers take no lock
 * and files can be truncated by a full disk, copied between machines or
 * edited by hand.  So the header carries the key (checked against the file
 * name and the request), the payload size (checked against the file size:
 * truncation and trailing junk), a SHA-256 of the payload and a SHA-256 of
 * the header itself (so a flipped metadata byte is caught too).  Every
 * field is fixed-width little-endian so an entry written on one machine
 * reads the same on another.  The layout table is in cache.h.
 */
#include "cache/cache_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- keys --------------------------------------------------------------- */

static void put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get_u64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* One length-prefixed field: u64 LE length, then the bytes.  The prefix is
 * what keeps ("ab", "c") and ("a", "bc") apart. */
static bool hash_field(EVP_MD_CTX *md, const void *data, size_t size) {
    unsigned char len[8];
    put_u64(len, (uint64_t)size);
    return EVP_DigestUpdate(md, len, sizeof len) &&
           (size == 0 || EVP_DigestUpdate(md, data, size));
}

static bool hash_string(EVP_MD_CTX *md, const char *s) {
    return hash_field(md, s ? s : "", s ? strlen(s) : 0);
}

static int compare_strings(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Streams the fields through one digest rather than building a buffer, so
 * a large source is not copied, and a failure of libcrypto is reported
 * instead of yielding a zero key (which would make all keys collide). */
prism_status prism_cache_key_compute(const prism_cache_key_input *in,
                                     prism_cache_key *out) {
    prism_status st = PRISM_OK;
    const char **sorted = NULL;
    EVP_MD_CTX *md = NULL;
    if (!out)
        return PRISM_ERR_NULL_POINTER;
    memset(out, 0, sizeof *out);
    if (!in)
        return PRISM_ERR_NULL_POINTER;
    if (in->n_options < 0 || (in->n_options > 0 && !in->options))
        return PRISM_ERR_INVALID_ARGUMENT;
    if (in->n_options > 0) {
        sorted = malloc((size_t)in->n_options * sizeof *sorted);
        if (!sorted)
            return PRISM_ERR_OUT_OF_MEMORY;
        for (int i = 0; i < in->n_options; i++) {
            if (!in->options[i]) {
                st = PRISM_ERR_INVALID_ARGUMENT;
                goto done;
            }
            sorted[i] = in->options[i];
        }
        qsort(sorted, (size_t)in->n_options, sizeof *sorted, compare_strings);
    }
    md = EVP_MD_CTX_new();
    unsigned char format[4], count[8];
    put_u32(format, PRISM_CACHE_KEY_FORMAT);
    put_u64(count, (uint64_t)in->n_options);
    bool ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) &&
              hash_field(md, format, sizeof format) &&
              hash_string(md, PRISM_VERSION_STRING) &&
              hash_string(md, in->source) &&
              hash_string(md, in->nvrtc_version) && hash_string(md, in->arch) &&
              hash_field(md, count, sizeof count);
    for (int i = 0; ok && i < in->n_options; i++)
        ok = hash_string(md, sorted[i]);
    unsigned int len = 0;
    if (!ok || !EVP_DigestFinal_ex(md, out->bytes, &len) || len != 32) {
        st = PRISM_ERR_OUT_OF_MEMORY;
        goto done;
    }
    prism_hex(out->bytes, 32, out->hex);

done:
    if (st != PRISM_OK)
        memset(out, 0, sizeof *out);
    EVP_MD_CTX_free(md);
    free(sorted);
    return st;
}

/* ---- names and trust ---------------------------------------------------- */

static bool is_hex64(const char *s) {
    for (int i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

static int hex_value(char c) { return c <= '9' ? c - '0' : c - 'a' + 10; }

bool prism_cache__entry_name_parse(const char *name, unsigned char key[32]) {
    if (strlen(name) != 64 + strlen(CACHE_ENTRY_EXT) || !is_hex64(name) ||
        strcmp(name + 64, CACHE_ENTRY_EXT) != 0)
        return false;
    if (key)
        for (int i = 0; i < 32; i++)
            key[i] = (unsigned char)(hex_value(name[2 * i]) << 4 |
                                     hex_value(name[2 * i + 1]));
    return true;
}

bool prism_cache__lock_name_is(const char *name) {
    return strlen(name) == 64 + strlen(CACHE_LOCK_EXT) && is_hex64(name) &&
           strcmp(name + 64, CACHE_LOCK_EXT) == 0;
}

bool prism_cache__tmp_name_is(const char *name) {
    return strncmp(name, CACHE_TMP_PREFIX, strlen(CACHE_TMP_PREFIX)) == 0;
}

bool prism_cache__stat_trusted(const struct stat *st, const char *path,
                               char *why, size_t why_size, char *fix,
                               size_t fix_size) {
    mode_t w = st->st_mode & (S_IWGRP | S_IWOTH);
    uid_t me = geteuid();
    if (w) {
        snprintf(why, why_size, "untrusted: writable by %s (mode %04o)",
                 w == (S_IWGRP | S_IWOTH) ? "group and others"
                 : w == S_IWGRP           ? "its group"
                                          : "others",
                 (unsigned)(st->st_mode & 07777));
        snprintf(fix, fix_size, "chmod go-w %s", path);
        return false;
    }
    if (st->st_uid != me && st->st_uid != 0) {
        snprintf(why, why_size,
                 "untrusted: owned by uid %ld, neither you (uid %ld) nor root",
                 (long)st->st_uid, (long)me);
        snprintf(fix, fix_size, "chown %ld %s (as root), or remove it",
                 (long)me, path);
        return false;
    }
    return true;
}

bool prism_cache__path_join(char *buf, const char *dir, const char *name) {
    int n = snprintf(buf, CACHE_PATH_BUF, "%s/%s", dir, name);
    return n > 0 && n < CACHE_PATH_BUF;
}

char *prism_cache__strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

/* ---- encode ------------------------------------------------------------- */

/* A NUL-padded string field; always leaves at least one NUL. */
static void put_string(unsigned char *p, size_t field, const char *s) {
    size_t n = strnlen(s, field - 1);
    memcpy(p, s, n);
    memset(p + n, 0, field - n);
}

void prism_cache__header_encode(const unsigned char key[32],
                                const prism_cache_meta *m, const void *payload,
                                size_t payload_size,
                                unsigned char h[CACHE_HEADER_SIZE]) {
    uint64_t ms_bits;
    memcpy(&ms_bits, &m->compile_ms, sizeof ms_bits);
    memset(h, 0, CACHE_HEADER_SIZE);
    memcpy(h, CACHE_MAGIC, 8);
    put_u32(h + 8, CACHE_FORMAT_VERSION);
    put_u32(h + 12, CACHE_HEADER_SIZE);
    memcpy(h + 16, key, 32);
    prism_sha256(payload_size ? payload : "", payload_size, h + 48);
    put_u64(h + 80, (uint64_t)payload_size);
    put_string(h + 88, 128, m->config_name);
    put_string(h + 216, 64, m->kernel_name);
    put_string(h + 280, 16, m->arch);
    put_u32(h + 296, (uint32_t)m->registers);
    put_u32(h + 300, (uint32_t)m->spill_bytes);
    put_u32(h + 304, (uint32_t)m->shared_bytes);
    put_u32(h + 308, (uint32_t)m->local_bytes);
    put_u64(h + 312, ms_bits);
    put_u64(h + 320, (uint64_t)m->created_unix);
    put_string(h + 328, 16, m->compiler);
    /* the release whose key this is (prism_cache_key_compute); "" when it
     * would not fit */
    put_string(h + 344, 8,
               strlen(PRISM_VERSION_STRING) < 8 ? PRISM_VERSION_STRING : "");
    prism_sha256(h, CACHE_HEADER_HASHED, h + CACHE_HEADER_HASHED);
}

/* ---- decode ------------------------------------------------------------- */

static bool get_string(const unsigned char *p, size_t field, char *out) {
    if (memchr(p, '\0', field) == NULL)
        return false;
    memcpy(out, p, field);
    return true;
}

/* Validates a header read from a file of file_size bytes.  Checks run from
 * the cheapest and most telling (magic) to the key and the sizes. */
static bool header_decode(const unsigned char *h, const unsigned char key[32],
                          uint64_t file_size, prism_cache_meta *m,
                          uint64_t *payload_size, char *why, size_t why_size) {
    unsigned char digest[32];
    if (memcmp(h, CACHE_MAGIC, 8) != 0) {
        snprintf(why, why_size, "bad magic (not a Prism cache entry)");
        return false;
    }
    uint32_t version = get_u32(h + 8);
    if (version != CACHE_FORMAT_VERSION ||
        get_u32(h + 12) != CACHE_HEADER_SIZE) {
        snprintf(why, why_size,
                 "unsupported entry format version %u (this build reads %u)",
                 (unsigned)version, CACHE_FORMAT_VERSION);
        return false;
    }
    prism_sha256(h, CACHE_HEADER_HASHED, digest);
    if (memcmp(digest, h + CACHE_HEADER_HASHED, 32) != 0) {
        snprintf(why, why_size, "header checksum mismatch");
        return false;
    }
    if (memcmp(h + 16, key, 32) != 0) {
        char hex[65];
        prism_hex(h + 16, 32, hex);
        snprintf(why, why_size, "key mismatch (the entry is for key %.16s...)",
                 hex);
        return false;
    }
    *payload_size = get_u64(h + 80);
    if (*payload_size != file_size - CACHE_HEADER_SIZE) {
        snprintf(why, why_size,
                 "%s: header says %llu payload bytes, file holds %llu",
                 *payload_size > file_size - CACHE_HEADER_SIZE
                     ? "truncated"
                     : "trailing bytes",
                 (unsigned long long)*payload_size,
                 (unsigned long long)(file_size - CACHE_HEADER_SIZE));
        return false;
    }
    memset(m, 0, sizeof *m);
    if (!get_string(h + 88, 128, m->config_name) ||
        !get_string(h + 216, 64, m->kernel_name) ||
        !get_string(h + 280, 16, m->arch) ||
        !get_string(h + 328, 16, m->compiler) ||
        !get_string(h + 344, 8, m->prism_version)) {
        snprintf(why, why_size, "unterminated name in the header");
        return false;
    }
    uint64_t ms_bits = get_u64(h + 312);
    m->registers = (int32_t)get_u32(h + 296);
    m->spill_bytes = (int32_t)get_u32(h + 300);
    m->shared_bytes = (int32_t)get_u32(h + 304);
    m->local_bytes = (int32_t)get_u32(h + 308);
    memcpy(&m->compile_ms, &ms_bits, sizeof ms_bits);
    m->created_unix = (int64_t)get_u64(h + 320);
    return true;
}

/* pread until size bytes or EOF/error; returns the bytes read or -1. */
static ssize_t read_full(int fd, void *buf, size_t size, off_t offset) {
    size_t done = 0;
    while (done < size) {
        ssize_t n =
            pread(fd, (char *)buf + done, size - done, offset + (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        done += (size_t)n;
    }
    return (ssize_t)done;
}

/* The file is opened once and every check runs on that descriptor, so a
 * concurrent rename over the path cannot mix two entries.  O_NONBLOCK keeps
 * a FIFO planted under an entry name from hanging the reader. */
cache_read_result
prism_cache__entry_read(const char *path, const unsigned char key[32],
                        unsigned flags, prism_cache_entry *out,
                        struct stat *st_out, char *why, size_t why_size) {
    cache_read_result r = CACHE_READ_CORRUPT;
    unsigned char header[CACHE_HEADER_SIZE];
    unsigned char digest[32];
    void *payload = NULL;
    uint64_t payload_size = 0;
    struct stat st;
    prism_cache_meta meta;

    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return CACHE_READ_ABSENT;
        snprintf(why, why_size, "cannot open: %s", strerror(errno));
        return CACHE_READ_ERROR;
    }
    if (fstat(fd, &st) != 0) {
        snprintf(why, why_size, "cannot stat: %s", strerror(errno));
        r = CACHE_READ_ERROR;
        goto done;
    }
    if (st_out)
        *st_out = st;
    if (!S_ISREG(st.st_mode)) {
        snprintf(why, why_size, "not a regular file");
        goto done;
    }
    char fix[CACHE_PATH_BUF + 64];
    if (!prism_cache__stat_trusted(&st, path, why, why_size, fix,
                                   sizeof fix)) {
        r = CACHE_READ_UNTRUSTED;
        goto done;
    }
    if ((uint64_t)st.st_size < CACHE_HEADER_SIZE) {
        snprintf(why, why_size,
                 "truncated: %lld bytes, shorter than the header",
                 (long long)st.st_size);
        goto done;
    }
    ssize_t got = read_full(fd, header, sizeof header, 0);
    if (got != (ssize_t)sizeof header) {
        snprintf(why, why_size, "read error: %s",
                 got < 0 ? strerror(errno) : "file shrank while reading");
        goto done;
    }
    if (!header_decode(header, key, (uint64_t)st.st_size, &meta, &payload_size,
                       why, why_size))
        goto done;
    if (!(flags & CACHE_READ_HEADER_ONLY)) {
        payload = malloc(payload_size ? (size_t)payload_size : 1);
        if (!payload) {
            snprintf(why, why_size, "out of memory reading %llu bytes",
                     (unsigned long long)payload_size);
            r = CACHE_READ_ERROR;
            goto done;
        }
        got = read_full(fd, payload, (size_t)payload_size, CACHE_HEADER_SIZE);
        if (got != (ssize_t)payload_size) {
            snprintf(why, why_size, "read error: %s",
                     got < 0 ? strerror(errno) : "file shrank while reading");
            goto done;
        }
        prism_sha256(payload_size ? payload : "", (size_t)payload_size, digest);
        if (memcmp(digest, header + 48, 32) != 0) {
            snprintf(why, why_size, "payload checksum mismatch");
            goto done;
        }
    }
    /* Last access for eviction; failure (e.g. not our file) is harmless. */
    if (flags & CACHE_READ_TOUCH)
        (void)futimens(fd, NULL);
    out->meta = meta;
    out->payload = payload;
    out->payload_size = (size_t)payload_size;
    payload = NULL;
    r = CACHE_READ_OK;

done:
    free(payload);
    close(fd);
    return r;
}

bool prism_cache_inspect_image(const char *name, const void *data,
                               size_t size, prism_cache_inspected *out) {
    unsigned char key[32];
    if (!name || !prism_cache__entry_name_parse(name, key))
        return false;
    memset(out, 0, sizeof *out);
    prism_hex(key, 32, out->key_hex);
    out->size = (int64_t)size;
    uint64_t payload_size;
    if (!data || size < CACHE_HEADER_SIZE) {
        out->state = PRISM_CACHE_ENTRY_BAD;
        snprintf(out->why, sizeof out->why,
                 "truncated: %zu bytes, shorter than the header", size);
    } else if (!header_decode(data, key, (uint64_t)size, &out->meta,
                              &payload_size, out->why, sizeof out->why)) {
        out->state = PRISM_CACHE_ENTRY_BAD;
    }
    return true;
}

void prism_cache_entry_free(prism_cache_entry *entry) {
    if (!entry)
        return;
    free(entry->payload);
    free(entry->log);
    memset(entry, 0, sizeof *entry);
}
