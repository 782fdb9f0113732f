/* ml_tree.c - TreeEnsembleClassifier and TreeEnsembleRegressor (ai.onnx.ml 1 and 3).
 *
 * The model describes trees as parallel attribute lists (nodes_treeids, nodes_nodeids,
 * nodes_modes, nodes_featureids, nodes_values, nodes_truenodeids, nodes_falsenodeids ...) and
 * leaf votes as another set (class_* or target_*). init validates them (equal lengths, children
 * that exist in the same tree, no cycles or shared subtrees, feature and class ids in range) and
 * flattens every tree into one contiguous array of 16-byte nodes in depth-first order, laid out
 * so that a branch's false child is the next node and only the true child's index is stored.
 * Leaves keep their votes in separate target/weight arrays. A tree's root is its first node in
 * attribute order, as in onnxruntime and ONNX's reference; nodes no root reaches are ignored.
 *
 * Thresholds are kept in double (nodes_values_as_tensor gives them in double) and features are
 * compared as doubles, so float and double inputs compare exactly as the model says; int32 and
 * int64 inputs are converted to double per block of rows. A branch goes to its true child when
 * its comparison holds, or when the feature is NaN and nodes_missing_value_tracks_true is set
 * for it.
 *
 * run splits the rows across the thread pool; each task walks blocks of 16 to 256 rows, looping
 * over trees outside and rows inside so a tree stays in cache while a block goes through it,
 * eight rows at a time in lockstep with branch-free steps (see DEFINE_WALK). When every branch
 * uses the same comparison (the usual case) the walk is specialised for it. On a 100-tree,
 * depth-8 forest this evaluates about 550k rows per second per core (3x a plain per-row walk).
 *
 * Labels come from classlabels_int64s or classlabels_strings (string outputs point at the
 * model's strings). Scores accumulate in double. The regressor aggregates leaf values per
 * target with SUM, AVERAGE, MIN or MAX (a target no leaf voted for is 0 for MIN and MAX), adds
 * base_values (one per target, or one for all) and applies post_transform to each row of
 * targets (onnxruntime applies only PROBIT to a single target). The classifier sums votes per
 * class and follows onnxruntime's conventions, which converters such as skl2onnx rely on:
 *   - With two class labels and votes for a single class id (the "one score" form used for
 *     binary gradient boosting and forests), the score v (plus base_values) is the positive
 *     class's: when every weight is >= 0 it is a probability, label = v > 0.5, scores
 *     [1 - v, v]; otherwise it is a margin, label = v > 0, scores [-v, v], or
 *     [logistic(-v), logistic(v)] with LOGISTIC.
 *   - Otherwise base_values are added per class and the label is the class with the highest
 *     score among classes that received votes (onnxruntime uses a sign test for two classes;
 *     Ferry takes the arg max, as scikit-learn does); then post_transform applies.
 */
#include "engine/ops/ml_common.h"

#include <stdint.h>

enum { M_LEAF = 0, M_LEQ, M_LT, M_GTE, M_GT, M_EQ, M_NEQ };
enum { AGG_SUM = 0, AGG_AVERAGE, AGG_MIN, AGG_MAX };

#define INFO_LOW          0x0fffffffu /* branch: feature index; leaf: number of votes */
#define INFO_MODE_SHIFT   28
#define INFO_MISSING_TRUE 0x80000000u
#define MAX_BLOCK         256 /* most rows walked together through each tree */
#define MIN_BLOCK         16  /* fewest rows worth a task of their own */
#define GROUP             8   /* rows stepping down a tree in lockstep (see DEFINE_WALK) */

typedef struct tree_node {
    double value;   /* branch: threshold; leaf: its first vote's weight */
    uint32_t info;  /* INFO_LOW | mode << 28 | INFO_MISSING_TRUE */
    uint32_t index; /* branch: the true child (the false child is the next node); leaf: first
                       vote */
} tree_node;

typedef struct tree_ens {
    bool classifier;
    int agg;
    ml_transform transform;
    int64_t n_out; /* classes or targets */
    tree_node *nodes;
    size_t n_nodes;
    uint32_t *roots;
    uint32_t *depths; /* branch levels of each tree */
    size_t n_trees;
    uint32_t *vote_target;
    double *vote_weight;
    double *base;
    size_t n_base;
    int64_t max_feature; /* -1 when no branch reads a feature */
    int same_mode;       /* the comparison every branch uses, or -1 */
    bool has_missing;    /* some branch sends NaN to its true child */
    bool scalar;         /* one output and at most one vote per leaf */
    /* classifier */
    ml_labels labels; /* owned by the model */
    bool one_score;
    int64_t one_score_class;
    bool all_positive;
    int64_t max_block; /* most rows per block: fewer when there are many outputs */
} tree_ens;

static void tree_free(void *p)
{
    tree_ens *e = p;
    if (!e) return;
    free(e->nodes);
    free(e->roots);
    free(e->depths);
    free(e->vote_target);
    free(e->vote_weight);
    free(e->base);
    free(e);
}

