/* repository.c - the model repository: discovery, version policy, load, reload, unload, the
 * index, and handing out references to ready versions.
 *
 * Two locks, so that a slow load never stalls requests:
 *   repo_lock   serialises everything that reads the disk or loads (scan, load, unload); held
 *               for seconds while a large model loads.
 *   table_lock  guards the table of served versions; held only to look up or swap pointers.
 * A version is loaded and started completely outside table_lock, then swapped in; the versions
 * it replaces leave the table (their table reference is dropped) and drain: requests that
 * already hold them still complete, and the last reference puts them on the reap list, where
 * the housekeeping thread joins their instances and frees them. That thread also polls the
 * repository in poll mode.
 *
 * Request strings never reach the file system: names are validated and only looked up in the
 * table built by scanning. Paths are built from scanned directory entries and resolved with
 * realpath(); anything that resolves outside the repository (a symlink escape) is refused.
 */
#include "runtime/rt_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct vrec {
    int64_t version;
    rt_model_state state;
    char reason[RT_MAX_REASON];
    bool failed;     /* the last load of these files failed ... */
    rt_file_sig sig; /* ... and these were the files: not retried unchanged */
    rt_file_sig cfg_sig;
} vrec;

/* How an index row starts when a reload failed and the previous files still serve. */
#define FALLBACK "serving the previous files; "

typedef struct entry {
    char name[RT_MAX_NAME + 1];
    bool present;      /* found by the last scan */
    bool wanted;       /* should be loaded (always outside explicit mode) */
    rt_model **served; /* highest version first; each holds a table reference */
    size_t served_count;
    vrec *vrecs; /* the index rows of this model's versions */
    size_t vrec_count;
    char reason[RT_MAX_REASON]; /* about the model as a whole ("" when fine) */
    rt_file_sig cfg_sig;        /* the config.pbtxt that failed, not retried unchanged */
    bool cfg_failed;
} entry;

struct rt_runtime {
    rt_options opt;
    char *repo; /* realpath of the repository */
    size_t repo_len;
    char **start_models;
    size_t start_model_count;

    pthread_mutex_t repo_lock;
    pthread_mutex_t table_lock;
    entry **entries; /* sorted by name */
    size_t entry_count;

    _Atomic bool live;
    _Atomic bool stopping;

    pthread_mutex_t hk_lock;
    pthread_cond_t hk_cond;
    pthread_t hk;
    bool hk_started, hk_stop;
    rt_model *reap_head;

    pthread_mutex_t live_lock;
    rt_model *live_head;
};

/* ---------------------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------------------- */

