/*
 * cubin_info.c - registers, local and shared memory from a cubin's ELF.
 *
 * A cubin is a little-endian ELF64 file.  ptxas leaves what it knows about
 * each function in sections of its own:
 *   .nv.info            records {format, attribute, size, payload}; the
 *                       register count (EIATTR_REGCOUNT), stack frame
 *                       (EIATTR_FRAME_SIZE) and whole stack
 *                       (EIATTR_MAX_STACK_SIZE) of a function are records
 *                       whose payload is {symbol index, value}, both u32
 *   .nv.info.KERNEL     the same format, per entry point
 *   .nv.shared.KERNEL   a NOBITS section as large as the kernel's static
 *                       shared memory; on sm_90 and newer it starts with
 *                       the 1 KB the system reserves (the cubin then has a
 *                       .nv.shared.reserved.N section), which ptxas -v
 *                       does not count and neither do we.
 * The cubin does not record spills apart from other local memory.
 *
 * The image comes from a cache file or a kernel pack, so nothing in it is
 * trusted: every offset and size is checked against the image before it
 * is read, with arithmetic that cannot wrap, and anything that does not
 * fit leaves the statistics unknown.  Nothing is allocated.
 */
#include "compile/cubin_info.h"

#include <limits.h>
#include <stdint.h>
#include <string.h>

#define EIFMT_NVAL 1
#define EIFMT_BVAL 2
#define EIFMT_HVAL 3
#define EIFMT_SVAL 4
#define EIATTR_FRAME_SIZE 0x11
#define EIATTR_MAX_STACK_SIZE 0x23
#define EIATTR_REGCOUNT 0x2f
#define SHT_NOBITS 8
#define SECTION_HEADER_BYTES 64
#define RESERVED_SHARED 1024

typedef struct elf_image {
    const unsigned char *p;
    size_t size;
} elf_image;

typedef struct section {
    uint32_t name, type;
    uint64_t offset, size;
} section;

/* Whether [off, off + len) lies inside the image. */
static bool in_bounds(const elf_image *im, uint64_t off, uint64_t len) {
    return off <= im->size && len <= im->size - off;
}

static uint16_t le16(const unsigned char *p) {
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static uint64_t le64(const unsigned char *p) {
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

bool prism_cubin_is_elf(const void *image, size_t size) {
    return image && size >= 4 && memcmp(image, "\177ELF", 4) == 0;
}

static bool read_section(const elf_image *im, uint64_t shoff, unsigned i,
                         section *s) {
    uint64_t at = shoff + (uint64_t)i * SECTION_HEADER_BYTES;
    if (!in_bounds(im, at, SECTION_HEADER_BYTES))
        return false;
    const unsigned char *h = im->p + at;
    s->name = le32(h);
    s->type = le32(h + 4);
    s->offset = le64(h + 24);
    s->size = le64(h + 32);
    return true;
}

/* Whether section name `off` of the string table starts with prefix
 * (exact: the whole name equals it). */
static bool name_is(const elf_image *im, const section *strtab, uint32_t off,
                    const char *prefix, bool exact) {
    size_t n = strlen(prefix);
    if (off >= strtab->size || !in_bounds(im, strtab->offset + off, 1))
        return false;
    uint64_t room = strtab->size - off;
    uint64_t left = im->size - (strtab->offset + off);
    if (room > left)
        room = left;
    const unsigned char *s = im->p + strtab->offset + off;
    if (room < n + (exact ? 1 : 0) || memcmp(s, prefix, n) != 0)
        return false;
    return !exact || s[n] == '\0';
}

static void take_max(int *field, uint32_t value) {
    if (value <= INT_MAX && (int)value > *field)
        *field = (int)value;
}

/* The records of one .nv.info section; stops at the first malformed one. */
static void read_info(const elf_image *im, const section *s,
                      prism_cubin_stats *out) {
    if (s->type == SHT_NOBITS || !in_bounds(im, s->offset, s->size))
        return;
    const unsigned char *p = im->p + s->offset;
    uint64_t at = 0;
    while (s->size - at >= 4) {
        unsigned fmt = p[at], attr = p[at + 1];
        if (fmt == EIFMT_NVAL || fmt == EIFMT_BVAL || fmt == EIFMT_HVAL) {
            at += 4;
            continue;
        }
        if (fmt != EIFMT_SVAL)
            return;
        uint16_t len = le16(p + at + 2);
        if (len > s->size - at - 4)
            return;
        const unsigned char *v = p + at + 4;
        if (len >= 8) {
            uint32_t value = le32(v + 4);
            if (attr == EIATTR_REGCOUNT)
                take_max(&out->registers, value);
            else if (attr == EIATTR_FRAME_SIZE)
                take_max(&out->frame_bytes, value);
            else if (attr == EIATTR_MAX_STACK_SIZE)
                take_max(&out->stack_bytes, value);
        }
        at += 4 + (uint64_t)len;
    }
}

bool prism_cubin_read_stats(const void *data, size_t size,
                            prism_cubin_stats *out) {
    out->registers = out->frame_bytes = out->stack_bytes = -1;
    out->shared_bytes = -1;
    elf_image im = {data, size};
    /* ELF64 (class 2), little-endian (data 1), 64-byte section headers */
    if (!prism_cubin_is_elf(data, size) || size < 64 || im.p[4] != 2 ||
        im.p[5] != 1 || le16(im.p + 0x3a) != SECTION_HEADER_BYTES)
        return false;
    uint64_t shoff = le64(im.p + 0x28);
    unsigned shnum = le16(im.p + 0x3c), shstrndx = le16(im.p + 0x3e);
    section strtab;
    if (!in_bounds(&im, shoff, (uint64_t)shnum * SECTION_HEADER_BYTES) ||
        shstrndx >= shnum || !read_section(&im, shoff, shstrndx, &strtab) ||
        strtab.type == SHT_NOBITS || !in_bounds(&im, strtab.offset, strtab.size))
        return false;
    int shared = -1;
    bool reserved = false;
    for (unsigned i = 0; i < shnum; i++) {
        section s;
        if (!read_section(&im, shoff, i, &s))
            return false;
        if (name_is(&im, &strtab, s.name, ".nv.info", true) ||
            name_is(&im, &strtab, s.name, ".nv.info.", false))
            read_info(&im, &s, out);
        else if (name_is(&im, &strtab, s.name, ".nv.shared.reserved.", false))
            reserved = true;
        else if (name_is(&im, &strtab, s.name, ".nv.shared.", false) &&
                 s.size <= INT_MAX && (int)s.size > shared)
            shared = (int)s.size;
    }
    if (out->registers < 0)
        return false;
    if (shared < 0)
        shared = 0; /* no static shared memory at all */
    if (reserved)
        shared = shared > RESERVED_SHARED ? shared - RESERVED_SHARED : 0;
    out->shared_bytes = shared;
    return true;
}