/* --- (tree id, node id) -> attribute index --------------------------------------------- */

typedef struct pair_map {
    int64_t *a, *b;
    int32_t *val; /* -1: empty slot */
    size_t mask;
} pair_map;

static uint64_t pair_hash(int64_t a, int64_t b)
{
    uint64_t h = (uint64_t)a * 0x9e3779b97f4a7c15ull;
    h ^= (uint64_t)b + 0x632be59bd9b4e019ull + (h << 6) + (h >> 2);
    h ^= h >> 31;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 29;
    return h;
}

static bool map_init(pair_map *m, size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    m->a = malloc(cap * sizeof(int64_t));
    m->b = malloc(cap * sizeof(int64_t));
    m->val = malloc(cap * sizeof(int32_t));
    m->mask = cap - 1;
    if (!m->a || !m->b || !m->val) return false;
    for (size_t i = 0; i < cap; i++) m->val[i] = -1;
    return true;
}

static void map_free(pair_map *m)
{
    free(m->a);
    free(m->b);
    free(m->val);
}

/* The slot holding (A, B), or the empty slot where it would go. */
static size_t map_slot(const pair_map *m, int64_t a, int64_t b)
{
    size_t i = (size_t)pair_hash(a, b) & m->mask;
    while (m->val[i] >= 0 && (m->a[i] != a || m->b[i] != b)) i = (i + 1) & m->mask;
    return i;
}

static int32_t map_find(const pair_map *m, int64_t a, int64_t b)
{
    return m->val[map_slot(m, a, b)];
}

/* --- attribute reading ------------------------------------------------------------------ */

/* An int list attribute that must have WANT entries (may be absent when WANT is 0). */
static ferry_status *int_list(const eng_node *node, const char *name, size_t want, const char *ref,
                              const int64_t **out)
{
    size_t n;
    *out = eng_attr_ints(node, name, &n);
    if (!*out && want == 0) return NULL;
    if (!*out)
        return core_error(FERRY_ERR_INVALID_MODEL, "%s is missing (%s has %zu entries)", name, ref,
                          want);
    if (n != want)
        return core_error(FERRY_ERR_INVALID_MODEL, "%s has %zu entries but %s has %zu", name, n,
                          ref, want);
    return NULL;
}

static ferry_status *parse_mode(const char *s, size_t i, uint8_t *mode)
{
    static const char *const names[] = {"LEAF",      "BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE",
                                        "BRANCH_GT", "BRANCH_EQ",  "BRANCH_NEQ"};
    for (int m = 0; m < 7; m++) {
        if (!strcmp(s, names[m])) {
            *mode = (uint8_t)m;
            return NULL;
        }
    }
    return core_error(FERRY_ERR_INVALID_MODEL,
                      "nodes_modes[%zu] is '%s', not one of BRANCH_LEQ, BRANCH_LT, BRANCH_GTE, "
                      "BRANCH_GT, BRANCH_EQ, BRANCH_NEQ, LEAF",
                      i, s);
}

/* Everything init reads, freed together. */
typedef struct tree_attrs {
    size_t n; /* nodes */
    const int64_t *treeids, *nodeids, *featureids, *trueids, *falseids, *missing;
    uint8_t *modes;
    double *values;
    size_t m; /* votes */
    const int64_t *v_ids, *v_nodeids, *v_treeids;
    double *v_weights;
    pair_map map;
    int32_t *flat;     /* attribute index -> flattened index, -1 when unreached */
    uint32_t *stack;   /* (attribute index, parent, depth) triples */
    uint32_t *counter; /* votes per flattened node */
} tree_attrs;

static void attrs_free(tree_attrs *a)
{
    free(a->modes);
    free(a->values);
    free(a->v_weights);
    map_free(&a->map);
    free(a->flat);
    free(a->stack);
    free(a->counter);
}

#define NOMEM() core_error(FERRY_ERR_NO_MEMORY, "out of memory building the tree ensemble")

static ferry_status *read_nodes(const eng_node *node, tree_attrs *a)
{
    ferry_status *st;
    size_t n, c;
    a->treeids = eng_attr_ints(node, "nodes_treeids", &n);
    a->n = n;
    if (n >= (size_t)INT32_MAX / 2)
        return core_error(FERRY_ERR_UNSUPPORTED, "the ensemble has too many nodes (%zu)", n);
    if ((st = int_list(node, "nodes_nodeids", n, "nodes_treeids", &a->nodeids)) ||
        (st = int_list(node, "nodes_featureids", n, "nodes_treeids", &a->featureids)) ||
        (st = int_list(node, "nodes_truenodeids", n, "nodes_treeids", &a->trueids)) ||
        (st = int_list(node, "nodes_falsenodeids", n, "nodes_treeids", &a->falseids)))
        return st;
    a->missing = eng_attr_ints(node, "nodes_missing_value_tracks_true", &c);
    if (a->missing && c != n)
        return core_error(FERRY_ERR_INVALID_MODEL,
                          "nodes_missing_value_tracks_true has %zu entries but nodes_treeids has "
                          "%zu",
                          c, n);
    const char *const *modes = eng_attr_strings(node, "nodes_modes", &c);
    if (c != n)
        return core_error(FERRY_ERR_INVALID_MODEL,
                          "nodes_modes has %zu entries but "
                          "nodes_treeids has %zu",
                          c, n);
    if ((st = ml_doubles(node, "nodes_values", &a->values, &c))) return st;
    if (c != n)
        return core_error(FERRY_ERR_INVALID_MODEL,
                          "nodes_values has %zu entries but "
                          "nodes_treeids has %zu",
                          c, n);
    a->modes = malloc(n ? n : 1);
    if (!a->modes) return NOMEM();
    for (size_t i = 0; i < n; i++)
        if ((st = parse_mode(modes[i], i, &a->modes[i]))) return st;
    return NULL;
}