bool rt_name_valid(const char *name)
{
    if (!name || !name[0] || name[0] == '.') return false;
    size_t n = 0;
    for (const char *p = name; *p; p++, n++) {
        char c = *p;
        if (n >= RT_MAX_NAME) return false;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

bool rt_version_parse(const char *text, int64_t *out)
{
    if (!text || text[0] < '1' || text[0] > '9') return false;
    int64_t v = 0;
    size_t n = 0;
    for (const char *p = text; *p; p++, n++) {
        if (n >= 18 || *p < '0' || *p > '9') return false;
        v = v * 10 + (*p - '0');
    }
    *out = v;
    return true;
}

/* Copies a name from a request into BUF for an error message: bounded and printable only. */
static const char *shown_name(const char *name, char *buf, size_t size)
{
    size_t i = 0;
    for (; name && name[i] && i + 4 < size && i < 64; i++)
        buf[i] = (name[i] >= 0x20 && name[i] < 0x7f) ? name[i] : '?';
    if (name && name[i] && i + 4 < size) {
        memcpy(buf + i, "...", 3);
        i += 3;
    }
    buf[i] = 0;
    return buf;
}

const char *rt_model_state_name(rt_model_state state)
{
    switch (state) {
    case RT_STATE_LOADING:
        return "LOADING";
    case RT_STATE_READY:
        return "READY";
    case RT_STATE_UNLOADING:
        return "UNLOADING";
    default:
        return "UNAVAILABLE";
    }
}

bool rt_runtime_stopping(const rt_runtime *rt)
{
    return atomic_load(&rt->stopping);
}

bool rt_runtime_live(const rt_runtime *rt)
{
    return rt && atomic_load(&rt->live);
}

uint64_t rt_runtime_default_timeout(const rt_runtime *rt)
{
    return rt->opt.default_timeout_us;
}

void rt_jlog_emit(rt_runtime *rt, rt_jlog *j)
{
    if (j->level < rt->opt.log_level) return;
    j->buf[j->len++] = '}'; /* always room: the reserve */
    j->buf[j->len] = 0;
    if (rt->opt.log)
        rt->opt.log(rt->opt.log_user, j->level, j->buf);
    else
        fprintf(stderr, "%s\n", j->buf);
}

static void log_model(rt_runtime *rt, rt_log_level level, const char *event, const char *name,
                      int64_t version, const char *reason)
{
    rt_jlog j;
    rt_jlog_begin(&j, level, event);
    rt_jlog_str(&j, "model", name);
    if (version > 0) rt_jlog_int(&j, "version", version);
    if (reason) rt_jlog_str(&j, "reason", reason);
    rt_jlog_emit(rt, &j);
}

static void sig_of(const struct stat *s, rt_file_sig *sig)
{
    sig->exists = true;
    sig->dev = s->st_dev;
    sig->ino = s->st_ino;
    sig->size = s->st_size;
    sig->mtime_ns = (int64_t)s->st_mtim.tv_sec * 1000000000 + s->st_mtim.tv_nsec;
}

static bool sig_equal(const rt_file_sig *a, const rt_file_sig *b)
{
    if (a->exists != b->exists) return false;
    if (!a->exists) return true;
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size && a->mtime_ns == b->mtime_ns;
}

/* Resolves REL (a path made of scanned, validated components) inside the repository. On
 * success *OUT is a malloc'd real path inside the repository and ST_OUT its stat. Errors:
 * FERRY_ERR_NOT_FOUND when it does not exist, FERRY_ERR_INVALID_MODEL when it resolves outside
 * the repository. */
static ferry_status *confined(rt_runtime *rt, const char *rel, char **out, struct stat *st_out)
{
    *out = NULL;
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", rt->repo, rel) >= sizeof(path))
        return core_error(FERRY_ERR_INVALID_MODEL, "'%s': path too long", rel);
    char *real = realpath(path, NULL);
    if (!real) {
        if (errno == ENOENT || errno == ENOTDIR)
            return core_error(FERRY_ERR_NOT_FOUND, "'%s' does not exist", rel);
        return core_error(FERRY_ERR_IO, "'%s': %s", rel, strerror(errno));
    }
    bool inside =
        rt->repo_len == 1 || (!strncmp(real, rt->repo, rt->repo_len) && real[rt->repo_len] == '/');
    if (!inside) {
        free(real);
        return core_error(FERRY_ERR_INVALID_MODEL,
                          "'%s' resolves outside the model repository (symbolic link?)", rel);
    }
    if (st_out && stat(real, st_out) != 0) {
        int e = errno;
        free(real);
        return core_error(FERRY_ERR_IO, "'%s': %s", rel, strerror(e));
    }
    *out = real;
    return NULL;
}

/* Reads a whole file of at most MAX bytes. */
static ferry_status *read_small_file(const char *path, const char *label, size_t max, char **out,
                                     size_t *len)
{
    *out = NULL;
    ferry_status *st = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return core_error(FERRY_ERR_IO, "%s: %s", label, strerror(errno));
    char *buf = malloc(max + 1);
    size_t n = 0;
    if (!buf) {
        st = core_error(FERRY_ERR_NO_MEMORY, "out of memory");
        goto out;
    }
    for (;;) {
        ssize_t r = read(fd, buf + n, max + 1 - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            st = core_error(FERRY_ERR_IO, "%s: %s", label, strerror(errno));
            goto out;
        }
        if (r == 0) break;
        n += (size_t)r;
        if (n > max) {
            st = core_error(FERRY_ERR_INVALID_MODEL, "%s: larger than %zu bytes", label, max);
            goto out;
        }
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    buf = NULL;
out:
    free(buf);
    close(fd);
    return st;
}

/* ---------------------------------------------------------------------------------------
 * The table (callers hold table_lock, or repo_lock for reads by the only writer)
 * ------------------------------------------------------------------------------------- */

static entry *find_entry(rt_runtime *rt, const char *name, size_t *pos)
{
    size_t lo = 0, hi = rt->entry_count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(rt->entries[mid]->name, name);
        if (!c) {
            if (pos) *pos = mid;
            return rt->entries[mid];
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (pos) *pos = lo;
    return NULL;
}

/* Adds an entry for NAME (under repo_lock; takes table_lock for the insertion). */
static ferry_status *add_entry(rt_runtime *rt, const char *name, entry **out)
{
    size_t pos;
    if ((*out = find_entry(rt, name, &pos))) return NULL;
    if (rt->entry_count >= RT_MAX_MODELS)
        return core_error(FERRY_ERR_NO_MEMORY, "more than %d models in the repository",
                          RT_MAX_MODELS);
    entry *e = calloc(1, sizeof(*e));
    entry **grown = realloc(rt->entries, (rt->entry_count + 1) * sizeof(*grown));
    if (!e || !grown) {
        free(e);
        if (grown) rt->entries = grown;
        return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    }
    snprintf(e->name, sizeof(e->name), "%s", name);
    e->wanted = rt->opt.control_mode != RT_CONTROL_EXPLICIT;
    pthread_mutex_lock(&rt->table_lock);
    rt->entries = grown;
    memmove(&rt->entries[pos + 1], &rt->entries[pos], (rt->entry_count - pos) * sizeof(entry *));
    rt->entries[pos] = e;
    rt->entry_count++;
    pthread_mutex_unlock(&rt->table_lock);
    *out = e;
    return NULL;
}

static void remove_entry(rt_runtime *rt, entry *e)
{
    size_t pos;
    pthread_mutex_lock(&rt->table_lock);
    if (find_entry(rt, e->name, &pos) == e) {
        memmove(&rt->entries[pos], &rt->entries[pos + 1],
                (rt->entry_count - pos - 1) * sizeof(entry *));
        rt->entry_count--;
    }
    pthread_mutex_unlock(&rt->table_lock);
    free(e->served);
    free(e->vrecs);
    free(e);
}

/* Replaces E's served list with NEW_LIST (ownership passes) and its index rows with VRECS;
 * drops the table reference of every version no longer served. CLOSE: those versions stop
 * taking requests at once (unload), rather than only new acquires (replacement). */
static void publish(rt_runtime *rt, entry *e, rt_model **new_list, size_t new_count, vrec *vrecs,
                    size_t vrec_count, bool close)
{
    pthread_mutex_lock(&rt->table_lock);
    rt_model **old = e->served;
    size_t old_count = e->served_count;
    e->served = new_list;
    e->served_count = new_count;
    free(e->vrecs);
    e->vrecs = vrecs;
    e->vrec_count = vrec_count;
    pthread_mutex_unlock(&rt->table_lock);
    for (size_t i = 0; i < old_count; i++) {
        bool kept = false;
        for (size_t j = 0; j < new_count && !kept; j++) kept = new_list[j] == old[i];
        if (kept) continue;
        atomic_store(&old[i]->state, RT_STATE_UNLOADING);
        if (close) rt_model_close_queue(old[i]);
        log_model(rt, RT_LOG_INFO, close ? "model_unloading" : "model_retired", e->name,
                  old[i]->version, NULL);
        rt_model_release(old[i]);
    }
    free(old);
}

/* ---------------------------------------------------------------------------------------
 * Loading one model directory
 * ------------------------------------------------------------------------------------- */

static int cmp_desc(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Lists the numeric version directories of model NAME, highest first, at most
 * RT_MAX_VERSIONS (the highest ones). */
static ferry_status *list_versions(rt_runtime *rt, const char *name, const char *dir_real,
                                   int64_t *versions, size_t *count)
{
    *count = 0;
    DIR *d = opendir(dir_real);
    if (!d) return core_error(FERRY_ERR_IO, "model '%s': cannot list: %s", name, strerror(errno));
    struct dirent *de;
    while ((de = readdir(d))) {
        int64_t v;
        if (!rt_version_parse(de->d_name, &v)) continue;
        char rel[RT_MAX_NAME + 32], *real;
        struct stat s;
        snprintf(rel, sizeof(rel), "%s/%s", name, de->d_name);
        ferry_status *st = confined(rt, rel, &real, &s);
        if (st) {
            log_model(rt, RT_LOG_WARN, "version_skipped", name, v, ferry_status_message(st));
            ferry_status_free(st);
            continue;
        }
        free(real);
        if (!S_ISDIR(s.st_mode)) continue;
        if (*count < RT_MAX_VERSIONS) {
            versions[(*count)++] = v;
        } else {
            /* Keep the highest RT_MAX_VERSIONS: replace the lowest when this one is higher. */
            size_t lo = 0;
            for (size_t i = 1; i < *count; i++)
                if (versions[i] < versions[lo]) lo = i;
            if (v > versions[lo]) versions[lo] = v;
        }
    }
    closedir(d);
    if (*count) qsort(versions, *count, sizeof(int64_t), cmp_desc);
    return NULL;
}

/* The versions POLICY selects from AVAILABLE (highest first), highest first. */
static size_t select_versions(const rt_version_policy *p, const int64_t *avail, size_t n,
                              int64_t *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        bool take = false;
        if (p->kind == RT_POLICY_ALL)
            take = true;
        else if (p->kind == RT_POLICY_LATEST)
            take = i < p->num_versions;
        else
            for (size_t j = 0; j < p->version_count && !take; j++)
                take = p->versions[j] == avail[i];
        if (take) out[k++] = avail[i];
    }
    return k;
}

typedef struct model_files {
    char *dir;      /* realpath of <repo>/<name> */
    char *cfg_text; /* NULL: no config.pbtxt */
    size_t cfg_len;
    rt_file_sig cfg_sig;
    char cfg_label[RT_MAX_NAME + 16];
    rt_model_config cfg; /* parsed (unbound) for the policy and file name */
} model_files;

static void model_files_free(model_files *f)
{
    free(f->dir);
    free(f->cfg_text);
    rt_config_free(&f->cfg);
}

/* Finds <repo>/NAME and reads its config.pbtxt. */
static ferry_status *read_model_dir(rt_runtime *rt, const char *name, model_files *f)
{
    memset(f, 0, sizeof(*f));
    struct stat s;
    ferry_status *st = confined(rt, name, &f->dir, &s);
    if (st) return st;
    if (!S_ISDIR(s.st_mode))
        return core_error(FERRY_ERR_NOT_FOUND, "model '%s': not a directory", name);
    char rel[RT_MAX_NAME + 16], *cfg_path;
    snprintf(rel, sizeof(rel), "%s/config.pbtxt", name);
    snprintf(f->cfg_label, sizeof(f->cfg_label), "%s/config.pbtxt", name);
    st = confined(rt, rel, &cfg_path, &s);
    if (st && ferry_status_code(st) == FERRY_ERR_NOT_FOUND) {
        ferry_status_free(st);
        return NULL;
    }
    if (st) return st;
    sig_of(&s, &f->cfg_sig);
    st = read_small_file(cfg_path, f->cfg_label, RT_MAX_CONFIG_BYTES, &f->cfg_text, &f->cfg_len);
    free(cfg_path);
    if (st) return st;
    if ((st = rt_config_parse(f->cfg_text, f->cfg_len, f->cfg_label, &f->cfg))) return st;
    if (f->cfg.name[0] && strcmp(f->cfg.name, name))
        return core_error(FERRY_ERR_INVALID_MODEL,
                          "%s: name '%s' does not match the model directory '%s'", f->cfg_label,
                          f->cfg.name, name);
    return NULL;
}

/* Resolves the model file of version V and returns its real path and signature. */
static ferry_status *model_file(rt_runtime *rt, const char *name, int64_t v, const char *filename,
                                char **real, rt_file_sig *sig)
{
    char rel[RT_MAX_NAME * 2 + 64];
    struct stat s;
    snprintf(rel, sizeof(rel), "%s/%lld/%s", name, (long long)v, filename);
    ferry_status *st = confined(rt, rel, real, &s);
    if (!st && S_ISDIR(s.st_mode)) {
        /* Triton allows model.onnx to be a directory holding model.onnx and its data files. */
        free(*real);
        snprintf(rel, sizeof(rel), "%s/%lld/%s/model.onnx", name, (long long)v, filename);
        st = confined(rt, rel, real, &s);
    }
    if (st) return st;
    if (!S_ISREG(s.st_mode)) {
        free(*real);
        *real = NULL;
        return core_error(FERRY_ERR_INVALID_MODEL, "'%s' is not a regular file", rel);
    }
    sig_of(&s, sig);
    return NULL;
}

/* Loads version V of model NAME from the files F; on success *OUT is a ready, started version. */
static ferry_status *load_version(rt_runtime *rt, const char *name, int64_t v, model_files *f,
                                  rt_model **out)
{
    *out = NULL;
    uint64_t t0 = rt_now_ns();
    char *path = NULL;
    rt_file_sig sig = {0};
    ferry_model *engine = NULL;
    rt_model_config cfg = {0};
    const char *filename = f->cfg_text ? f->cfg.default_model_filename : "model.onnx";
    ferry_status *st = model_file(rt, name, v, filename, &path, &sig);
    if (st) goto out;
    ferry_model_options mo = {.max_weight_bytes = rt->opt.max_weight_bytes};
    if ((st = ferry_model_open_file(path, &mo, &engine))) goto out;
    if (f->cfg_text)
        st = rt_config_parse(f->cfg_text, f->cfg_len, f->cfg_label, &cfg);
    else
        st = rt_config_derive(engine, name, rt->opt.default_max_batch, &cfg);
    if (st) goto out;
    if (!cfg.name || !cfg.name[0]) cfg.name = name; /* static lifetime not needed: copied below */
    if ((st = rt_config_bind(&cfg, engine, rt->opt.default_instances,
                             rt->opt.default_queue_capacity)))
        goto out;
    if (f->cfg_text) {
        char *n = core_pool_strndup(cfg.mem_, name, strlen(name));
        if (!n) {
            st = core_error(FERRY_ERR_NO_MEMORY, "out of memory");
            goto out;
        }
        cfg.name = n;
    }
    st = rt_model_start(rt, name, v, engine, &cfg, out);
    engine = NULL; /* owned by the model now, or freed */
    if (st) goto out;
    (*out)->model_sig = sig;
    (*out)->config_sig = f->cfg_sig;
    (*out)->load_ns = rt_now_ns() - t0;
    rt_jlog j;
    rt_jlog_begin(&j, RT_LOG_INFO, "model_ready");
    rt_jlog_str(&j, "model", name);
    rt_jlog_int(&j, "version", v);
    rt_jlog_num(&j, "load_ms", (double)(*out)->load_ns / 1e6);
    rt_jlog_int(&j, "instances", (*out)->instance_count);
    rt_jlog_int(&j, "max_batch_size", (*out)->cfg.max_batch_size);
    rt_jlog_emit(rt, &j);
out:
    if (st) {
        ferry_model_close(engine);
        rt_config_free(&cfg);
        st = core_error_wrap(st, "model '%s' version %lld", name, (long long)v);
    }
    free(path);
    return st;
}

static const vrec *find_vrec(const entry *e, int64_t v)
{
    for (size_t i = 0; i < e->vrec_count; i++)
        if (e->vrecs[i].version == v) return &e->vrecs[i];
    return NULL;
}

static void set_reason(char *dst, const char *prefix, const ferry_status *st)
{
    snprintf(dst, RT_MAX_REASON, "%s%s", prefix, ferry_status_message(st));
}

/* Shows version V as LOADING in the index while it loads. */
static void mark_loading(rt_runtime *rt, entry *e, int64_t v)
{
    pthread_mutex_lock(&rt->table_lock);
    for (size_t i = 0; i < e->vrec_count; i++)
        if (e->vrecs[i].version == v) {
            e->vrecs[i].state = RT_STATE_LOADING;
            e->vrecs[i].reason[0] = 0;
            pthread_mutex_unlock(&rt->table_lock);
            return;
        }
    vrec *grown = realloc(e->vrecs, (e->vrec_count + 1) * sizeof(vrec));
    if (grown) {
        e->vrecs = grown;
        memset(&grown[e->vrec_count], 0, sizeof(vrec));
        grown[e->vrec_count].version = v;
        grown[e->vrec_count].state = RT_STATE_LOADING;
        e->vrec_count++;
    }
    pthread_mutex_unlock(&rt->table_lock);
}

/* E's flags are read by the index under table_lock; the repository changes them under both. */
static void set_wanted(rt_runtime *rt, entry *e, bool wanted)
{
    pthread_mutex_lock(&rt->table_lock);
    e->wanted = wanted;
    pthread_mutex_unlock(&rt->table_lock);
}

static void set_model_reason(rt_runtime *rt, entry *e, const char *reason)
{
    pthread_mutex_lock(&rt->table_lock);
    snprintf(e->reason, sizeof(e->reason), "%s", reason);
    pthread_mutex_unlock(&rt->table_lock);
}

/* Brings model E's served versions in line with the directory: loads what the policy selects
 * and is not served yet (or changed on disk), keeps what still matches, retires the rest. When
 * a selected version fails, previously served versions stay (up to the number selected). FORCE
 * retries versions that failed before even if their files did not change.
 * Caller holds repo_lock. Returns the first failure (also recorded in the index). */
static ferry_status *sync_model(rt_runtime *rt, entry *e, bool force)
{
    model_files f;
    ferry_status *first = NULL;
    int64_t *avail = NULL, *want = NULL;
    rt_model **list = NULL;
    vrec *vrecs = NULL;
    size_t nlist = 0, nv = 0;
    ferry_status *st = read_model_dir(rt, e->name, &f);
    if (st) {
        bool unchanged = e->cfg_failed && sig_equal(&e->cfg_sig, &f.cfg_sig);
        e->cfg_failed = true;
        e->cfg_sig = f.cfg_sig;
        set_model_reason(rt, e, ferry_status_message(st));
        if (!unchanged || force)
            log_model(rt, RT_LOG_ERROR, "model_load_failed", e->name, 0, ferry_status_message(st));
        model_files_free(&f);
        return st; /* whatever was served keeps serving */
    }
    e->cfg_failed = false;
    set_model_reason(rt, e, "");
    size_t navail = 0;
    avail = malloc(RT_MAX_VERSIONS * sizeof(int64_t));
    want = malloc(RT_MAX_VERSIONS * sizeof(int64_t));
    list = calloc(RT_MAX_VERSIONS * 2, sizeof(rt_model *));
    vrecs = calloc(RT_MAX_VERSIONS * 2, sizeof(vrec));
    if (!avail || !want || !list || !vrecs) {
        first = core_error(FERRY_ERR_NO_MEMORY, "out of memory");
        goto out;
    }
    if ((first = list_versions(rt, e->name, f.dir, avail, &navail))) {
        set_model_reason(rt, e, ferry_status_message(first));
        goto out;
    }
    rt_version_policy derived_policy = {.kind = RT_POLICY_LATEST, .num_versions = 1};
    const rt_version_policy *policy = f.cfg_text ? &f.cfg.version_policy : &derived_policy;
    size_t nwant = select_versions(policy, avail, navail, want);
    if (!navail) {
        first = core_error(FERRY_ERR_NOT_FOUND, "model '%s' has no version directory", e->name);
        set_model_reason(rt, e, ferry_status_message(first));
    } else if (!nwant) {
        first = core_error(FERRY_ERR_NOT_FOUND,
                           "model '%s': the version policy selects none of its versions", e->name);
        set_model_reason(rt, e, ferry_status_message(first));
    }
    size_t failed = 0;
    for (size_t i = 0; i < nwant; i++) {
        int64_t v = want[i];
        rt_model *cur = NULL;
        for (size_t j = 0; j < e->served_count; j++)
            if (e->served[j]->version == v) cur = e->served[j];
        char *path = NULL;
        rt_file_sig sig = {0};
        const char *filename = f.cfg_text ? f.cfg.default_model_filename : "model.onnx";
        ferry_status *fst = model_file(rt, e->name, v, filename, &path, &sig);
        free(path);
        ferry_status_free(fst); /* a missing file fails the load below with its own message */
        if (cur && sig_equal(&cur->model_sig, &sig) && sig_equal(&cur->config_sig, &f.cfg_sig)) {
            list[nlist++] = cur;
            continue;
        }
        const vrec *old = find_vrec(e, v);
        if (!force && old && old->failed && sig_equal(&old->sig, &sig) &&
            sig_equal(&old->cfg_sig, &f.cfg_sig)) {
            /* Failed before and nothing changed: do not reload a broken file every poll. */
            vrec *r = &vrecs[nv++];
            *r = *old;
            r->state = RT_STATE_UNAVAILABLE;
            size_t k = strlen(FALLBACK);
            if (!strncmp(r->reason, FALLBACK, k))
                memmove(r->reason, r->reason + k, strlen(r->reason + k) + 1);
            failed++;
            continue;
        }
        mark_loading(rt, e, v);
        rt_model *m;
        ferry_status *lst = load_version(rt, e->name, v, &f, &m);
        if (lst) {
            vrec *r = &vrecs[nv++];
            r->version = v;
            r->state = RT_STATE_UNAVAILABLE;
            r->failed = true;
            r->sig = sig;
            r->cfg_sig = f.cfg_sig;
            set_reason(r->reason, "load failed: ", lst);
            log_model(rt, RT_LOG_ERROR, "model_load_failed", e->name, v, ferry_status_message(lst));
            if (!first)
                first = lst;
            else
                ferry_status_free(lst);
            failed++;
            continue;
        }
        list[nlist++] = m;
    }
    /* A failed version leaves the previously served ones serving, up to the number selected. */
    if (failed || first) {
        for (size_t j = 0; j < e->served_count && nlist < (nwant ? nwant : e->served_count); j++) {
            bool in = false;
            for (size_t k = 0; k < nlist && !in; k++)
                in = list[k]->version == e->served[j]->version;
            if (!in) list[nlist++] = e->served[j];
        }
    }
    /* Highest first (fallbacks may be out of order). */
    for (size_t a = 1; a < nlist; a++)
        for (size_t b = a; b > 0 && list[b]->version > list[b - 1]->version; b--) {
            rt_model *t = list[b];
            list[b] = list[b - 1];
            list[b - 1] = t;
        }
    for (size_t k = 0; k < nlist; k++) {
        vrec *r = &vrecs[nv++];
        memset(r, 0, sizeof(*r));
        r->version = list[k]->version;
        r->state = RT_STATE_READY;
        /* A failed reload of a served version: one READY row that says why the old files
         * still serve, and remembers the failure so that polling does not retry it. */
        for (size_t q = 0; q + 1 < nv; q++)
            if (vrecs[q].version == r->version && vrecs[q].state == RT_STATE_UNAVAILABLE) {
                snprintf(r->reason, sizeof(r->reason), FALLBACK "%s", vrecs[q].reason);
                r->failed = true;
                r->sig = vrecs[q].sig;
                r->cfg_sig = vrecs[q].cfg_sig;
                vrecs[q].version = -2; /* dropped below */
            }
    }
    size_t w = 0;
    for (size_t k = 0; k < nv; k++)
        if (vrecs[k].version != -2) vrecs[w++] = vrecs[k];
    nv = w;
    rt_model **final = NULL;
    if (nlist) {
        final = malloc(nlist * sizeof(*final));
        if (!final) {
            /* Could not publish: drop what was loaded just now, keep the old list. */
            for (size_t k = 0; k < nlist; k++) {
                bool old = false;
                for (size_t j = 0; j < e->served_count && !old; j++) old = e->served[j] == list[k];
                if (!old) rt_model_release(list[k]);
            }
            if (!first) first = core_error(FERRY_ERR_NO_MEMORY, "out of memory");
            goto out;
        }
        memcpy(final, list, nlist * sizeof(*final));
    }
    vrec *rows = nv ? malloc(nv * sizeof(vrec)) : NULL;
    if (nv && rows) memcpy(rows, vrecs, nv * sizeof(vrec));
    publish(rt, e, final, nlist, rows, rows ? nv : 0, false);
out:
    free(avail);
    free(want);
    free(list);
    free(vrecs);
    model_files_free(&f);
    return first;
}

/* Retires every served version of E. CLOSE: stop their queues at once (an unload). */
static void unload_entry(rt_runtime *rt, entry *e, bool close, const char *reason)
{
    vrec *rows = e->served_count ? calloc(e->served_count, sizeof(vrec)) : NULL;
    size_t n = 0;
    for (size_t i = 0; rows && i < e->served_count; i++) {
        rows[n].version = e->served[i]->version;
        rows[n].state = RT_STATE_UNAVAILABLE;
        snprintf(rows[n].reason, sizeof(rows[n].reason), "%s", reason);
        n++;
    }
    publish(rt, e, NULL, 0, rows, n, close);
}

/* ---------------------------------------------------------------------------------------
 * Scanning
 * ------------------------------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Lists the model directories (valid names, confined, directories), sorted. */
static ferry_status *list_models(rt_runtime *rt, char ***out, size_t *count)
{
    *out = NULL;
    *count = 0;
    DIR *d = opendir(rt->repo);
    if (!d) return core_error(FERRY_ERR_IO, "model repository '%s': %s", rt->repo, strerror(errno));
    char **names = NULL;
    size_t n = 0;
    ferry_status *st = NULL;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!rt_name_valid(de->d_name)) continue;
        if (n >= RT_MAX_MODELS) {
            log_model(rt, RT_LOG_WARN, "model_skipped", de->d_name, 0,
                      "the repository holds more models than the limit");
            break;
        }
        struct stat s;
        char *real;
        ferry_status *cst = confined(rt, de->d_name, &real, &s);
        bool failed = cst != NULL;
        bool escape = failed && ferry_status_code(cst) == FERRY_ERR_INVALID_MODEL;
        ferry_status_free(cst);
        free(real);
        /* An escaping entry is listed (its load fails with the reason), a plain file is not. */
        if (!escape && (failed || !S_ISDIR(s.st_mode))) continue;
        char **grown = realloc(names, (n + 1) * sizeof(*grown));
        char *copy = strdup(de->d_name);
        if (!grown || !copy) {
            free(copy);
            if (grown) names = grown;
            st = core_error(FERRY_ERR_NO_MEMORY, "out of memory");
            break;
        }
        names = grown;
        names[n++] = copy;
    }
    closedir(d);
    if (st) {
        for (size_t i = 0; i < n; i++) free(names[i]);
        free(names);
        return st;
    }
    if (n) qsort(names, n, sizeof(*names), cmp_str);
    *out = names;
    *count = n;
    return NULL;
}

/* Rescans; LOAD: bring the served versions in line (poll mode and start-up). Caller holds
 * repo_lock. */
static ferry_status *rescan_locked(rt_runtime *rt, bool load)
{
    char **names;
    size_t n;
    ferry_status *st = list_models(rt, &names, &n);
    if (st) return st;
    /* Entries whose directory went away: unload (when loading) and forget them. */
    for (size_t i = 0; i < rt->entry_count;) {
        entry *e = rt->entries[i];
        if (n && bsearch(&(const char *){e->name}, names, n, sizeof(*names), cmp_str)) {
            i++;
            continue;
        }
        if (e->served_count && !load) {
            e->present = false;
            i++;
            continue;
        }
        if (e->served_count) {
            log_model(rt, RT_LOG_INFO, "model_removed", e->name, 0, NULL);
            unload_entry(rt, e, false, "removed from the repository");
        }
        remove_entry(rt, e);
    }
    for (size_t i = 0; i < n && !st; i++) {
        entry *e;
        st = add_entry(rt, names[i], &e);
        if (st) break;
        e->present = true;
        if (load && e->wanted) ferry_status_free(sync_model(rt, e, false));
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return st;
}

ferry_status *rt_runtime_rescan(rt_runtime *rt)
{
    pthread_mutex_lock(&rt->repo_lock);
    ferry_status *st = rt_runtime_stopping(rt)
                           ? core_error(FERRY_ERR_UNAVAILABLE, "the runtime is shutting down")
                           : rescan_locked(rt, rt->opt.control_mode == RT_CONTROL_POLL);
    pthread_mutex_unlock(&rt->repo_lock);
    return st;
}

/* Loads NAME (validated by the caller). Caller holds repo_lock. */
static ferry_status *load_locked(rt_runtime *rt, const char *name)
{
    char *real;
    struct stat s;
    ferry_status *st = confined(rt, name, &real, &s);
    if (!st && !S_ISDIR(s.st_mode))
        st = core_error(FERRY_ERR_NOT_FOUND, "'%s' is not a directory", name);
    free(real);
    if (st) {
        /* Only directories found in the repository get an entry: requests cannot grow the
         * table with names that do not exist. */
        if (ferry_status_code(st) == FERRY_ERR_NOT_FOUND)
            return core_error_wrap(st, "model '%s' is not in the repository", name);
        return st;
    }
    entry *e;
    if ((st = add_entry(rt, name, &e))) return st;
    e->present = true;
    set_wanted(rt, e, true);
    return sync_model(rt, e, true);
}

ferry_status *rt_runtime_load(rt_runtime *rt, const char *name)
{
    char shown[80];
    if (rt->opt.control_mode != RT_CONTROL_EXPLICIT)
        return core_error(FERRY_ERR_UNSUPPORTED,
                          "explicit model load is not allowed: the model control mode is '%s'",
                          rt->opt.control_mode == RT_CONTROL_POLL ? "poll" : "none");
    if (!rt_name_valid(name))
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "'%s' is not a valid model name",
                          shown_name(name, shown, sizeof(shown)));
    pthread_mutex_lock(&rt->repo_lock);
    ferry_status *st = rt_runtime_stopping(rt)
                           ? core_error(FERRY_ERR_UNAVAILABLE, "the runtime is shutting down")
                           : load_locked(rt, name);
    pthread_mutex_unlock(&rt->repo_lock);
    return st;
}

ferry_status *rt_runtime_unload(rt_runtime *rt, const char *name)
{
    char shown[80];
    if (rt->opt.control_mode != RT_CONTROL_EXPLICIT)
        return core_error(FERRY_ERR_UNSUPPORTED,
                          "explicit model unload is not allowed: the model control mode is '%s'",
                          rt->opt.control_mode == RT_CONTROL_POLL ? "poll" : "none");
    if (!rt_name_valid(name))
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "'%s' is not a valid model name",
                          shown_name(name, shown, sizeof(shown)));
    ferry_status *st = NULL;
    pthread_mutex_lock(&rt->repo_lock);
    entry *e = find_entry(rt, name, NULL);
    if (!e) {
        st = core_error(FERRY_ERR_NOT_FOUND, "unknown model '%s'", name);
    } else {
        set_wanted(rt, e, false);
        unload_entry(rt, e, true, "unloaded");
        log_model(rt, RT_LOG_INFO, "model_unloaded", name, 0, NULL);
    }
    pthread_mutex_unlock(&rt->repo_lock);
    return st;
}

/* ---------------------------------------------------------------------------------------
 * Index and look-ups
 * ------------------------------------------------------------------------------------- */

static int cmp_row(const void *a, const void *b)
{
    int64_t x = ((const rt_index_entry *)a)->version, y = ((const rt_index_entry *)b)->version;
    return x < y ? -1 : x > y ? 1 : 0;
}

ferry_status *rt_runtime_index(rt_runtime *rt, bool ready_only, rt_index_entry **out, size_t *count)
{
    *out = NULL;
    *count = 0;
    pthread_mutex_lock(&rt->table_lock);
    size_t cap = 0;
    for (size_t i = 0; i < rt->entry_count; i++)
        cap += rt->entries[i]->vrec_count ? rt->entries[i]->vrec_count : 1;
    rt_index_entry *rows = cap ? calloc(cap, sizeof(*rows)) : NULL;
    if (cap && !rows) {
        pthread_mutex_unlock(&rt->table_lock);
        return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    }
    size_t n = 0;
    for (size_t i = 0; i < rt->entry_count; i++) {
        const entry *e = rt->entries[i];
        if (!e->vrec_count) {
            if (ready_only) continue;
            rt_index_entry *r = &rows[n++];
            snprintf(r->name, sizeof(r->name), "%s", e->name);
            r->version = -1;
            r->state = RT_STATE_UNAVAILABLE;
            snprintf(r->reason, sizeof(r->reason), "%s",
                     e->reason[0] ? e->reason
                     : e->wanted  ? "not loaded"
                                  : "unloaded");
            continue;
        }
        /* Rows in ascending version order, as Triton lists them. */
        size_t first_row = n;
        for (size_t k = 0; k < e->vrec_count; k++) {
            const vrec *v = &e->vrecs[k];
            if (ready_only && v->state != RT_STATE_READY) continue;
            rt_index_entry *r = &rows[n++];
            snprintf(r->name, sizeof(r->name), "%s", e->name);
            r->version = v->version;
            r->state = v->state;
            snprintf(r->reason, sizeof(r->reason), "%s",
                     v->reason[0]                 ? v->reason
                     : v->state == RT_STATE_READY ? e->reason
                                                  : "");
        }
        if (n > first_row) qsort(rows + first_row, n - first_row, sizeof(*rows), cmp_row);
    }
    pthread_mutex_unlock(&rt->table_lock);
    if (!n) {
        free(rows);
        rows = NULL;
    }
    *out = rows;
    *count = n;
    return NULL;
}

ferry_status *rt_model_acquire(rt_runtime *rt, const char *name, const char *version,
                               rt_model **out)
{
    char shown[80];
    *out = NULL;
    if (!rt_name_valid(name))
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "'%s' is not a valid model name",
                          shown_name(name, shown, sizeof(shown)));
    int64_t v = 0;
    if (version && version[0] && !rt_version_parse(version, &v))
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "'%s' is not a valid model version",
                          shown_name(version, shown, sizeof(shown)));
    ferry_status *st = NULL;
    pthread_mutex_lock(&rt->table_lock);
    entry *e = find_entry(rt, name, NULL);
    if (!e) {
        st = core_error(FERRY_ERR_NOT_FOUND, "unknown model '%s'", name);
        goto out;
    }
    for (size_t i = 0; i < e->served_count; i++) {
        if (v && e->served[i]->version != v) continue;
        atomic_fetch_add(&e->served[i]->refs, 1);
        *out = e->served[i];
        goto out;
    }
    if (v) {
        const vrec *r = find_vrec(e, v);
        if (r)
            st = core_error(FERRY_ERR_UNAVAILABLE, "model '%s' version %lld is not ready (%s%s%s)",
                            name, (long long)v, rt_model_state_name(r->state),
                            r->reason[0] ? ": " : "", r->reason);
        else
            st = core_error(FERRY_ERR_NOT_FOUND, "model '%s' has no version %lld loaded", name,
                            (long long)v);
        goto out;
    }
    st = core_error(FERRY_ERR_UNAVAILABLE, "model '%s' is not ready (%s)", name,
                    e->reason[0]                             ? e->reason
                    : e->vrec_count && e->vrecs[0].reason[0] ? e->vrecs[0].reason
                    : e->wanted                              ? "not loaded"
                                                             : "unloaded");
