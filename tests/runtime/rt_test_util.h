/* rt_test_util.h - helpers shared by the runtime's unit tests (tests/unit/test_runtime_*.c):
 * temporary model repositories built from the committed test models, a log collector and
 * completion waiters. Header-only so that each test stays one executable. */
#ifndef RT_TEST_UTIL_H
#define RT_TEST_UTIL_H

#include "runtime/runtime.h"

#include <errno.h>
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The committed models (tests/runtime/models/), found from this header's own path. */
static inline const char *tu_models_dir(void)
{
    static char dir[4096];
    if (!dir[0]) {
        snprintf(dir, sizeof(dir), "%s", __FILE__);
        char *slash = strrchr(dir, '/');
        if (slash)
            snprintf(slash, sizeof(dir) - (size_t)(slash - dir), "/models");
        else
            snprintf(dir, sizeof(dir), "tests/runtime/models");
    }
    return dir;
}

/* Removes PATH and everything below it, without following symbolic links. */
static inline void tu_rmrf(const char *path)
{
    struct stat s;
    if (lstat(path, &s) != 0) return;
    if (S_ISDIR(s.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *de;
        while (d && (de = readdir(d))) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
            char sub[4096];
            snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
            tu_rmrf(sub);
        }
        if (d) closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

/* Creates a fresh temporary directory; the returned string is malloc'd. */
static inline char *tu_tmpdir(const char *tag)
{
    char tmpl[256];
    snprintf(tmpl, sizeof(tmpl), "/tmp/ferry-rt-%s-XXXXXX", tag);
    char *d = mkdtemp(tmpl);
    return d ? strdup(d) : NULL;
}

static inline int tu_mkdirs(const char *path)
{
    char buf[4096];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        mkdir(buf, 0755);
        *p = '/';
    }
    return mkdir(buf, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

static inline int tu_write(const char *path, const void *data, size_t len)
{
    /* Write to a temporary name and rename, as a deployment would: readers never see half a
     * file. */
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return -1;
    size_t n = fwrite(data, 1, len, f);
    fclose(f);
    if (n != len) return -1;
    return rename(tmp, path);
}

static inline int tu_write_str(const char *path, const char *text)
{
    return tu_write(path, text, strlen(text));
}

static inline int tu_copy(const char *from, const char *to)
{
    FILE *f = fopen(from, "rb");
    if (!f) return -1;
    char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    return tu_write(to, buf, n);
}

/* Puts models/MODEL_FILE at REPO/NAME/VERSION/model.onnx. */
static inline int tu_add_version(const char *repo, const char *name, int version,
                                 const char *model_file)
{
    char dir[4096], from[4096], to[4200];
    snprintf(dir, sizeof(dir), "%s/%s/%d", repo, name, version);
    if (tu_mkdirs(dir)) return -1;
    snprintf(from, sizeof(from), "%s/%s", tu_models_dir(), model_file);
    snprintf(to, sizeof(to), "%s/model.onnx", dir);
    return tu_copy(from, to);
}

static inline int tu_write_config(const char *repo, const char *name, const char *text)
{
    char dir[4096], path[4200];
    snprintf(dir, sizeof(dir), "%s/%s", repo, name);
    if (tu_mkdirs(dir)) return -1;
    snprintf(path, sizeof(path), "%s/config.pbtxt", dir);
    return tu_write_str(path, text);
}

/* ---------------------------------------------------------------------------------------
 * Log collector: keeps the lines (bounded) for assertions; quiet unless FERRY_TEST_LOG is set.
 * ------------------------------------------------------------------------------------- */

typedef struct tu_log {
    pthread_mutex_t lock;
    char text[1 << 16];
    size_t len;
} tu_log;

static inline void tu_log_fn(void *user, rt_log_level level, const char *json)
{
    (void)level;
    tu_log *l = user;
    if (getenv("FERRY_TEST_LOG")) fprintf(stderr, "%s\n", json);
    pthread_mutex_lock(&l->lock);
    size_t n = strlen(json);
    if (l->len + n + 2 < sizeof(l->text)) {
        memcpy(l->text + l->len, json, n);
        l->len += n;
        l->text[l->len++] = '\n';
        l->text[l->len] = 0;
    }
    pthread_mutex_unlock(&l->lock);
}

static inline bool tu_log_has(tu_log *l, const char *needle)
{
    pthread_mutex_lock(&l->lock);
    bool found = strstr(l->text, needle) != NULL;
    pthread_mutex_unlock(&l->lock);
    return found;
}

static inline int tu_log_count(tu_log *l, const char *needle)
{
    pthread_mutex_lock(&l->lock);
    int n = 0;
    for (const char *p = l->text; (p = strstr(p, needle)); p++) n++;
    pthread_mutex_unlock(&l->lock);
    return n;
}

/* ---------------------------------------------------------------------------------------
 * Completion waiter: counts callbacks; the test waits for a number of them.
 * ------------------------------------------------------------------------------------- */

typedef struct tu_waiter {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done;
    int ok;
    int codes[FERRY_CODE_COUNT];
    /* Blocking: callbacks wait while `hold` is set (to keep an instance busy). */
    bool hold;
    int holding;
} tu_waiter;

static inline void tu_waiter_init(tu_waiter *w)
{
    memset(w, 0, sizeof(*w));
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
}

static inline void tu_waiter_destroy(tu_waiter *w)
{
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
}

/* Records the outcome; blocks while w->hold is set. Does not free the request. */
static inline void tu_waiter_note(tu_waiter *w, rt_request *req)
{
    pthread_mutex_lock(&w->lock);
    w->holding++;
    pthread_cond_broadcast(&w->cond);
    while (w->hold) pthread_cond_wait(&w->cond, &w->lock);
    w->holding--;
    ferry_code code = ferry_status_code(rt_request_status(req));
    w->codes[code]++;
    if (code == FERRY_OK) w->ok++;
    w->done++;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

static inline void tu_waiter_cb(rt_request *req, void *user)
{
    tu_waiter_note(user, req);
}

/* Waits until N callbacks finished (or 20 s passed); returns how many did. */
static inline int tu_wait_done(tu_waiter *w, int n)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 20;
    pthread_mutex_lock(&w->lock);
    while (w->done < n)
        if (pthread_cond_timedwait(&w->cond, &w->lock, &ts) == ETIMEDOUT) break;
    int done = w->done;
    pthread_mutex_unlock(&w->lock);
    return done;
}

/* Waits until N callbacks are blocked in the hold. */
static inline void tu_wait_holding(tu_waiter *w, int n)
{
    pthread_mutex_lock(&w->lock);
    while (w->holding < n) pthread_cond_wait(&w->cond, &w->lock);
    pthread_mutex_unlock(&w->lock);
}

static inline void tu_set_hold(tu_waiter *w, bool hold)
{
    pthread_mutex_lock(&w->lock);
    w->hold = hold;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

static inline void tu_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

#endif