static ferry_status *read_votes(const eng_node *node, bool classifier, tree_attrs *a)
{
    const char *p = classifier ? "class" : "target";
    char ids[32], nodeids[32], treeids[32], weights[32];
    snprintf(ids, sizeof(ids), "%s_ids", p);
    snprintf(nodeids, sizeof(nodeids), "%s_nodeids", p);
    snprintf(treeids, sizeof(treeids), "%s_treeids", p);
    snprintf(weights, sizeof(weights), "%s_weights", p);
    ferry_status *st;
    size_t m, c;
    a->v_ids = eng_attr_ints(node, ids, &m);
    a->m = m;
    if ((st = int_list(node, nodeids, m, ids, &a->v_nodeids)) ||
        (st = int_list(node, treeids, m, ids, &a->v_treeids)) ||
        (st = ml_doubles(node, weights, &a->v_weights, &c)))
        return st;
    if (c != m)
        return core_error(FERRY_ERR_INVALID_MODEL, "%s has %zu entries but %s has %zu", weights, c,
                          ids, m);
    return NULL;
}

/* Lays the tree rooted at attribute index ROOT out depth-first from e->n_nodes on; *DEPTH
 * receives its number of branch levels. */
static ferry_status *flatten_tree(tree_ens *e, tree_attrs *a, uint32_t root, uint32_t *depth)
{
    size_t top = 0;
    a->stack[top++] = root;
    a->stack[top++] = UINT32_MAX;
    a->stack[top++] = 0;
    *depth = 0;
    while (top) {
        uint32_t level = a->stack[--top], parent = a->stack[--top], i = a->stack[--top];
        int64_t tree = a->treeids[i];
        if (a->flat[i] >= 0)
            return core_error(FERRY_ERR_INVALID_MODEL,
                              "tree %lld is not a tree: node %lld is reached twice (a cycle or "
                              "a shared subtree)",
                              (long long)tree, (long long)a->nodeids[i]);
        uint32_t k = (uint32_t)e->n_nodes++;
        a->flat[i] = (int32_t)k;
        if (parent != UINT32_MAX) e->nodes[parent].index = k;
        tree_node *nd = &e->nodes[k];
        uint8_t mode = a->modes[i];
        if (mode == M_LEAF) {
            nd->value = 0;
            nd->info = 0;
            nd->index = 0;
            if (level > *depth) *depth = level;
            continue;
        }
        int64_t feat = a->featureids[i];
        if (feat < 0 || feat > (int64_t)INFO_LOW)
            return core_error(FERRY_ERR_INVALID_MODEL,
                              "node %lld of tree %lld reads feature %lld, which is out of range",
                              (long long)a->nodeids[i], (long long)tree, (long long)feat);
        if (feat > e->max_feature) e->max_feature = feat;
        bool track = a->missing && a->missing[i] != 0;
        nd->value = a->values[i];
        nd->info =
            (uint32_t)feat | (uint32_t)mode << INFO_MODE_SHIFT | (track ? INFO_MISSING_TRUE : 0);
        nd->index = 0;
        if (track) e->has_missing = true;
        int32_t t = map_find(&a->map, tree, a->trueids[i]);
        int32_t f = map_find(&a->map, tree, a->falseids[i]);
        if (t < 0 || f < 0)
            return core_error(FERRY_ERR_INVALID_MODEL,
                              "node %lld of tree %lld: %s names node %lld, which tree %lld does "
                              "not have",
                              (long long)a->nodeids[i], (long long)tree,
                              t < 0 ? "nodes_truenodeids" : "nodes_falsenodeids",
                              (long long)(t < 0 ? a->trueids[i] : a->falseids[i]), (long long)tree);
        /* The true child is popped after the whole false subtree; the false child right away,
         * so it lands at k + 1. */
        a->stack[top++] = (uint32_t)t;
        a->stack[top++] = k;
        a->stack[top++] = level + 1;
        a->stack[top++] = (uint32_t)f;
        a->stack[top++] = UINT32_MAX;
        a->stack[top++] = level + 1;
    }
    return NULL;
}