out:
    pthread_mutex_unlock(&rt->table_lock);
    return st;
}

size_t rt_model_ready_versions(rt_runtime *rt, const char *name, int64_t *versions, size_t cap)
{
    if (!rt_name_valid(name)) return 0;
    size_t n = 0;
    pthread_mutex_lock(&rt->table_lock);
    entry *e = find_entry(rt, name, NULL);
    if (e) {
        n = e->served_count;
        for (size_t i = 0; i < n && i < cap; i++) versions[i] = e->served[i]->version;
    }
    pthread_mutex_unlock(&rt->table_lock);
    return n;
}

ferry_status *rt_model_list(rt_runtime *rt, const char *name, rt_model ***out, size_t *count)
{
    *out = NULL;
    *count = 0;
    pthread_mutex_lock(&rt->table_lock);
    size_t n = 0;
    for (size_t i = 0; i < rt->entry_count; i++)
        if (!name || !strcmp(rt->entries[i]->name, name)) n += rt->entries[i]->served_count;
    rt_model **list = n ? malloc(n * sizeof(*list)) : NULL;
    if (n && !list) {
        pthread_mutex_unlock(&rt->table_lock);
        return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    }
    size_t k = 0;
    for (size_t i = 0; i < rt->entry_count; i++) {
        entry *e = rt->entries[i];
        if (name && strcmp(e->name, name)) continue;
        for (size_t j = e->served_count; j-- > 0;) { /* ascending versions */
            atomic_fetch_add(&e->served[j]->refs, 1);
            list[k++] = e->served[j];
        }
    }
    pthread_mutex_unlock(&rt->table_lock);
    *out = list;
    *count = k;
    return NULL;
}