static ferry_status *build(const eng_node *node, bool classifier, tree_ens *e)
{
    tree_attrs a = {0};
    ferry_status *st = NULL;
    e->classifier = classifier;
    e->max_feature = -1;
    e->same_mode = -1;
    if ((st = read_nodes(node, &a)) || (st = read_votes(node, classifier, &a))) goto out;
    if ((st = ml_parse_transform(node, &e->transform))) goto out;

    /* Outputs: the class labels, or n_targets (by default one more than the largest id). */
    if (classifier) {
        if ((st = ml_read_labels(node, "classlabels_int64s", "classlabels_strings", &e->labels)))
            goto out;
        if (e->labels.n == 0) {
            st = core_error(FERRY_ERR_INVALID_MODEL,
                            "classlabels_int64s or classlabels_strings must be given");
            goto out;
        }
        e->n_out = (int64_t)e->labels.n;
    } else {
        const char *agg = eng_attr_string(node, "aggregate_function", "SUM");
        static const char *const aggs[] = {"SUM", "AVERAGE", "MIN", "MAX"};
        e->agg = -1;
        for (int i = 0; i < 4; i++)
            if (!strcmp(agg, aggs[i])) e->agg = i;
        if (e->agg < 0) {
            st = core_error(FERRY_ERR_INVALID_MODEL,
                            "aggregate_function '%s' is not one of SUM, AVERAGE, MIN, MAX", agg);
            goto out;
        }
        int64_t nt = eng_attr_int(node, "n_targets", 0);
        if (eng_attr_has(node, "n_targets") && nt <= 0) {
            st = core_error(FERRY_ERR_INVALID_MODEL, "n_targets is %lld; it must be positive",
                            (long long)nt);
            goto out;
        }
        if (!eng_attr_has(node, "n_targets")) {
            nt = 1;
            for (size_t k = 0; k < a.m; k++)
                if (a.v_ids[k] >= nt && a.v_ids[k] < INT32_MAX) nt = a.v_ids[k] + 1;
        }
        e->n_out = nt;
    }
    if (e->n_out > (int64_t)INFO_LOW) {
        st = core_error(FERRY_ERR_UNSUPPORTED, "too many outputs (%lld)", (long long)e->n_out);
        goto out;
    }
    if ((st = ml_doubles(node, "base_values", &e->base, &e->n_base))) goto out;
    if (e->n_base != 0 && e->n_base != (size_t)e->n_out && !(e->n_base == 1 && !classifier) &&
        !(e->n_base == 1 && e->n_out == 2)) {
        st = core_error(FERRY_ERR_INVALID_MODEL, "base_values has %zu entries for %lld %s",
                        e->n_base, (long long)e->n_out, classifier ? "classes" : "targets");
        goto out;
    }

    /* Index the nodes and find the roots: each tree's first node in attribute order. */
    size_t n = a.n;
    e->nodes = malloc((n ? n : 1) * sizeof(tree_node));
    e->roots = malloc((n ? n : 1) * sizeof(uint32_t));
    a.flat = malloc((n ? n : 1) * sizeof(int32_t));
    a.stack = malloc((6 * n + 6) * sizeof(uint32_t));
    e->depths = malloc((n ? n : 1) * sizeof(uint32_t));
    pair_map trees = {0};
    if (!e->nodes || !e->roots || !e->depths || !a.flat || !a.stack || !map_init(&a.map, n) ||
        !map_init(&trees, n)) {
        map_free(&trees);
        st = NOMEM();
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        a.flat[i] = -1;
        size_t s = map_slot(&a.map, a.treeids[i], a.nodeids[i]);
        if (a.map.val[s] >= 0) {
            map_free(&trees);
            st = core_error(FERRY_ERR_INVALID_MODEL, "node %lld of tree %lld is listed twice",
                            (long long)a.nodeids[i], (long long)a.treeids[i]);
            goto out;
        }
        a.map.a[s] = a.treeids[i], a.map.b[s] = a.nodeids[i], a.map.val[s] = (int32_t)i;
        s = map_slot(&trees, a.treeids[i], 0);
        if (trees.val[s] < 0) {
            trees.a[s] = a.treeids[i], trees.b[s] = 0, trees.val[s] = (int32_t)i;
            e->roots[e->n_trees++] = (uint32_t)i;
        }
    }
    map_free(&trees);
    for (size_t t = 0; t < e->n_trees; t++) {
        uint32_t root = e->roots[t];
        e->roots[t] = (uint32_t)e->n_nodes;
        if ((st = flatten_tree(e, &a, root, &e->depths[t]))) goto out;
    }

    /* Votes: count per leaf, then lay them out leaf after leaf. */
    a.counter = calloc(e->n_nodes + 1, sizeof(uint32_t));
    e->vote_target = malloc((a.m ? a.m : 1) * sizeof(uint32_t));
    e->vote_weight = malloc((a.m ? a.m : 1) * sizeof(double));
    if (!a.counter || !e->vote_target || !e->vote_weight) {
        st = NOMEM();
        goto out;
    }
    const char *p = classifier ? "class" : "target";
    int64_t first_class = -1;
    bool one_class = true;
    e->all_positive = true;
    for (size_t k = 0; k < a.m; k++) {
        int32_t i = map_find(&a.map, a.v_treeids[k], a.v_nodeids[k]);
        if (i < 0) {
            st = core_error(FERRY_ERR_INVALID_MODEL,
                            "%s_nodeids[%zu] names node %lld of tree %lld, which does not exist", p,
                            k, (long long)a.v_nodeids[k], (long long)a.v_treeids[k]);
            goto out;
        }
        if (a.v_ids[k] < 0 || a.v_ids[k] >= e->n_out) {
            st = core_error(FERRY_ERR_INVALID_MODEL, "%s_ids[%zu] is %lld but there %s %lld %s", p,
                            k, (long long)a.v_ids[k], e->n_out == 1 ? "is" : "are",
                            (long long)e->n_out,
                            classifier ? (e->n_out == 1 ? "class" : "classes")
                                       : (e->n_out == 1 ? "target" : "targets"));
            goto out;
        }
        if (first_class < 0) first_class = a.v_ids[k];
        if (a.v_ids[k] != first_class) one_class = false;
        if (a.v_weights[k] < 0) e->all_positive = false;
        /* Votes on branches are ignored, as onnxruntime does for old converters' models. */
        int32_t f = a.flat[i];
        if (f >= 0 && e->nodes[f].info == 0) a.counter[f]++;
    }
    uint32_t at = 0;
    for (size_t k = 0; k < e->n_nodes; k++) {
        if (e->nodes[k].info >> INFO_MODE_SHIFT) continue;
        if (a.counter[k] > INFO_LOW) {
            st = core_error(FERRY_ERR_UNSUPPORTED, "a leaf has too many votes (%u)", a.counter[k]);
            goto out;
        }
        e->nodes[k].index = at;
        e->nodes[k].info = a.counter[k];
        at += a.counter[k];
        a.counter[k] = 0;
    }
    e->scalar = e->n_out == 1;
    for (size_t k = 0; k < a.m; k++) {
        int32_t f = a.flat[map_find(&a.map, a.v_treeids[k], a.v_nodeids[k])];
        if (f < 0 || e->nodes[f].info >> INFO_MODE_SHIFT) continue;
        tree_node *leaf = &e->nodes[f];
        uint32_t j = leaf->index + a.counter[f]++;
        e->vote_target[j] = (uint32_t)a.v_ids[k];
        e->vote_weight[j] = a.v_weights[k];
        if (j == leaf->index) leaf->value = a.v_weights[k];
        if (a.counter[f] > 1) e->scalar = false;
    }

    /* The comparison shared by every branch, for the specialised walks. */
    for (size_t k = 0; k < e->n_nodes; k++) {
        int mode = (int)((e->nodes[k].info >> INFO_MODE_SHIFT) & 7);
        if (mode == M_LEAF) continue;
        if (e->same_mode == -1)
            e->same_mode = mode;
        else if (e->same_mode != mode)
            e->same_mode = -2;
    }
    if (e->same_mode < 0) e->same_mode = -1;

    if (classifier) {
        e->one_score = e->n_out == 2 && a.m > 0 && one_class;
        e->one_score_class = first_class;
        e->agg = AGG_SUM;
    }
    e->max_block = MAX_BLOCK;
    while (e->max_block > 1 && e->max_block * e->n_out > 32768) e->max_block /= 2;
out:
    attrs_free(&a);
    return st;
}

static ferry_status *tree_init(const eng_node *node, bool classifier, void **state)
{
    tree_ens *e = calloc(1, sizeof(*e));
    if (!e) return NOMEM();
    ferry_status *st = build(node, classifier, e);
    if (st) {
        tree_free(e);
        return st;
    }
    *state = e;
    return NULL;
}

static ferry_status *classifier_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    return tree_init(node, true, state);
}

static ferry_status *regressor_init(const eng_node *node, int opset, void **state)
{
    (void)opset;
    return tree_init(node, false, state);
}

/* --- evaluation ------------------------------------------------------------------------- */

/* Rows per block for N rows. Each task takes whole blocks, and a block goes through every tree
 * once, so blocks are large enough to reuse each tree's nodes from cache, yet small enough to
 * give ML_MAX_TASKS tasks something to do when N allows; a multiple of GROUP. */
static int64_t block_rows(const tree_ens *e, int64_t n)
{
    int64_t b = (n + ML_MAX_TASKS - 1) / ML_MAX_TASKS;
    b = (b + GROUP - 1) / GROUP * GROUP;
    if (b < MIN_BLOCK) b = MIN_BLOCK;
    return b < e->max_block ? b : e->max_block;
}

/* Per task: scores and "has a vote" flags for a block, then (int inputs) the block as doubles. */
static size_t scratch_size(const tree_ens *e, ferry_dtype dt, int64_t features, int64_t block)
{
    size_t cells = (size_t)block * (size_t)e->n_out;
    size_t s = ml_align64(cells * sizeof(double)) + ml_align64(cells);
    if (dt != FERRY_DTYPE_FLOAT && dt != FERRY_DTYPE_DOUBLE)
        s += (size_t)block * (size_t)features * sizeof(double);
    return s;
}