void rt_model_list_free(rt_model **models, size_t count)
{
    for (size_t i = 0; models && i < count; i++) rt_model_release(models[i]);
    free(models);
}

/* ---------------------------------------------------------------------------------------
 * Housekeeping: reaping drained versions, polling
 * ------------------------------------------------------------------------------------- */

void rt_runtime_reap(rt_runtime *rt, rt_model *m)
{
    pthread_mutex_lock(&rt->hk_lock);
    m->reap_next = rt->reap_head;
    rt->reap_head = m;
    pthread_cond_signal(&rt->hk_cond);
    pthread_mutex_unlock(&rt->hk_lock);
}

void rt_runtime_track(rt_runtime *rt, rt_model *m)
{
    pthread_mutex_lock(&rt->live_lock);
    m->live_prev = NULL;
    m->live_next = rt->live_head;
    if (rt->live_head) rt->live_head->live_prev = m;
    rt->live_head = m;
    pthread_mutex_unlock(&rt->live_lock);
}

void rt_runtime_untrack(rt_runtime *rt, rt_model *m)
{
    pthread_mutex_lock(&rt->live_lock);
    if (m->live_prev)
        m->live_prev->live_next = m->live_next;
    else
        rt->live_head = m->live_next;
    if (m->live_next) m->live_next->live_prev = m->live_prev;
    m->live_prev = m->live_next = NULL;
    pthread_mutex_unlock(&rt->live_lock);
}

/* Frees every model on the reap list. Caller holds hk_lock; it is dropped while freeing. */
static void reap_all(rt_runtime *rt)
{
    while (rt->reap_head) {
        rt_model *m = rt->reap_head;
        rt->reap_head = m->reap_next;
        pthread_mutex_unlock(&rt->hk_lock);
        log_model(rt, RT_LOG_DEBUG, "model_freed", m->name, m->version, NULL);
        rt_runtime_untrack(rt, m);
        rt_model_destroy(m);
        pthread_mutex_lock(&rt->hk_lock);
    }
}

static void *housekeeper(void *arg)
{
    rt_runtime *rt = arg;
    bool poll = rt->opt.control_mode == RT_CONTROL_POLL;
    uint64_t interval =
        (uint64_t)(rt->opt.poll_interval_ms ? rt->opt.poll_interval_ms : 15000) * 1000000u;
    uint64_t next = rt_now_ns() + interval;
    pthread_mutex_lock(&rt->hk_lock);
    while (!rt->hk_stop) {
        reap_all(rt);
        if (rt->hk_stop) break;
        uint64_t now = rt_now_ns();
        if (poll && now >= next && !rt_runtime_stopping(rt)) {
            pthread_mutex_unlock(&rt->hk_lock);
            ferry_status *st = rt_runtime_rescan(rt);
            if (st && ferry_status_code(st) != FERRY_ERR_UNAVAILABLE) {
                rt_jlog j;
                rt_jlog_begin(&j, RT_LOG_ERROR, "repository_scan_failed");
                rt_jlog_str(&j, "reason", ferry_status_message(st));
                rt_jlog_emit(rt, &j);
            }
            ferry_status_free(st);
            pthread_mutex_lock(&rt->hk_lock);
            next = rt_now_ns() + interval;
            continue;
        }
        if (rt->reap_head) continue;
        /* Wake for the next poll, or after a while to stay responsive without one. */
        uint64_t until = poll ? next : now + 3600ull * 1000000000u;
        struct timespec ts = {.tv_sec = (time_t)(until / 1000000000u),
                              .tv_nsec = (long)(until % 1000000000u)};
        pthread_cond_timedwait(&rt->hk_cond, &rt->hk_lock, &ts);
    }
    reap_all(rt);
    pthread_mutex_unlock(&rt->hk_lock);
    return NULL;
}