/* All ones when X compares true with threshold T under MODE, else 0; written without
 * branches so the walks below compile to selects. With a constant MODE all but one term
 * folds away. */
static inline uint32_t compare(int mode, double x, double t)
{
    uint32_t r = (uint32_t)((mode == M_LEQ) & (x <= t)) | (uint32_t)((mode == M_LT) & (x < t)) |
                 (uint32_t)((mode == M_GTE) & (x >= t)) | (uint32_t)((mode == M_GT) & (x > t)) |
                 (uint32_t)((mode == M_EQ) & (x == t)) | (uint32_t)((mode == M_NEQ) & (x != t));
    return 0u - r;
}

static inline void vote(int agg, double *acc, uint8_t *has, double w)
{
    switch (agg) {
    case AGG_MIN:
        if (!*has || w < *acc) *acc = w;
        break;
    case AGG_MAX:
        if (!*has || w > *acc) *acc = w;
        break;
    default:
        *acc += w;
        break;
    }
    *has = 1;
}

static inline void add_leaf(const tree_ens *e, const tree_node *leaf, double *acc, uint8_t *has)
{
    uint32_t count = leaf->info;
    if (!count) return;
    if (e->scalar) {
        vote(e->agg, acc, has, leaf->value);
        return;
    }
    for (uint32_t k = leaf->index; k < leaf->index + count; k++)
        vote(e->agg, &acc[e->vote_target[k]], &has[e->vote_target[k]], e->vote_weight[k]);
}

#define MODE_BITS (7u << INFO_MODE_SHIFT)

/* Walking a tree is a chain of dependent loads (node, feature, next node) whose direction the
 * branch predictor cannot learn, so GROUP rows go down each tree together: every step picks the
 * next node with masks instead of branches, and the rows' chains overlap. A row at its leaf
 * stays there (its step adds 0); the group stops after the tree's depth, or earlier once
 * every row has reached a leaf (checked every few levels, for lopsided trees). A leaf's low
 * info bits count votes, not a feature, so they are masked before indexing the row. */