/* ---------------------------------------------------------------------------------------
 * Life cycle
 * ------------------------------------------------------------------------------------- */

ferry_status *rt_runtime_create(const rt_options *options, rt_runtime **out)
{
    *out = NULL;
    if (!options || !options->repository || !options->repository[0])
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "no model repository given");
    if (options->control_mode > RT_CONTROL_EXPLICIT)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "unknown model control mode %d",
                          (int)options->control_mode);
    if (options->default_instances < 0 || options->default_instances > RT_MAX_INSTANCES)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "default instance count %d is not in 0..%d",
                          options->default_instances, RT_MAX_INSTANCES);
    if (options->default_queue_capacity > RT_MAX_QUEUE)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "queue capacity %u is above %d",
                          options->default_queue_capacity, RT_MAX_QUEUE);
    if (options->default_max_batch > RT_MAX_BATCH)
        return core_error(FERRY_ERR_INVALID_ARGUMENT, "default max batch size %d is above %d",
                          options->default_max_batch, RT_MAX_BATCH);
    ferry_status *st = NULL;
    rt_runtime *rt = calloc(1, sizeof(*rt));
    if (!rt) return core_error(FERRY_ERR_NO_MEMORY, "out of memory");
    rt->opt = *options;
    if (!rt->opt.default_max_batch) rt->opt.default_max_batch = 4;
    if (!rt->opt.default_queue_capacity) rt->opt.default_queue_capacity = 1024;
    if (!rt->opt.default_instances) rt->opt.default_instances = 1;
    pthread_mutex_init(&rt->repo_lock, NULL);
    pthread_mutex_init(&rt->table_lock, NULL);
    pthread_mutex_init(&rt->hk_lock, NULL);
    pthread_mutex_init(&rt->live_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&rt->hk_cond, &ca);
    pthread_condattr_destroy(&ca);
    rt->repo = realpath(options->repository, NULL);
    struct stat s;
    if (!rt->repo || stat(rt->repo, &s) != 0 || !S_ISDIR(s.st_mode)) {
        st = core_error(FERRY_ERR_NOT_FOUND, "model repository '%s': %s", options->repository,
                        rt->repo ? "not a directory" : strerror(errno));
        goto out;
    }
    rt->repo_len = strlen(rt->repo);
    rt->opt.repository = rt->repo;
    rt->opt.start_models = NULL;
    if (options->start_model_count) {
        rt->start_models = calloc(options->start_model_count, sizeof(char *));
        if (!rt->start_models) {
            st = core_error(FERRY_ERR_NO_MEMORY, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < options->start_model_count; i++) {
            rt->start_models[i] = strdup(options->start_models[i] ? options->start_models[i] : "");
            if (!rt->start_models[i]) {
                st = core_error(FERRY_ERR_NO_MEMORY, "out of memory");
                goto out;
            }
            rt->start_model_count++;
        }
    }
    if (pthread_create(&rt->hk, NULL, housekeeper, rt) != 0) {
        st = core_error(FERRY_ERR_NO_MEMORY, "cannot start the runtime's housekeeping thread");
        goto out;
    }
    rt->hk_started = true;
    pthread_mutex_lock(&rt->repo_lock);
    st = rescan_locked(rt, rt->opt.control_mode != RT_CONTROL_EXPLICIT);
    for (size_t i = 0; !st && i < rt->start_model_count; i++) {
        const char *name = rt->start_models[i];
        ferry_status *lst = NULL;
        if (!strcmp(name, "*")) {
            for (size_t k = 0; k < rt->entry_count; k++) {
                set_wanted(rt, rt->entries[k], true);
                ferry_status_free(sync_model(rt, rt->entries[k], true));
            }
        } else if (!rt_name_valid(name)) {
            char shown[80];
            lst = core_error(FERRY_ERR_INVALID_ARGUMENT, "'%s' is not a valid model name",
                             shown_name(name, shown, sizeof(shown)));
        } else {
            lst = load_locked(rt, name);
        }
        if (lst)
            log_model(rt, RT_LOG_ERROR, "model_load_failed", name, 0, ferry_status_message(lst));
        ferry_status_free(lst);
    }
    pthread_mutex_unlock(&rt->repo_lock);
    if (st) goto out;
    atomic_store(&rt->live, true);
    rt_jlog j;
    rt_jlog_begin(&j, RT_LOG_INFO, "runtime_started");
    rt_jlog_str(&j, "repository", rt->repo);
    rt_jlog_int(&j, "models", (int64_t)rt->entry_count);
    rt_jlog_emit(rt, &j);
    *out = rt;
out:
    if (st) rt_runtime_destroy(rt);
    return st;
}