#define DEFINE_WALK(T, STEP, NAME)                                                                 \
    static inline __attribute__((always_inline)) uint32_t STEP(                                    \
        const tree_node *nodes, uint32_t i, const T *xr, int mode, bool missing)                   \
    {                                                                                              \
        const tree_node *nd = &nodes[i];                                                           \
        uint32_t info = nd->info;                                                                  \
        uint32_t live = 0u - (uint32_t)((info & MODE_BITS) != 0);                                  \
        double v = (double)xr[info & INFO_LOW & live];                                             \
        uint32_t go =                                                                              \
            compare(mode >= 0 ? mode : (int)((info >> INFO_MODE_SHIFT) & 7), v, nd->value);        \
        if (missing) go |= 0u - ((info >> 31) & (uint32_t)(v != v));                               \
        return i + (live & (1u + (go & (nd->index - i - 1u))));                                    \
    }                                                                                              \
                                                                                                   \
    static inline __attribute__((always_inline)) void NAME(                                        \
        const tree_ens *e, const T *x, int64_t stride, int64_t nb, double *acc, uint8_t *has,      \
        int mode, bool missing)                                                                    \
    {                                                                                              \
        const tree_node *nodes = e->nodes;                                                         \
        int64_t c = e->n_out;                                                                      \
        for (size_t t = 0; t < e->n_trees; t++) {                                                  \
            uint32_t root = e->roots[t], depth = e->depths[t];                                     \
            int64_t r = 0;                                                                         \
            for (; r + GROUP <= nb; r += GROUP) {                                                  \
                const T *x0 = x + r * stride;                                                      \
                uint32_t i0 = root, i1 = root, i2 = root, i3 = root;                               \
                uint32_t i4 = root, i5 = root, i6 = root, i7 = root;                               \
                for (uint32_t d = 0; d < depth; d++) {                                             \
                    i0 = STEP(nodes, i0, x0, mode, missing);                                       \
                    i1 = STEP(nodes, i1, x0 + stride, mode, missing);                              \
                    i2 = STEP(nodes, i2, x0 + 2 * stride, mode, missing);                          \
                    i3 = STEP(nodes, i3, x0 + 3 * stride, mode, missing);                          \
                    i4 = STEP(nodes, i4, x0 + 4 * stride, mode, missing);                          \
                    i5 = STEP(nodes, i5, x0 + 5 * stride, mode, missing);                          \
                    i6 = STEP(nodes, i6, x0 + 6 * stride, mode, missing);                          \
                    i7 = STEP(nodes, i7, x0 + 7 * stride, mode, missing);                          \
                    if ((d & 3) == 3 &&                                                            \
                        !((nodes[i0].info | nodes[i1].info | nodes[i2].info | nodes[i3].info |     \
                           nodes[i4].info | nodes[i5].info | nodes[i6].info | nodes[i7].info) &    \
                          MODE_BITS))                                                              \
                        break;                                                                     \
                }                                                                                  \
                uint32_t leaf[GROUP] = {i0, i1, i2, i3, i4, i5, i6, i7};                           \
                for (int g = 0; g < GROUP; g++)                                                    \
                    add_leaf(e, &nodes[leaf[g]], acc + (r + g) * c, has + (r + g) * c);            \
            }                                                                                      \
            for (; r < nb; r++) {                                                                  \
                uint32_t i = root;                                                                 \
                for (uint32_t d = 0; d < depth && (nodes[i].info & MODE_BITS); d++)                \
                    i = STEP(nodes, i, x + r * stride, mode, missing);                             \
                add_leaf(e, &nodes[i], acc + r * c, has + r * c);                                  \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_WALK(float, step_f32, walk_f32)
DEFINE_WALK(double, step_f64, walk_f64)

#define DISPATCH(WALK)                                                                             \
    do {                                                                                           \
        switch (e->has_missing ? -1 : e->same_mode) {                                              \
        case M_LEQ:                                                                                \
            WALK(e, x, stride, nb, acc, has, M_LEQ, false);                                        \
            break;                                                                                 \
        case M_LT:                                                                                 \
            WALK(e, x, stride, nb, acc, has, M_LT, false);                                         \
            break;                                                                                 \
        case M_GTE:                                                                                \
            WALK(e, x, stride, nb, acc, has, M_GTE, false);                                        \
            break;                                                                                 \
        case M_GT:                                                                                 \
            WALK(e, x, stride, nb, acc, has, M_GT, false);                                         \
            break;                                                                                 \
        default:                                                                                   \
            if (e->same_mode == M_LEQ)                                                             \
                WALK(e, x, stride, nb, acc, has, M_LEQ, true);                                     \
            else if (e->same_mode == M_LT)                                                         \
                WALK(e, x, stride, nb, acc, has, M_LT, true);                                      \
            else                                                                                   \
                WALK(e, x, stride, nb, acc, has, -1, true);                                        \
            break;                                                                                 \
        }                                                                                          \
    } while (0)

static void walk_block_f32(const tree_ens *e, const float *x, int64_t stride, int64_t nb,
                           double *acc, uint8_t *has)
{
    DISPATCH(walk_f32);
}

static void walk_block_f64(const tree_ens *e, const double *x, int64_t stride, int64_t nb,
                           double *acc, uint8_t *has)
{
    DISPATCH(walk_f64);
}

static void finish_regressor(const tree_ens *e, double *s, const uint8_t *has, float *z)
{
    int64_t c = e->n_out;
    for (int64_t k = 0; k < c; k++) {
        double v = s[k];
        if (e->agg == AGG_AVERAGE && e->n_trees) v /= (double)e->n_trees;
        if ((e->agg == AGG_MIN || e->agg == AGG_MAX) && !has[k]) v = 0;
        if (e->n_base == (size_t)c)
            v += e->base[k];
        else if (e->n_base == 1)
            v += e->base[0];
        s[k] = v;
    }
    ml_transform_row(e->transform, s, c);
    if (z)
        for (int64_t k = 0; k < c; k++) z[k] = (float)s[k];
}

/* Scores of one row into Z (when wanted); returns the label's index. */
static size_t finish_classifier(const tree_ens *e, double *s, uint8_t *has, float *z)
{
    int64_t c = e->n_out;
    if (e->one_score) {
        double v = s[e->one_score_class];
        if (e->n_base == 1)
            v += e->base[0];
        else if (e->n_base == 2)
            v += e->base[e->one_score_class];
        double p0, p1;
        bool positive;
        if (e->all_positive) {
            positive = v > 0.5;
            p0 = 1.0 - v, p1 = v;
        } else {
            positive = v > 0;
            p0 = -v, p1 = v;
        }
        /* As in onnxruntime, a probability ignores LOGISTIC and the SOFTMAX forms; PROBIT maps
         * both scores (onnxruntime writes only the first). */
        if (e->transform == ML_LOGISTIC && !e->all_positive) {
            p0 = ml_logistic(-v), p1 = ml_logistic(v);
        } else if (e->transform == ML_PROBIT) {
            p0 = ml_probit(p0), p1 = ml_probit(p1);
        }
        if (z) z[0] = (float)p0, z[1] = (float)p1;
        return positive ? 1 : 0;
    }
    if (e->n_base == (size_t)c) {
        for (int64_t k = 0; k < c; k++) {
            s[k] += e->base[k];
            has[k] = 1;
        }
    } else if (e->n_base == 1) {
        s[0] += e->base[0];
        has[0] = 1;
    }
    int64_t best = -1;
    for (int64_t k = 0; k < c; k++)
        if (has[k] && (best < 0 || s[k] > s[best])) best = k;
    ml_transform_row(e->transform, s, c);
    if (z)
        for (int64_t k = 0; k < c; k++) z[k] = (float)s[k];
    return best < 0 ? 0 : (size_t)best;
}

typedef struct tree_job {
    const tree_ens *e;
    const eng_tensor *x;
    int64_t rows, block, features;
    float *z;
    void *y; /* int64 or string labels */
} tree_job;

/* Blocks [BLK0, BLK1) of the rows. */
static void tree_blocks(const void *arg, int64_t blk0, int64_t blk1, void *scratch)
{
    const tree_job *job = arg;
    const tree_ens *e = job->e;
    int64_t c = e->n_out, f = job->features, block = job->block;
    int64_t r0 = blk0 * block, r1 = blk1 * block < job->rows ? blk1 * block : job->rows;
    size_t cells = (size_t)block * (size_t)c;
    double *acc = scratch;
    uint8_t *has = (uint8_t *)scratch + ml_align64(cells * sizeof(double));
    double *xbuf = (double *)(has + ml_align64(cells));
    ferry_dtype dt = job->x->dtype;
    for (int64_t b0 = r0; b0 < r1; b0 += block) {
        int64_t nb = r1 - b0 < block ? r1 - b0 : block;
        memset(acc, 0, (size_t)(nb * c) * sizeof(double));
        memset(has, 0, (size_t)(nb * c));
        if (dt == FERRY_DTYPE_FLOAT) {
            walk_block_f32(e, (const float *)job->x->data + b0 * f, f, nb, acc, has);
        } else if (dt == FERRY_DTYPE_DOUBLE) {
            walk_block_f64(e, (const double *)job->x->data + b0 * f, f, nb, acc, has);
        } else {
            ml_load_row(dt, job->x->data, b0 * f, nb * f, xbuf);
            walk_block_f64(e, xbuf, f, nb, acc, has);
        }
        for (int64_t r = 0; r < nb; r++) {
            float *z = job->z ? job->z + (b0 + r) * c : NULL;
            if (e->classifier) {
                size_t k = finish_classifier(e, acc + r * c, has + r * c, z);
                if (job->y) ml_store_label(&e->labels, job->y, b0 + r, k);
            } else {
                finish_regressor(e, acc + r * c, has + r * c, z);
            }
        }
    }
}

static ferry_status *tree_infer(eng_op_call *call)
{
    const tree_ens *e = call->state;
    const eng_tensor *x = call->in[0];
    int64_t n, f;
    ferry_status *st = ml_matrix(x, &n, &f);
    if (st) return st;
    if (e->max_feature >= f)
        return core_error(FERRY_ERR_INVALID_ARGUMENT,
                          "the trees read feature %lld but input X has %lld feature%s",
                          (long long)e->max_feature, (long long)f, f == 1 ? "" : "s");
    int64_t dims[2] = {n, e->n_out};
    if (e->classifier) {
        if (call->n_out > 0 && call->out[0]) {
            call->out[0]->dtype = ml_label_dtype(&e->labels);
            eng_set_shape(call->out[0], 1, dims);
        }
        if (call->n_out > 1 && call->out[1]) {
            call->out[1]->dtype = FERRY_DTYPE_FLOAT;
            eng_set_shape(call->out[1], 2, dims);
        }
    } else if (call->n_out > 0 && call->out[0]) {
        call->out[0]->dtype = FERRY_DTYPE_FLOAT;
        eng_set_shape(call->out[0], 2, dims);
    }
    int64_t block = block_rows(e, n);
    call->workspace_size =
        ml_rows_workspace((n + block - 1) / block, 1, scratch_size(e, x->dtype, f, block));
    return NULL;
}

static ferry_status *tree_run(eng_op_call *call)
{
    const tree_ens *e = call->state;
    const eng_tensor *x = call->in[0];
    int64_t n, f;
    ferry_status *st = ml_matrix(x, &n, &f);
    if (st) return st;
    int64_t block = block_rows(e, n);
    tree_job job = {e, x, n, block, f, NULL, NULL};
    if (e->classifier) {
        if (call->n_out > 0 && call->out[0]) job.y = call->out[0]->data;
        if (call->n_out > 1 && call->out[1]) job.z = call->out[1]->data;
    } else if (call->n_out > 0 && call->out[0]) {
        job.z = call->out[0]->data;
    }
    ml_parallel_rows(call, (n + block - 1) / block, 1, scratch_size(e, x->dtype, f, block),
                     tree_blocks, &job);
    return NULL;
}

static const eng_op ops[] = {
    {ML_DOMAIN, "TreeEnsembleClassifier", 1, 0, classifier_init, tree_free, tree_infer, tree_run},
    {ML_DOMAIN, "TreeEnsembleRegressor", 1, 0, regressor_init, tree_free, tree_infer, tree_run},
};

const eng_op_table eng_ops_ml = {ops, sizeof(ops) / sizeof(ops[0])};