void rt_runtime_shutdown(rt_runtime *rt)
{
    if (!rt) return;
    pthread_mutex_lock(&rt->repo_lock); /* lets a running load finish first */
    bool first = !atomic_exchange(&rt->stopping, true);
    bool was_live = atomic_exchange(&rt->live, false);
    pthread_mutex_lock(&rt->live_lock);
    for (rt_model *m = rt->live_head; m; m = m->live_next) rt_model_close_queue(m);
    for (rt_model *m = rt->live_head; m; m = m->live_next) rt_model_wait_drained(m);
    pthread_mutex_unlock(&rt->live_lock);
    pthread_mutex_unlock(&rt->repo_lock);
    if (first && was_live) {
        rt_jlog j;
        rt_jlog_begin(&j, RT_LOG_INFO, "runtime_stopped");
        rt_jlog_emit(rt, &j);
    }
}

void rt_runtime_destroy(rt_runtime *rt)
{
    if (!rt) return;
    rt_runtime_shutdown(rt);
    /* Drop the table's references: versions nobody else holds go to the reap list. */
    pthread_mutex_lock(&rt->repo_lock);
    while (rt->entry_count) {
        entry *e = rt->entries[rt->entry_count - 1];
        unload_entry(rt, e, true, "shut down");
        remove_entry(rt, e);
    }
    pthread_mutex_unlock(&rt->repo_lock);
    if (rt->hk_started) {
        pthread_mutex_lock(&rt->hk_lock);
        rt->hk_stop = true;
        pthread_cond_signal(&rt->hk_cond);
        pthread_mutex_unlock(&rt->hk_lock);
        pthread_join(rt->hk, NULL);
    }
    pthread_mutex_lock(&rt->hk_lock);
    reap_all(rt);
    pthread_mutex_unlock(&rt->hk_lock);
    if (rt->live_head) {
        /* References still held by the caller: a bug in the caller. Freeing the runtime under
         * them would crash later; leaking is the lesser harm, and it is reported. */
        rt_jlog j;
        rt_jlog_begin(&j, RT_LOG_ERROR, "runtime_leak");
        rt_jlog_str(&j, "reason", "model references were still held at rt_runtime_destroy()");
        rt_jlog_emit(rt, &j);
        return;
    }
    for (size_t i = 0; i < rt->start_model_count; i++) free(rt->start_models[i]);
    free(rt->start_models);
    free(rt->entries);
    free(rt->repo);
    pthread_mutex_destroy(&rt->repo_lock);
    pthread_mutex_destroy(&rt->table_lock);
    pthread_mutex_destroy(&rt->hk_lock);
    pthread_mutex_destroy(&rt->live_lock);
    pthread_cond_destroy(&rt->hk_cond);
    free(rt);
}
