#!/usr/bin/python3
"""ONNX-ML test models built from fitted scikit-learn estimators.

There is no skl2onnx here, so the conversion is written out below: each builder fits an
estimator on a small synthetic data set, turns its fitted state (tree_, estimators_, coef_,
support_vectors_, _dual_coef_ ...) into ai.onnx.ml nodes with onnx.helper, and records what
scikit-learn itself predicts on held-out rows. The conventions are skl2onnx's and
onnxruntime's (binary tree ensembles as one score for the positive class, binary linear models
as two rows [-w, w], SVMs in libsvm's own sign convention).

Parameters that ONNX stores as 32-bit floats are rounded to float32 in the estimator too before
it predicts, so the comparison measures the operators, not the attribute format. Tree
thresholds and leaf weights use the double-precision *_as_tensor attributes (exact) except in
the cases that test the float forms.

    cases() -> list of Case       every test model
    broken_models(), mutated_models()   malformed models that must be refused cleanly
    bench_model(path)             the 100-tree, depth-8 forest used for throughput numbers
                                  (also: make_models.py --bench-model PATH)
"""

import numpy as np
import onnx
from onnx import TensorProto, helper

from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import (ExtraTreesClassifier, ExtraTreesRegressor,
                              GradientBoostingClassifier, GradientBoostingRegressor,
                              HistGradientBoostingClassifier, HistGradientBoostingRegressor,
                              RandomForestClassifier, RandomForestRegressor)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.preprocessing import (Binarizer, LabelEncoder, MinMaxScaler, Normalizer,
                                   OneHotEncoder, RobustScaler, StandardScaler)
from sklearn.svm import SVC, SVR, LinearSVC, NuSVR, OneClassSVM
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

ML = "ai.onnx.ml"
FLOAT, DOUBLE, INT32, INT64 = (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.INT32,
                               TensorProto.INT64)
NP_OF = {FLOAT: np.float32, DOUBLE: np.float64, INT32: np.int32, INT64: np.int64}


class Case:
    """One model: inputs (name, array) in graph order, and the expected outputs.

    checks maps an output name to 'label' (exact, ties in PROBA_FOR allowed; CLASSES maps a
    label to its probability column, by default the label itself), 'close' (rtol 1e-5, atol
    1e-6) or 'exact'."""

    def __init__(self, name, family, model, inputs, expected, checks, proba_for=None,
                 classes=None):
        self.name, self.family, self.model = name, family, model
        self.inputs, self.expected, self.checks = inputs, expected, checks
        self.proba_for = proba_for or {}
        self.classes = classes


def f32(a):
    """A float64 array holding A's values rounded to float32."""
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def model_of(nodes, inputs, outputs, ml_opset=3):
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    m = helper.make_model(graph, producer_name="ferry-tests",
                          opset_imports=[helper.make_opsetid("", 13),
                                         helper.make_opsetid(ML, ml_opset)])
    onnx.checker.check_model(m)
    return m


def vi(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def dtensor(name, values):
    values = np.asarray(values, dtype=np.float64).ravel()
    return helper.make_tensor(name, DOUBLE, [values.size], values.tolist())


def classifier_case(name, family, node, x, labels, proba, n_classes, elem=FLOAT, extra=(),
                    classes=None):
    """A one-node classifier model with outputs label [N] and probabilities [N, C]; CLASSES
    (string labels) makes the label output a string tensor."""
    strings = classes is not None and np.asarray(classes).dtype.kind == "U"
    m = model_of([node] + list(extra), [vi("X", elem, ["N", x.shape[1]])],
                 [vi("label", TensorProto.STRING if strings else INT64, ["N"]),
                  vi("probabilities", FLOAT, ["N", n_classes])])
    labels = np.asarray(labels) if strings else np.asarray(labels, dtype=np.int64)
    return Case(name, family, m, [("X", x.astype(NP_OF[elem]))],
                {"label": labels, "probabilities": np.asarray(proba, dtype=np.float32)},
                {"label": "label", "probabilities": "close"}, {"label": "probabilities"},
                classes=classes)


def regressor_case(name, family, node, x, y, elem=FLOAT, out="variable"):
    y = np.asarray(y, dtype=np.float32)
    if y.ndim == 1:
        y = y[:, None]
    m = model_of([node], [vi("X", elem, ["N", x.shape[1]])], [vi(out, FLOAT, ["N", y.shape[1]])])
    return Case(name, family, m, [("X", x.astype(NP_OF[elem]))], {out: y}, {out: "close"})


# --------------------------------------------------------------------------------------------
# Tree ensembles
# --------------------------------------------------------------------------------------------

class Tree:
    """A binary tree in scikit-learn's layout: node i is a leaf when left[i] == -1; X goes left
    when x[feature] <= threshold (and when it is NaN and nan_left[i]); votes[i] lists the
    (class or target, weight) pairs of leaf i."""

    def __init__(self, left, right, feature, threshold, votes, nan_left=None):
        self.left, self.right = np.asarray(left), np.asarray(right)
        self.feature, self.threshold = np.asarray(feature), np.asarray(threshold, np.float64)
        self.votes, self.nan_left = votes, nan_left


def sk_tree(est, vote_fn):
    t = est.tree_
    votes = {i: vote_fn(t.value[i]) for i in range(t.node_count) if t.children_left[i] == -1}
    return Tree(t.children_left, t.children_right, t.feature, t.threshold, votes)


def hgb_tree(pred, target):
    nodes = pred.nodes
    left = np.where(nodes["is_leaf"], -1, nodes["left"])
    right = np.where(nodes["is_leaf"], -1, nodes["right"])
    votes = {i: [(target, float(nodes["value"][i]))] for i in range(len(nodes))
             if nodes["is_leaf"][i]}
    return Tree(left, right, nodes["feature_idx"], nodes["num_threshold"], votes,
                nan_left=nodes["missing_go_to_left"])


def round_down_f32(t):
    """The largest float32 <= T: for float32 x, x <= T exactly when x <= round_down_f32(T)."""
    f = np.float32(t)
    if float(f) > t:
        f = np.nextafter(f, np.float32(-np.inf))
    return float(f)


def ensemble_attrs(trees, classifier, double=True, modes="LEQ", rng=None, shuffle=False):
    """Attributes of a TreeEnsemble* node for TREES.

    modes: 'LEQ' keeps scikit-learn's comparison; 'mixed' rewrites each branch as an equivalent
    BRANCH_LEQ, BRANCH_LT, BRANCH_GT or BRANCH_GTE (thresholds moved by one ulp, children
    swapped) to exercise every comparison. shuffle: renumber nodes and list them in a random
    order (each tree's root stays first, as ONNX requires)."""
    p = "class" if classifier else "target"
    a = {k: [] for k in ["nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_modes",
                         "nodes_truenodeids", "nodes_falsenodeids", "nodes_values",
                         "nodes_missing_value_tracks_true", p + "_ids", p + "_nodeids",
                         p + "_treeids", p + "_weights"]}
    any_missing = False
    tree_ids = list(range(len(trees)))
    if shuffle:
        tree_ids = [int(v) for v in rng.permutation(len(trees)) * 7 + 3]
    for tid, tree in zip(tree_ids, trees):
        n = len(tree.left)
        ids = np.arange(n)
        order = np.arange(n)
        if shuffle:
            ids = rng.permutation(n) * 3 + 11
            order = np.concatenate([[0], 1 + rng.permutation(n - 1)])
        for i in order:
            a["nodes_treeids"].append(tid)
            a["nodes_nodeids"].append(int(ids[i]))
            if tree.left[i] == -1:
                a["nodes_modes"].append("LEAF")
                a["nodes_featureids"].append(0)
                a["nodes_values"].append(0.0)
                a["nodes_truenodeids"].append(0)
                a["nodes_falsenodeids"].append(0)
                a["nodes_missing_value_tracks_true"].append(0)
                for target, w in tree.votes.get(i, []):
                    a[p + "_ids"].append(int(target))
                    a[p + "_nodeids"].append(int(ids[i]))
                    a[p + "_treeids"].append(tid)
                    a[p + "_weights"].append(float(w))
                continue
            thr = float(tree.threshold[i])
            lt, rt = int(ids[tree.left[i]]), int(ids[tree.right[i]])
            nan_left = bool(tree.nan_left[i]) if tree.nan_left is not None else False
            mode = "BRANCH_LEQ"
            if modes == "mixed":
                mode = ["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GT", "BRANCH_GTE"][rng.integers(4)]
            if mode == "BRANCH_LT":
                thr = float(np.nextafter(thr, np.inf))
            elif mode == "BRANCH_GT":
                lt, rt = rt, lt
                nan_left = not nan_left if tree.nan_left is not None else False
            elif mode == "BRANCH_GTE":
                thr = float(np.nextafter(thr, np.inf))
                lt, rt = rt, lt
                nan_left = not nan_left if tree.nan_left is not None else False
            if not double:
                thr = round_down_f32(thr)
            a["nodes_modes"].append(mode)
            a["nodes_featureids"].append(int(tree.feature[i]))
            a["nodes_values"].append(thr)
            a["nodes_truenodeids"].append(lt)
            a["nodes_falsenodeids"].append(rt)
            a["nodes_missing_value_tracks_true"].append(int(nan_left))
            any_missing |= nan_left
    attrs = {}
    for k, v in a.items():
        if k == "nodes_missing_value_tracks_true" and not any_missing:
            continue
        if double and k in ("nodes_values", p + "_weights"):
            attrs[k + "_as_tensor"] = dtensor(k + "_as_tensor", v)
        else:
            attrs[k] = v
    return attrs


def tree_classifier(name, family, trees, x, labels, proba, n_classes, base=None, post="NONE",
                    elem=FLOAT, classes=None, **kw):
    attrs = ensemble_attrs(trees, True, **kw)
    if classes is not None:
        attrs["classlabels_strings"] = [str(c) for c in classes]
    else:
        attrs["classlabels_int64s"] = list(range(n_classes))
    attrs["post_transform"] = post
    if base is not None:
        attrs["base_values_as_tensor"] = dtensor("base_values_as_tensor", base)
    node = helper.make_node("TreeEnsembleClassifier", ["X"], ["label", "probabilities"],
                            domain=ML, **attrs)
    return classifier_case(name, family, node, x, labels, proba, n_classes, elem,
                           classes=classes)


def tree_regressor(name, family, trees, x, y, n_targets=1, base=None, agg="SUM", elem=FLOAT,
                   post="NONE", **kw):
    attrs = ensemble_attrs(trees, False, **kw)
    attrs["n_targets"] = n_targets
    attrs["aggregate_function"] = agg
    attrs["post_transform"] = post
    if base is not None:
        attrs["base_values"] = [float(b) for b in np.ravel(base)]
    node = helper.make_node("TreeEnsembleRegressor", ["X"], ["variable"], domain=ML, **attrs)
    return regressor_case(name, family, node, x, y, elem)


def proba_votes(n_trees, binary_one_score):
    """Leaf votes of a forest's tree: its class probabilities divided by the tree count, or only
    the positive class's under class id 0 (the one-score binary form)."""
    def votes(value):
        p = value[0] / value[0].sum() / n_trees
        if binary_one_score:
            return [(0, p[1])]
        return [(k, w) for k, w in enumerate(p)]
    return votes


def classification_data(n_classes, seed, n=600, features=8):
    x, y = make_classification(n_samples=n, n_features=features, n_informative=5,
                               n_redundant=1, n_classes=n_classes, n_clusters_per_class=1,
                               random_state=seed)
    x = x.astype(np.float32)
    return x[:400], y[:400], x[400:], y[400:]


def regression_data(seed, n=500, features=6, targets=1):
    x, y = make_regression(n_samples=n, n_features=features, n_informative=4, n_targets=targets,
                           noise=5.0, random_state=seed)
    x = x.astype(np.float32)
    return x[:350], y[:350], x[350:], y[350:]


def tree_cases():
    out = []
    rng = np.random.default_rng(7)

    # Decision trees: multiclass, binary both ways, float attributes, every comparison, dtypes.
    xt, yt, xv, _ = classification_data(3, 1)
    dt = DecisionTreeClassifier(max_depth=6, random_state=0).fit(xt, yt)
    trees = [sk_tree(dt, proba_votes(1, False))]
    out.append(tree_classifier("dt-classifier-3class", "DecisionTree", trees, xv,
                               dt.predict(xv), dt.predict_proba(xv), 3))
    out.append(tree_classifier("dt-classifier-3class-mixed-modes", "DecisionTree", trees, xv,
                               dt.predict(xv), dt.predict_proba(xv), 3, modes="mixed", rng=rng))
    out.append(tree_classifier("dt-classifier-3class-float-attrs", "DecisionTree", trees, xv,
                               dt.predict(xv), dt.predict_proba(xv), 3, double=False))
    out.append(tree_classifier("dt-classifier-3class-double-input", "DecisionTree", trees,
                               xv.astype(np.float64), dt.predict(xv), dt.predict_proba(xv), 3,
                               elem=DOUBLE))

    xt, yt, xv, _ = classification_data(2, 2)
    dt = DecisionTreeClassifier(max_depth=7, random_state=0).fit(xt, yt)
    out.append(tree_classifier("dt-classifier-binary-two-scores", "DecisionTree",
                               [sk_tree(dt, proba_votes(1, False))], xv, dt.predict(xv),
                               dt.predict_proba(xv), 2))
    out.append(tree_classifier("dt-classifier-binary-one-score", "DecisionTree",
                               [sk_tree(dt, proba_votes(1, True))], xv, dt.predict(xv),
                               dt.predict_proba(xv), 2))

    # Integer features: trees fitted on small integers, fed as int64 and int32.
    xi = rng.integers(0, 20, size=(500, 5))
    yi = (xi[:, 0] + 2 * xi[:, 1] - xi[:, 2] + rng.integers(0, 5, 500)) % 3
    dti = DecisionTreeClassifier(max_depth=6, random_state=0).fit(xi[:350], yi[:350])
    for elem, tag in ((INT64, "int64"), (INT32, "int32")):
        out.append(tree_classifier("dt-classifier-%s-input" % tag, "DecisionTree",
                                   [sk_tree(dti, proba_votes(1, False))], xi[350:],
                                   dti.predict(xi[350:]), dti.predict_proba(xi[350:]), 3,
                                   elem=elem))

    xt, yt, xv, _ = regression_data(3)
    dtr = DecisionTreeRegressor(max_depth=7, random_state=0).fit(xt, yt)
    out.append(tree_regressor("dt-regressor", "DecisionTree",
                              [sk_tree(dtr, lambda v: [(0, v[0][0])])], xv, dtr.predict(xv)))
    xt2, yt2, xv2, _ = regression_data(4, targets=2)
    dtr2 = DecisionTreeRegressor(max_depth=6, random_state=0).fit(xt2, yt2)
    out.append(tree_regressor("dt-regressor-2-targets", "DecisionTree",
                              [sk_tree(dtr2, lambda v: [(0, v[0][0]), (1, v[1][0])])], xv2,
                              dtr2.predict(xv2), n_targets=2))

    # Random forests and extra trees.
    xt, yt, xv, _ = classification_data(4, 5)
    rf = RandomForestClassifier(n_estimators=20, max_depth=8, random_state=0).fit(xt, yt)
    trees = [sk_tree(e, proba_votes(len(rf.estimators_), False)) for e in rf.estimators_]
    out.append(tree_classifier("rf-classifier-4class", "RandomForest", trees, xv,
                               rf.predict(xv), rf.predict_proba(xv), 4))
    out.append(tree_classifier("rf-classifier-4class-shuffled-ids", "RandomForest", trees, xv,
                               rf.predict(xv), rf.predict_proba(xv), 4, rng=rng, shuffle=True))
    xt, yt, xv, _ = classification_data(2, 6)
    rf = RandomForestClassifier(n_estimators=15, max_depth=7, random_state=0).fit(xt, yt)
    trees = [sk_tree(e, proba_votes(len(rf.estimators_), True)) for e in rf.estimators_]
    out.append(tree_classifier("rf-classifier-binary-one-score", "RandomForest", trees, xv,
                               rf.predict(xv), rf.predict_proba(xv), 2))
    et = ExtraTreesClassifier(n_estimators=15, max_depth=7, random_state=0).fit(xt, yt)
    trees = [sk_tree(e, proba_votes(len(et.estimators_), False)) for e in et.estimators_]
    out.append(tree_classifier("et-classifier-binary", "ExtraTrees", trees, xv, et.predict(xv),
                               et.predict_proba(xv), 2))

    xt, yt, xv, _ = regression_data(8)
    rfr = RandomForestRegressor(n_estimators=12, max_depth=8, random_state=0).fit(xt, yt)
    trees = [sk_tree(e, lambda v: [(0, v[0][0])]) for e in rfr.estimators_]
    out.append(tree_regressor("rf-regressor-average", "RandomForest", trees, xv,
                              rfr.predict(xv), agg="AVERAGE"))
    xbig = np.random.default_rng(8).normal(size=(20000, xv.shape[1])).astype(np.float32)
    out.append(tree_regressor("rf-regressor-20000-rows", "RandomForest", trees, xbig,
                              rfr.predict(xbig), agg="AVERAGE"))
    per_tree = np.stack([e.predict(xv) for e in rfr.estimators_])
    out.append(tree_regressor("rf-regressor-min", "RandomForest", trees, xv, per_tree.min(0),
                              agg="MIN"))
    out.append(tree_regressor("rf-regressor-max-base", "RandomForest", trees, xv,
                              per_tree.max(0) + 2.5, agg="MAX", base=[2.5]))
    etr = ExtraTreesRegressor(n_estimators=10, max_depth=8, random_state=0).fit(xt, yt)
    trees = [sk_tree(e, lambda v: [(0, v[0][0] / len(etr.estimators_))])
             for e in etr.estimators_]
    out.append(tree_regressor("et-regressor-sum", "ExtraTrees", trees, xv, etr.predict(xv)))

    # Gradient boosting: one score with LOGISTIC for binary, SOFTMAX with base values for more.
    xt, yt, xv, _ = classification_data(2, 9)
    gb = GradientBoostingClassifier(n_estimators=30, max_depth=3, random_state=0).fit(xt, yt)
    lr = gb.learning_rate
    trees = [sk_tree(e, lambda v: [(0, v[0][0] * lr)]) for e in gb.estimators_[:, 0]]
    base = gb._raw_predict_init(xv[:1])[0]
    out.append(tree_classifier("gb-classifier-binary-logistic", "GradientBoosting", trees, xv,
                               gb.predict(xv), gb.predict_proba(xv), 2, base=base,
                               post="LOGISTIC"))
    xt, yt, xv, _ = classification_data(3, 10)
    gb = GradientBoostingClassifier(n_estimators=20, max_depth=3, random_state=0).fit(xt, yt)
    lr = gb.learning_rate
    trees = [sk_tree(gb.estimators_[i, k], (lambda k: lambda v: [(k, v[0][0] * lr)])(k))
             for i in range(gb.n_estimators_) for k in range(3)]
    base = gb._raw_predict_init(xv[:1])[0]
    out.append(tree_classifier("gb-classifier-3class-softmax", "GradientBoosting", trees, xv,
                               gb.predict(xv), gb.predict_proba(xv), 3, base=base,
                               post="SOFTMAX"))
    xt, yt, xv, _ = regression_data(11)
    gbr = GradientBoostingRegressor(n_estimators=40, max_depth=3, random_state=0).fit(xt, yt)
    lr = gbr.learning_rate
    trees = [sk_tree(e, lambda v: [(0, v[0][0] * lr)]) for e in gbr.estimators_[:, 0]]
    base = gbr._raw_predict_init(xv[:1])[0]
    out.append(tree_regressor("gb-regressor", "GradientBoosting", trees, xv, gbr.predict(xv),
                              base=base))

    # Histogram gradient boosting, trained and evaluated with missing values: NaN follows each
    # split's learned direction (nodes_missing_value_tracks_true).
    def with_nans(x, seed):
        x = x.copy()
        mask = np.random.default_rng(seed).random(x.shape) < 0.15
        x[mask] = np.nan
        return x

    xt, yt, xv, _ = regression_data(12)
    xt, xv = with_nans(xt, 1), with_nans(xv, 2)
    hgr = HistGradientBoostingRegressor(max_iter=30, random_state=0).fit(xt, yt)
    trees = [hgb_tree(p[0], 0) for p in hgr._predictors]
    out.append(tree_regressor("hgb-regressor-nan", "HistGradientBoosting", trees, xv,
                              hgr.predict(xv), base=np.ravel(hgr._baseline_prediction)))
    out.append(tree_regressor("hgb-regressor-nan-mixed-modes", "HistGradientBoosting", trees,
                              xv, hgr.predict(xv), base=np.ravel(hgr._baseline_prediction),
                              modes="mixed", rng=rng))
    xt, yt, xv, _ = classification_data(2, 13)
    xt, xv = with_nans(xt, 3), with_nans(xv, 4)
    hgc = HistGradientBoostingClassifier(max_iter=25, random_state=0).fit(xt, yt)
    trees = [hgb_tree(p[0], 0) for p in hgc._predictors]
    out.append(tree_classifier("hgb-classifier-binary-nan", "HistGradientBoosting", trees, xv,
                               hgc.predict(xv), hgc.predict_proba(xv), 2,
                               base=np.ravel(hgc._baseline_prediction)[:1], post="LOGISTIC"))
    xt, yt, xv, _ = classification_data(3, 14)
    xt, xv = with_nans(xt, 5), with_nans(xv, 6)
    hgc = HistGradientBoostingClassifier(max_iter=15, random_state=0).fit(xt, yt)
    trees = [hgb_tree(p[k], k) for p in hgc._predictors for k in range(3)]
    out.append(tree_classifier("hgb-classifier-3class-nan", "HistGradientBoosting", trees, xv,
                               hgc.predict(xv), hgc.predict_proba(xv), 3,
                               base=np.ravel(hgc._baseline_prediction), post="SOFTMAX"))
    return out


def tree_transform_cases():
    """Post transforms and comparisons scikit-learn has no estimator for, checked against numpy
    on a hand-made two-tree regressor: BRANCH_EQ / BRANCH_NEQ on a categorical feature."""
    out = []
    # Tree 0: x0 == 2 ? (x1 != 0 ? 1.5 : -0.5) : 0.25 ; tree 1: x1 <= 0.5 ? (t0: 0.5, t1: 1) : 2
    attrs = {
        "nodes_treeids": [0, 0, 0, 0, 0, 1, 1, 1],
        "nodes_nodeids": [0, 1, 2, 3, 4, 0, 1, 2],
        "nodes_featureids": [0, 1, 0, 0, 0, 1, 0, 0],
        "nodes_modes": ["BRANCH_EQ", "BRANCH_NEQ", "LEAF", "LEAF", "LEAF", "BRANCH_LEQ",
                        "LEAF", "LEAF"],
        "nodes_values": [2.0, 0.0, 0, 0, 0, 0.5, 0, 0],
        "nodes_truenodeids": [1, 2, 0, 0, 0, 1, 0, 0],
        "nodes_falsenodeids": [4, 3, 0, 0, 0, 2, 0, 0],
        "target_treeids": [0, 0, 0, 1, 1, 1],
        "target_nodeids": [2, 3, 4, 1, 1, 2],
        "target_ids": [0, 0, 0, 0, 1, 1],
        "target_weights": [1.5, -0.5, 0.25, 0.5, 1.0, 2.0],
        "n_targets": 2,
    }
    rng = np.random.default_rng(3)
    x = np.stack([rng.integers(0, 4, 64), rng.integers(0, 2, 64)], 1).astype(np.float32)

    def raw(x):
        t0 = np.where(x[:, 0] == 2, np.where(x[:, 1] != 0, 1.5, -0.5), 0.25)
        small = x[:, 1] <= 0.5
        return np.stack([t0 + np.where(small, 0.5, 0.0), np.where(small, 1.0, 2.0)], 1)

    def softmax(v):
        e = np.exp(v - v.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    def probit(p):
        # Winitzki's erfinv approximation, as the operator documents (and onnxruntime uses).
        v = 2 * p - 1
        ln = np.log((1 - v) * (1 + v))
        a = 2 / (np.pi * 0.147) + 0.5 * ln
        return np.sqrt(2) * np.sign(v) * np.sqrt(np.sqrt(a * a - ln / 0.147) - a)

    r = raw(x)
    transforms = {"NONE": r, "LOGISTIC": 1 / (1 + np.exp(-r)), "SOFTMAX": softmax(r)}
    for post, y in transforms.items():
        node = helper.make_node("TreeEnsembleRegressor", ["X"], ["variable"], domain=ML,
                                post_transform=post, **attrs)
        out.append(regressor_case("handmade-eq-neq-" + post.lower(), "TreeEnsemble (handmade)",
                                  node, x, y))
    # PROBIT wants scores in (0, 1): AVERAGE of weights scaled into it.
    a2 = dict(attrs)
    a2["target_weights"] = [0.3, 0.1, 0.2, 0.6, 0.45, 0.55]
    node = helper.make_node("TreeEnsembleRegressor", ["X"], ["variable"], domain=ML,
                            post_transform="PROBIT", aggregate_function="AVERAGE", **a2)
    t0 = np.where(x[:, 0] == 2, np.where(x[:, 1] != 0, 0.3, 0.1), 0.2)
    small = x[:, 1] <= 0.5
    avg = np.stack([(t0 + np.where(small, 0.6, 0.0)) / 2, np.where(small, 0.45, 0.55) / 2], 1)
    out.append(regressor_case("handmade-average-probit", "TreeEnsemble (handmade)", node, x,
                              probit(avg)))

    # Odd but valid layouts: a tree that is one leaf, tree ids that are not 0..n-1, a node no
    # root reaches and a vote on a branch (both ignored, as onnxruntime does).
    attrs = {
        "nodes_treeids": [5, 2, 2, 2, 2],
        "nodes_nodeids": [0, 0, 1, 2, 7],
        "nodes_featureids": [0, 1, 0, 0, 0],
        "nodes_modes": ["LEAF", "BRANCH_LT", "LEAF", "LEAF", "LEAF"],
        "nodes_values": [0, 1.0, 0, 0, 0],
        "nodes_truenodeids": [0, 1, 0, 0, 0],
        "nodes_falsenodeids": [0, 2, 0, 0, 0],
        "target_treeids": [5, 2, 2, 2, 2],
        "target_nodeids": [0, 1, 2, 7, 0],
        "target_ids": [0, 0, 0, 0, 0],
        "target_weights": [0.75, 1.0, -1.0, 100.0, 1000.0],
        "n_targets": 1,
    }
    node = helper.make_node("TreeEnsembleRegressor", ["X"], ["variable"], domain=ML, **attrs)
    out.append(regressor_case("handmade-leaf-tree-unreached-nodes", "TreeEnsemble (handmade)",
                              node, x, 0.75 + np.where(x[:, 1] < 1, 1.0, -1.0)))
    out.append(regressor_case("handmade-zero-rows", "TreeEnsemble (handmade)", node,
                              x[:0], np.zeros((0, 1))))
    return out


# --------------------------------------------------------------------------------------------
# Linear models and SVMs
# --------------------------------------------------------------------------------------------

def round_linear(est):
    est.coef_ = f32(est.coef_)
    est.intercept_ = f32(est.intercept_)
    return est


def linear_classifier_node(coef, intercepts, labels, post, out=("label", "probabilities"),
                           multi_class=0):
    return helper.make_node("LinearClassifier", ["X"], list(out), domain=ML,
                            coefficients=[float(c) for c in np.ravel(coef)],
                            intercepts=[float(b) for b in np.ravel(intercepts)],
                            classlabels_ints=[int(v) for v in labels], post_transform=post,
                            multi_class=multi_class)


def linear_cases():
    out = []
    xt, yt, xv, _ = classification_data(2, 20)
    lr = round_linear(LogisticRegression(max_iter=1000).fit(xt, yt))
    w, b = lr.coef_, lr.intercept_
    node = linear_classifier_node(np.vstack([-w, w]), [-b[0], b[0]], [0, 1], "LOGISTIC")
    out.append(classifier_case("logreg-binary", "LogisticRegression", node, xv, lr.predict(xv),
                               lr.predict_proba(xv), 2))
    node = linear_classifier_node(w, b, [0, 1], "LOGISTIC")
    out.append(classifier_case("logreg-binary-one-row", "LogisticRegression", node, xv,
                               lr.predict(xv), lr.predict_proba(xv), 2))

    xt, yt, xv, _ = classification_data(4, 21)
    lr = round_linear(LogisticRegression(max_iter=2000, multi_class="multinomial").fit(xt, yt))
    node = linear_classifier_node(lr.coef_, lr.intercept_, range(4), "SOFTMAX", multi_class=1)
    out.append(classifier_case("logreg-multinomial", "LogisticRegression", node, xv,
                               lr.predict(xv), lr.predict_proba(xv), 4))
    for elem, tag in ((DOUBLE, "double"), (INT64, "int64")):
        xin = np.round(xv * 4) if elem == INT64 else xv
        out.append(classifier_case("logreg-multinomial-%s-input" % tag, "LogisticRegression",
                                   node, xin, lr.predict(xin), lr.predict_proba(xin), 4,
                                   elem=elem))

    # One-vs-rest: LOGISTIC scores normalised by a Normalizer (L1), as skl2onnx writes it.
    lr = round_linear(LogisticRegression(max_iter=2000, multi_class="ovr").fit(xt, yt))
    nodes = [linear_classifier_node(lr.coef_, lr.intercept_, range(4), "LOGISTIC",
                                    out=("label", "scores")),
             helper.make_node("Normalizer", ["scores"], ["probabilities"], domain=ML, norm="L1")]
    m = model_of(nodes, [vi("X", FLOAT, ["N", xv.shape[1]])],
                 [vi("label", INT64, ["N"]), vi("probabilities", FLOAT, ["N", 4])])
    out.append(Case("logreg-ovr+normalizer", "LogisticRegression", m, [("X", xv)],
                    {"label": lr.predict(xv).astype(np.int64),
                     "probabilities": lr.predict_proba(xv).astype(np.float32)},
                    {"label": "label", "probabilities": "close"}, {"label": "probabilities"}))

    # LinearSVC: decision values as scores.
    xt, yt, xv, _ = classification_data(2, 22)
    svc = round_linear(LinearSVC(max_iter=20000, random_state=0).fit(xt, yt))
    w, b = svc.coef_, svc.intercept_
    node = linear_classifier_node(np.vstack([-w, w]), [-b[0], b[0]], [0, 1], "NONE")
    d = svc.decision_function(xv)
    out.append(classifier_case("linearsvc-binary", "LinearSVC", node, xv, svc.predict(xv),
                               np.stack([-d, d], 1), 2))
    xt, yt, xv, _ = classification_data(3, 23)
    svc = round_linear(LinearSVC(max_iter=20000, random_state=0).fit(xt, yt))
    node = linear_classifier_node(svc.coef_, svc.intercept_, range(3), "NONE")
    out.append(classifier_case("linearsvc-3class", "LinearSVC", node, xv, svc.predict(xv),
                               svc.decision_function(xv), 3))

    # Regressors.
    xt, yt, xv, _ = regression_data(24)
    for est, tag in ((LinearRegression(), "linreg"), (Ridge(alpha=2.0), "ridge")):
        est = round_linear(est.fit(xt, yt))
        node = helper.make_node("LinearRegressor", ["X"], ["variable"], domain=ML,
                                coefficients=[float(c) for c in np.ravel(est.coef_)],
                                intercepts=[float(np.ravel(est.intercept_)[0])], targets=1)
        out.append(regressor_case(tag, "LinearRegression", node, xv, est.predict(xv)))
    xt, yt, xv, _ = regression_data(25, targets=3)
    est = round_linear(Ridge(alpha=1.0).fit(xt, yt))
    node = helper.make_node("LinearRegressor", ["X"], ["variable"], domain=ML,
                            coefficients=[float(c) for c in np.ravel(est.coef_)],
                            intercepts=[float(v) for v in est.intercept_], targets=3)
    out.append(regressor_case("ridge-3-targets", "LinearRegression", node, xv, est.predict(xv)))
    out.append(regressor_case("ridge-3-targets-int32-input", "LinearRegression", node,
                              np.round(xv * 3).astype(np.int32),
                              est.predict(np.round(xv * 3)), elem=INT32))
    return out


def round_svm(est):
    """Rounds what libsvm predicts with to float32, as the ONNX attributes store it."""
    est.support_vectors_ = f32(est.support_vectors_)
    est._dual_coef_ = f32(est._dual_coef_)
    est._intercept_ = f32(est._intercept_)
    est._gamma = float(np.float32(est._gamma))
    est.coef0 = float(np.float32(est.coef0))
    if getattr(est, "probability", False):
        est._probA = f32(est._probA)
        est._probB = f32(est._probB)
    return est


def svc_node(svc, with_proba, out=("label", "probabilities")):
    attrs = dict(kernel_type=svc.kernel.upper(),
                 kernel_params=[float(svc._gamma), float(svc.coef0), float(svc.degree)],
                 vectors_per_class=[int(v) for v in svc.n_support_],
                 support_vectors=[float(v) for v in np.ravel(svc.support_vectors_)],
                 coefficients=[float(v) for v in np.ravel(svc._dual_coef_)],
                 rho=[float(v) for v in np.ravel(svc._intercept_)])
    if svc.classes_.dtype.kind == "U":
        attrs["classlabels_strings"] = [str(c) for c in svc.classes_]
    else:
        attrs["classlabels_ints"] = [int(c) for c in svc.classes_]
    if with_proba:
        attrs["prob_a"] = [float(v) for v in np.ravel(svc._probA)]
        attrs["prob_b"] = [float(v) for v in np.ravel(svc._probB)]
    return helper.make_node("SVMClassifier", ["X"], list(out), domain=ML, **attrs)


def svm_cases():
    out = []
    xt, yt, xv, _ = classification_data(3, 30, n=500)
    for kernel in ("linear", "poly", "rbf", "sigmoid"):
        kw = dict(gamma=0.05, coef0=0.5) if kernel == "sigmoid" else {}
        svc = round_svm(SVC(kernel=kernel, degree=3, probability=True, random_state=0,
                            decision_function_shape="ovo", **kw).fit(xt, yt))
        out.append(classifier_case("svc-3class-%s-proba" % kernel, "SVC", svc_node(svc, True),
                                   xv, svc.predict(xv), svc.predict_proba(xv), 3))
        if kernel in ("rbf", "poly"):
            out.append(classifier_case("svc-3class-%s-ovo-scores" % kernel, "SVC",
                                       svc_node(svc, False), xv, svc.predict(xv),
                                       svc.decision_function(xv), 3))
    xt, yt, xv, _ = classification_data(2, 31, n=500)
    svc = round_svm(SVC(kernel="rbf", probability=True, random_state=0).fit(xt, yt))
    out.append(classifier_case("svc-binary-rbf-proba", "SVC", svc_node(svc, True), xv,
                               svc.predict(xv), svc.predict_proba(xv), 2))
    d = svc.decision_function(xv)  # scikit-learn's sign: positive means classes_[1]
    out.append(classifier_case("svc-binary-rbf-scores", "SVC", svc_node(svc, False), xv,
                               svc.predict(xv), np.stack([d, -d], 1), 2))
    xt, yt, xv, _ = classification_data(5, 32, n=600)
    svc = round_svm(SVC(kernel="rbf", probability=True, random_state=0).fit(xt, yt))
    out.append(classifier_case("svc-5class-rbf-proba", "SVC", svc_node(svc, True), xv,
                               svc.predict(xv), svc.predict_proba(xv), 5))

    xt, yt, xv, _ = regression_data(33)
    for est, tag in ((SVR(kernel="rbf", C=50.0), "svr-rbf"), (SVR(kernel="linear"), "svr-linear"),
                     (SVR(kernel="poly", degree=2, coef0=1.0), "svr-poly"),
                     (NuSVR(kernel="rbf", C=20.0), "nusvr-rbf")):
        est = round_svm(est.fit(xt, yt))
        node = helper.make_node(
            "SVMRegressor", ["X"], ["variable"], domain=ML, kernel_type=est.kernel.upper(),
            kernel_params=[float(est._gamma), float(est.coef0), float(est.degree)],
            n_supports=int(est.support_vectors_.shape[0]),
            support_vectors=[float(v) for v in np.ravel(est.support_vectors_)],
            coefficients=[float(v) for v in np.ravel(est._dual_coef_)],
            rho=[float(np.ravel(est._intercept_)[0])])
        out.append(regressor_case(tag, "SVR", node, xv, est.predict(xv)))
    oc = round_svm(OneClassSVM(kernel="rbf", nu=0.2, gamma=0.1).fit(xt))
    node = helper.make_node(
        "SVMRegressor", ["X"], ["variable"], domain=ML, kernel_type="RBF",
        kernel_params=[float(oc._gamma), 0.0, 3.0], n_supports=int(oc.support_vectors_.shape[0]),
        support_vectors=[float(v) for v in np.ravel(oc.support_vectors_)],
        coefficients=[float(v) for v in np.ravel(oc._dual_coef_)],
        rho=[float(np.ravel(oc._intercept_)[0])], one_class=1)
    c = regressor_case("oneclass-svm", "SVR", node, xv, oc.predict(xv))
    c.checks = {"variable": "exact"}
    out.append(c)
    return out


# --------------------------------------------------------------------------------------------
# Preprocessing and pipelines
# --------------------------------------------------------------------------------------------

def scaler_node(offset, scale, inp="X", out="Y"):
    return helper.make_node("Scaler", [inp], [out], domain=ML,
                            offset=[float(v) for v in np.ravel(offset)],
                            scale=[float(v) for v in np.ravel(scale)])


def one_node_case(name, family, node, x, y, elem_in=FLOAT, elem_out=FLOAT, check="close",
                  out="Y"):
    m = model_of([node], [vi("X", elem_in, list(x.shape))], [vi(out, elem_out, list(y.shape))])
    return Case(name, family, m, [("X", x.astype(NP_OF[elem_in]))],
                {out: np.asarray(y).astype(NP_OF[elem_out])}, {out: check})


def preprocess_cases():
    out = []
    rng = np.random.default_rng(40)
    x = (rng.normal(size=(120, 5)) * [1, 10, 0.1, 5, 2] + [0, 3, -1, 50, 0]).astype(np.float32)
    xv = x[80:]

    st = StandardScaler().fit(x[:80])
    off, sc = f32(st.mean_), f32(1 / st.scale_)
    out.append(one_node_case("standard-scaler", "Scaler", scaler_node(off, sc), xv,
                             (xv - off) * sc))
    mm = MinMaxScaler().fit(x[:80])
    off, sc = f32(-mm.min_ / mm.scale_), f32(mm.scale_)
    out.append(one_node_case("minmax-scaler", "Scaler", scaler_node(off, sc), xv,
                             (xv - off) * sc))
    rb = RobustScaler().fit(x[:80])
    off, sc = f32(rb.center_), f32(1 / rb.scale_)
    out.append(one_node_case("robust-scaler-double-input", "Scaler", scaler_node(off, sc),
                             xv.astype(np.float64), (xv - off) * sc, elem_in=DOUBLE))
    out.append(one_node_case("scaler-broadcast-int64", "Scaler", scaler_node([2.0], [0.5]),
                             np.arange(12).reshape(3, 4), (np.arange(12).reshape(3, 4) - 2) / 2,
                             elem_in=INT64))

    for norm in ("l1", "l2", "max"):
        xn = np.abs(xv) if norm == "max" else xv  # ONNX's MAX divides by max(x), not max(|x|)
        xn = np.vstack([xn, np.zeros((1, 5), np.float32)])  # a zero row stays zero
        y = Normalizer(norm=norm).fit_transform(xn)
        node = helper.make_node("Normalizer", ["X"], ["Y"], domain=ML, norm=norm.upper())
        out.append(one_node_case("normalizer-" + norm, "Normalizer", node, xn, y))

    bz = Binarizer(threshold=0.3)
    node = helper.make_node("Binarizer", ["X"], ["Y"], domain=ML, threshold=0.3)
    out.append(one_node_case("binarizer", "Binarizer", node, xv, bz.fit_transform(xv),
                             check="exact"))
    xd = xv.astype(np.float64)
    out.append(one_node_case("binarizer-double", "Binarizer", node, xd, bz.fit_transform(xd),
                             elem_in=DOUBLE, elem_out=DOUBLE, check="exact"))

    xm = x.copy()
    xm[rng.random(xm.shape) < 0.2] = np.nan
    imp = SimpleImputer(strategy="mean").fit(xm[:80])
    stats = f32(imp.statistics_)
    node = helper.make_node("Imputer", ["X"], ["Y"], domain=ML,
                            imputed_value_floats=[float(v) for v in stats],
                            replaced_value_float=float("nan"))
    exp = np.where(np.isnan(xm[80:]), stats, xm[80:])
    out.append(one_node_case("simple-imputer-mean", "Imputer", node, xm[80:], exp))
    xi = rng.integers(-1, 4, size=(40, 3))
    impi = SimpleImputer(missing_values=-1, strategy="most_frequent").fit(xi)
    node = helper.make_node("Imputer", ["X"], ["Y"], domain=ML,
                            imputed_value_int64s=[int(v) for v in impi.statistics_],
                            replaced_value_int64=-1)
    out.append(one_node_case("simple-imputer-int64", "Imputer", node, xi, impi.transform(xi),
                             elem_in=INT64, elem_out=INT64, check="exact"))

    # Label encoding: keys -> indices, the inverse to floats, a NaN key, the default.
    labels = np.array([40, 7, 7, 13, 99, 40])
    le = LabelEncoder().fit(labels)
    node = helper.make_node("LabelEncoder", ["X"], ["Y"], domain=ML,
                            keys_int64s=[int(c) for c in le.classes_],
                            values_int64s=list(range(len(le.classes_))), default_int64=-1)
    xq = np.array([[7, 13, 5], [99, 40, 7]])
    m = model_of([node], [vi("X", INT64, [2, 3])], [vi("Y", INT64, [2, 3])], ml_opset=2)
    exp = np.vectorize(lambda v: le.transform([v])[0] if v in le.classes_ else -1)(xq)
    out.append(Case("label-encoder-int64", "LabelEncoder", m, [("X", xq)],
                    {"Y": exp.astype(np.int64)}, {"Y": "exact"}))
    node = helper.make_node("LabelEncoder", ["X"], ["Y"], domain=ML,
                            keys_floats=[0.5, float("nan"), -2.0], values_floats=[1.0, 2.0, 3.0],
                            default_float=-7.0)
    xf = np.array([0.5, np.nan, -2.0, 0.25], np.float32)
    m = model_of([node], [vi("X", FLOAT, [4])], [vi("Y", FLOAT, [4])], ml_opset=2)
    out.append(Case("label-encoder-float-nan-key", "LabelEncoder", m, [("X", xf)],
                    {"Y": np.array([1.0, 2.0, 3.0, -7.0], np.float32)}, {"Y": "exact"}))

    # Feature extraction and concatenation.
    node = helper.make_node("ArrayFeatureExtractor", ["X", "idx"], ["Y"], domain=ML)
    idx = helper.make_tensor("idx", INT64, [3], [4, 0, 4])
    g = helper.make_graph([node], "g", [vi("X", DOUBLE, ["N", 5])], [vi("Y", DOUBLE, ["N", 3])],
                          initializer=[idx])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13),
                                            helper.make_opsetid(ML, 1)])
    out.append(Case("array-feature-extractor", "ArrayFeatureExtractor", m,
                    [("X", xd)], {"Y": xd[:, [4, 0, 4]]}, {"Y": "exact"}))
    node = helper.make_node("FeatureVectorizer", ["A", "B"], ["Y"], domain=ML,
                            inputdimensions=[2, 4])
    a, b = xv[:, :2], xv[:, 2:5]
    m = model_of([node], [vi("A", FLOAT, ["N", 2]), vi("B", FLOAT, ["N", 3])],
                 [vi("Y", FLOAT, ["N", 6])])
    exp = np.hstack([a, b, np.zeros((len(a), 1), np.float32)])  # B padded to 4 columns
    out.append(Case("feature-vectorizer-pad", "FeatureVectorizer", m, [("A", a), ("B", b)],
                    {"Y": exp}, {"Y": "exact"}))

    # One-hot encoding of integer columns: ArrayFeatureExtractor + OneHotEncoder per column,
    # Reshape to [N, k], FeatureVectorizer to concatenate.
    xc = np.stack([rng.choice([3, 5, 8], 60), rng.choice([0, 1, 2, 7], 60)], 1)
    ohe = OneHotEncoder(handle_unknown="ignore").fit(xc[:40])
    xq = xc[40:].copy()
    xq[0, 0], xq[1, 1] = 4, 9  # unknown categories encode as zeros
    nodes, inits, dims = [], [], []
    for j, cats in enumerate(ohe.categories_):
        inits.append(helper.make_tensor("col%d" % j, INT64, [1], [j]))
        inits.append(helper.make_tensor("shape%d" % j, INT64, [2], [-1, len(cats)]))
        nodes += [helper.make_node("ArrayFeatureExtractor", ["X", "col%d" % j], ["c%d" % j],
                                   domain=ML),
                  helper.make_node("OneHotEncoder", ["c%d" % j], ["o%d" % j], domain=ML,
                                   cats_int64s=[int(c) for c in cats], zeros=1),
                  helper.make_node("Reshape", ["o%d" % j, "shape%d" % j], ["r%d" % j])]
        dims.append(len(cats))
    nodes.append(helper.make_node("FeatureVectorizer", ["r%d" % j for j in range(len(dims))],
                                  ["Y"], domain=ML, inputdimensions=dims))
    g = helper.make_graph(nodes, "g", [vi("X", INT64, ["N", 2])], [vi("Y", FLOAT, ["N", 7])],
                          initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13),
                                            helper.make_opsetid(ML, 1)])
    out.append(Case("onehot-encoder-int-columns", "OneHotEncoder", m, [("X", xq)],
                    {"Y": ohe.transform(xq).toarray().astype(np.float32)}, {"Y": "exact"}))
    return out


def pipeline_cases():
    out = []
    # StandardScaler -> multinomial LogisticRegression.
    xt, yt, xv, _ = classification_data(3, 50)
    xt, xv = xt * 7 + 3, xv * 7 + 3
    st = StandardScaler().fit(xt)
    st.mean_, st.scale_ = f32(st.mean_), 1 / f32(1 / st.scale_)
    lr = round_linear(LogisticRegression(max_iter=2000).fit(st.transform(xt), yt))
    nodes = [scaler_node(st.mean_, 1 / st.scale_, "X", "xs"),
             helper.make_node("LinearClassifier", ["xs"], ["label", "probabilities"], domain=ML,
                              coefficients=[float(c) for c in np.ravel(lr.coef_)],
                              intercepts=[float(b) for b in lr.intercept_],
                              classlabels_ints=[0, 1, 2], post_transform="SOFTMAX",
                              multi_class=1)]
    m = model_of(nodes, [vi("X", FLOAT, ["N", xv.shape[1]])],
                 [vi("label", INT64, ["N"]), vi("probabilities", FLOAT, ["N", 3])])
    xs = st.transform(xv)
    out.append(Case("scaler+logreg", "Pipeline", m, [("X", xv)],
                    {"label": lr.predict(xs).astype(np.int64),
                     "probabilities": lr.predict_proba(xs).astype(np.float32)},
                    {"label": "label", "probabilities": "close"}, {"label": "probabilities"}))

    # Imputer -> RandomForestClassifier, with missing values.
    xt, yt, xv, _ = classification_data(3, 51)
    rng = np.random.default_rng(5)
    xt[rng.random(xt.shape) < 0.1] = np.nan
    xv[rng.random(xv.shape) < 0.1] = np.nan
    imp = SimpleImputer().fit(xt)
    stats = f32(imp.statistics_).astype(np.float32)
    fill = lambda x: np.where(np.isnan(x), stats, x).astype(np.float32)  # noqa: E731
    rf = RandomForestClassifier(n_estimators=10, max_depth=6, random_state=0).fit(fill(xt), yt)
    trees = [sk_tree(e, proba_votes(10, False)) for e in rf.estimators_]
    attrs = ensemble_attrs(trees, True)
    nodes = [helper.make_node("Imputer", ["X"], ["xf"], domain=ML,
                              imputed_value_floats=[float(v) for v in stats],
                              replaced_value_float=float("nan")),
             helper.make_node("TreeEnsembleClassifier", ["xf"], ["label", "probabilities"],
                              domain=ML, classlabels_int64s=[0, 1, 2], **attrs)]
    m = model_of(nodes, [vi("X", FLOAT, ["N", xv.shape[1]])],
                 [vi("label", INT64, ["N"]), vi("probabilities", FLOAT, ["N", 3])])
    out.append(Case("imputer+random-forest", "Pipeline", m, [("X", xv)],
                    {"label": rf.predict(fill(xv)).astype(np.int64),
                     "probabilities": rf.predict_proba(fill(xv)).astype(np.float32)},
                    {"label": "label", "probabilities": "close"}, {"label": "probabilities"}))

    # Normalizer -> SVC(rbf, probability).
    xt, yt, xv, _ = classification_data(3, 52, n=450)
    nz = Normalizer().fit(xt)
    svc = round_svm(SVC(probability=True, random_state=0).fit(nz.transform(xt), yt))
    nodes = [helper.make_node("Normalizer", ["X"], ["xn"], domain=ML, norm="L2"),
             svc_node(svc, True)]
    nodes[1].input[0] = "xn"
    m = model_of(nodes, [vi("X", FLOAT, ["N", xv.shape[1]])],
                 [vi("label", INT64, ["N"]), vi("probabilities", FLOAT, ["N", 3])])
    xn = nz.transform(xv).astype(np.float32)  # the operator's output is float
    out.append(Case("normalizer+svc", "Pipeline", m, [("X", xv)],
                    {"label": svc.predict(xn).astype(np.int64),
                     "probabilities": svc.predict_proba(xn).astype(np.float32)},
                    {"label": "label", "probabilities": "close"}, {"label": "probabilities"}))

    # One-hot categories + scaled numbers -> Ridge: two inputs joined by FeatureVectorizer.
    rng = np.random.default_rng(6)
    cat = rng.choice([1, 2, 5], size=(300, 1))
    num = rng.normal(size=(300, 3)).astype(np.float32) * 4 + 1
    y = num @ [1.0, -2.0, 0.5] + np.choose(np.searchsorted([1, 2, 5], cat[:, 0]), [0, 3, -4])
    ohe = OneHotEncoder().fit(cat[:200])
    st = StandardScaler().fit(num[:200])
    st.mean_, st.scale_ = f32(st.mean_), 1 / f32(1 / st.scale_)
    feats = lambda c, n: np.hstack([ohe.transform(c).toarray(),  # noqa: E731
                                    st.transform(n).astype(np.float32)])
    rd = round_linear(Ridge(alpha=0.1).fit(feats(cat[:200], num[:200]), y[:200]))
    shape = helper.make_tensor("shape", INT64, [2], [-1, 3])
    nodes = [helper.make_node("OneHotEncoder", ["cat"], ["oh3"], domain=ML,
                              cats_int64s=[1, 2, 5]),
             helper.make_node("Reshape", ["oh3", "shape"], ["oh"]),
             scaler_node(st.mean_, 1 / st.scale_, "num", "ns"),
             helper.make_node("FeatureVectorizer", ["oh", "ns"], ["f"], domain=ML,
                              inputdimensions=[3, 3]),
             helper.make_node("LinearRegressor", ["f"], ["variable"], domain=ML,
                              coefficients=[float(c) for c in rd.coef_],
                              intercepts=[float(rd.intercept_)])]
    g = helper.make_graph(nodes, "g", [vi("cat", INT64, ["N", 1]), vi("num", FLOAT, ["N", 3])],
                          [vi("variable", FLOAT, ["N", 1])], initializer=[shape])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13),
                                            helper.make_opsetid(ML, 1)])
    out.append(Case("onehot+scaler+ridge", "Pipeline", m,
                    [("cat", cat[200:].astype(np.int64)), ("num", num[200:])],
                    {"variable": rd.predict(feats(cat[200:], num[200:]))
                     .astype(np.float32)[:, None]}, {"variable": "close"}))

    # StandardScaler -> GradientBoostingRegressor.
    xt, yt, xv, _ = regression_data(53)
    st = StandardScaler().fit(xt)
    st.mean_, st.scale_ = f32(st.mean_), 1 / f32(1 / st.scale_)
    xs = lambda x: st.transform(x).astype(np.float32)  # noqa: E731
    gbr = GradientBoostingRegressor(n_estimators=25, max_depth=3, random_state=0)
    gbr.fit(xs(xt), yt)
    lr = gbr.learning_rate
    trees = [sk_tree(e, lambda v: [(0, v[0][0] * lr)]) for e in gbr.estimators_[:, 0]]
    attrs = ensemble_attrs(trees, False)
    nodes = [scaler_node(st.mean_, 1 / st.scale_, "X", "xs"),
             helper.make_node("TreeEnsembleRegressor", ["xs"], ["variable"], domain=ML,
                              n_targets=1, base_values=[float(gbr._raw_predict_init(xv[:1])[0])],
                              **attrs)]
    m = model_of(nodes, [vi("X", FLOAT, ["N", xv.shape[1]])], [vi("variable", FLOAT, ["N", 1])])
    out.append(Case("scaler+gradient-boosting", "Pipeline", m, [("X", xv)],
                    {"variable": gbr.predict(xs(xv)).astype(np.float32)[:, None]},
                    {"variable": "close"}))
    return out


def string_cases():
    """String class labels and the string forms of the encoders."""
    out = []
    names = np.array(["cat", "dog", "fish", "hamster"])
    xt, yt, xv, _ = classification_data(3, 60)
    yt = names[yt]
    dt = DecisionTreeClassifier(max_depth=6, random_state=0).fit(xt, yt)
    out.append(tree_classifier("dt-classifier-string-labels", "String labels",
                               [sk_tree(dt, proba_votes(1, False))], xv, dt.predict(xv),
                               dt.predict_proba(xv), 3, classes=dt.classes_))
    xt, yt, xv, _ = classification_data(2, 61)
    yt = np.array(["no", "yes"])[yt]
    rf = RandomForestClassifier(n_estimators=8, max_depth=6, random_state=0).fit(xt, yt)
    trees = [sk_tree(e, proba_votes(8, True)) for e in rf.estimators_]
    out.append(tree_classifier("rf-binary-one-score-string-labels", "String labels", trees, xv,
                               rf.predict(xv), rf.predict_proba(xv), 2, classes=rf.classes_))
    xt, yt, xv, _ = classification_data(4, 62)
    yt = names[yt]
    lr = round_linear(LogisticRegression(max_iter=2000).fit(xt, yt))
    node = helper.make_node("LinearClassifier", ["X"], ["label", "probabilities"], domain=ML,
                            coefficients=[float(c) for c in np.ravel(lr.coef_)],
                            intercepts=[float(b) for b in lr.intercept_],
                            classlabels_strings=[str(c) for c in lr.classes_],
                            post_transform="SOFTMAX")
    out.append(classifier_case("logreg-string-labels", "String labels", node, xv,
                               lr.predict(xv), lr.predict_proba(xv), 4, classes=lr.classes_))
    xt, yt, xv, _ = classification_data(3, 63, n=450)
    yt = names[yt]
    svc = round_svm(SVC(probability=True, random_state=0).fit(xt, yt))
    node = svc_node(svc, True)
    out.append(classifier_case("svc-string-labels", "String labels", node, xv,
                               svc.predict(xv), svc.predict_proba(xv), 3, classes=svc.classes_))

    def one(name, node, x, x_elem, y, y_elem, ml_opset=2):
        m = model_of([node], [vi("X", x_elem, list(x.shape))], [vi("Y", y_elem, list(y.shape))],
                     ml_opset=ml_opset)
        return Case(name, "String encoders", m, [("X", x)], {"Y": y}, {"Y": "exact"})

    S, I, F = TensorProto.STRING, INT64, FLOAT
    words = np.array(["red", "green", "blue", "green", "red"])
    le = LabelEncoder().fit(words)
    node = helper.make_node("LabelEncoder", ["X"], ["Y"], domain=ML,
                            keys_strings=[str(c) for c in le.classes_],
                            values_int64s=list(range(len(le.classes_))), default_int64=-1)
    xq = np.array([["red", "blue"], ["mauve", "green"]])
    out.append(one("label-encoder-string-to-int64", node, xq, S,
                   np.array([[2, 0], [-1, 1]], np.int64), I))
    node = helper.make_node("LabelEncoder", ["X"], ["Y"], domain=ML,
                            keys_int64s=list(range(len(le.classes_))),
                            values_strings=[str(c) for c in le.classes_], default_string="??")
    xq = np.array([0, 2, 7, 1])
    out.append(one("label-encoder-int64-to-string", node, xq, I,
                   np.array(["blue", "red", "??", "green"]), S))
    node = helper.make_node("LabelEncoder", ["X"], ["Y"], domain=ML,
                            keys_strings=["a", "b"], values_floats=[0.5, -1.5])
    out.append(one("label-encoder-string-to-float", node, np.array(["b", "a", "c"]), S,
                   np.array([-1.5, 0.5, -0.0], np.float32), F))
    node = helper.make_node("LabelEncoder", ["X"], ["Y"], domain=ML,
                            classes_strings=["x", "yy", "zzz"], default_int64=-5,
                            default_string="none")
    out.append(one("label-encoder-v1-string-to-int64", node, np.array(["zzz", "q", "x"]), S,
                   np.array([2, -5, 0], np.int64), I, ml_opset=1))
    out.append(one("label-encoder-v1-int64-to-string", node, np.array([1, 3, -1, 0]), I,
                   np.array(["yy", "none", "none", "x"]), S, ml_opset=1))
    node = helper.make_node("CategoryMapper", ["X"], ["Y"], domain=ML,
                            cats_strings=["low", "mid", "high"], cats_int64s=[10, 20, 30],
                            default_int64=0, default_string="unknown")
    out.append(one("category-mapper-string-to-int64", node,
                   np.array([["high", "low"], ["??", "mid"]]), S,
                   np.array([[30, 10], [0, 20]], np.int64), I, ml_opset=1))
    out.append(one("category-mapper-int64-to-string", node, np.array([20, 5, 30]), I,
                   np.array(["mid", "unknown", "high"]), S, ml_opset=1))

    rng = np.random.default_rng(64)
    xs = rng.choice(["north", "south", "east"], size=(30, 1))
    ohe = OneHotEncoder(handle_unknown="ignore").fit(xs[:20])
    xq = xs[20:].copy()
    xq[0, 0] = "west"
    node = helper.make_node("OneHotEncoder", ["X"], ["Y"], domain=ML,
                            cats_strings=[str(c) for c in ohe.categories_[0]])
    out.append(one("onehot-encoder-strings", node, xq, S,
                   ohe.transform(xq).toarray().astype(np.float32)[:, None, :], F, ml_opset=1))
    node = helper.make_node("ArrayFeatureExtractor", ["X", "idx"], ["Y"], domain=ML)
    idx = helper.make_tensor("idx", INT64, [2], [2, 0])
    g = helper.make_graph([node], "g", [vi("X", S, [2, 3])], [vi("Y", S, [2, 2])],
                          initializer=[idx])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13),
                                            helper.make_opsetid(ML, 1)])
    xa = np.array([["a", "bb", "ccc"], ["d", "ee", "fff"]])
    out.append(Case("array-feature-extractor-strings", "String encoders", m, [("X", xa)],
                    {"Y": xa[:, [2, 0]]}, {"Y": "exact"}))
    return out


def cases():
    return (tree_cases() + tree_transform_cases() + linear_cases() + svm_cases() +
            preprocess_cases() + pipeline_cases() + string_cases())


# --------------------------------------------------------------------------------------------
# Malformed models: each must fail to load with an error naming the problem.
# --------------------------------------------------------------------------------------------

def broken_models():
    """(name, model, substring the error must contain)."""
    base = {
        "nodes_treeids": [0, 0, 0], "nodes_nodeids": [0, 1, 2], "nodes_featureids": [0, 0, 0],
        "nodes_modes": ["BRANCH_LEQ", "LEAF", "LEAF"], "nodes_values": [0.5, 0, 0],
        "nodes_truenodeids": [1, 0, 0], "nodes_falsenodeids": [2, 0, 0],
        "class_treeids": [0, 0], "class_nodeids": [1, 2], "class_ids": [0, 1],
        "class_weights": [1.0, 1.0], "classlabels_int64s": [0, 1]}

    def tree(**changes):
        a = dict(base)
        a.update(changes)
        a = {k: v for k, v in a.items() if v is not None}
        node = helper.make_node("TreeEnsembleClassifier", ["X"], ["label", "probabilities"],
                                domain=ML, **a)
        g = helper.make_graph([node], "g", [vi("X", FLOAT, ["N", 2])],
                              [vi("label", INT64, ["N"]), vi("probabilities", FLOAT, ["N", 2])])
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13),
                                                   helper.make_opsetid(ML, 3)])

    return [
        ("cycle", tree(nodes_truenodeids=[0, 0, 0]), "reached twice"),
        ("missing-child", tree(nodes_falsenodeids=[5, 0, 0]), "does not have"),
        ("length-mismatch", tree(nodes_values=[0.5, 0]), "nodes_values has 2 entries"),
        ("bad-mode", tree(nodes_modes=["BRANCH_XX", "LEAF", "LEAF"]), "nodes_modes[0]"),
        ("class-id-range", tree(class_ids=[0, 2]), "class_ids[1] is 2"),
        ("feature-range", tree(nodes_featureids=[7, 0, 0]), "feature 7"),
        ("duplicate-node", tree(nodes_nodeids=[0, 1, 1]), "listed twice"),
        ("two-label-lists", tree(classlabels_strings=["a", "b"]), "both given"),
        ("no-labels", tree(classlabels_int64s=None), "classlabels_int64s or"),
        ("bad-transform", tree(post_transform="CUBE"), "post_transform 'CUBE'"),
    ]


def mutated_models(count=150, seed=0):
    """Random corruptions of small valid tree and SVM models (ids, lengths, modes, counts):
    each must either run or be refused cleanly, never crash. Yields (name, model, input)."""
    rng = np.random.default_rng(seed)
    xt, yt, xv, _ = classification_data(3, 70, n=460)
    dt = DecisionTreeClassifier(max_depth=3, random_state=0).fit(xt, yt)
    tree = ensemble_attrs([sk_tree(dt, proba_votes(1, False))], True, double=False)
    tree["classlabels_int64s"] = [0, 1, 2]
    svc = SVC(kernel="rbf", probability=True, random_state=0).fit(xt[:60], yt[:60])
    svm = {a.name: helper.get_attribute_value(a) for a in svc_node(svc, True).attribute}
    x = xv[:5]
    for k in range(count):
        op, attrs = ("TreeEnsembleClassifier", tree) if k % 3 else ("SVMClassifier", svm)
        a = {n: (list(v) if isinstance(v, (list, tuple)) else v) for n, v in attrs.items()}
        for _ in range(rng.integers(1, 4)):
            name = sorted(a)[rng.integers(len(a))]
            v = a[name]
            if not isinstance(v, list) or not v:
                continue
            i = int(rng.integers(len(v)))
            if rng.random() < 0.15:  # a list of the wrong length
                if rng.random() < 0.5:
                    del v[i]
                else:
                    v.append(v[i])
            elif isinstance(v[i], int):
                v[i] = int(rng.integers(-3, 40))
            elif isinstance(v[i], float):
                v[i] = float(rng.choice([np.nan, np.inf, -1e30, 0.0, 1e-30]))
            elif isinstance(v[i], (str, bytes)):
                v[i] = ["LEAF", "BRANCH_EQ", "BRANCH_GT", "bogus"][rng.integers(4)]
        node = helper.make_node(op, ["X"], ["label", "probabilities"], domain=ML,
                                **{n: v for n, v in a.items() if not isinstance(v, list) or v})
        g = helper.make_graph([node], "g", [vi("X", FLOAT, ["N", x.shape[1]])],
                              [vi("label", INT64, ["N"]), vi("probabilities", FLOAT, None)])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13),
                                                helper.make_opsetid(ML, 3)])
        yield "mutated-%03d-%s" % (k, op), m, x


def bench_model(path, n_trees=100, depth=8, features=50, seed=0):
    """Writes a RandomForestRegressor of N_TREES depth-DEPTH trees (nearly full: about 509 nodes
    each) over FEATURES inputs to PATH; returns (features, total nodes)."""
    x, y = make_regression(n_samples=20000, n_features=features, n_informative=30,
                           noise=1.0, random_state=seed)
    rf = RandomForestRegressor(n_estimators=n_trees, max_depth=depth, random_state=seed,
                               n_jobs=2).fit(x.astype(np.float32), y)
    trees = [sk_tree(e, lambda v: [(0, v[0][0])]) for e in rf.estimators_]
    attrs = ensemble_attrs(trees, False)
    node = helper.make_node("TreeEnsembleRegressor", ["X"], ["variable"], domain=ML, n_targets=1,
                            aggregate_function="AVERAGE", **attrs)
    m = model_of([node], [vi("X", FLOAT, ["N", features])], [vi("variable", FLOAT, ["N", 1])])
    onnx.save(m, path)
    return features, sum(len(t.left) for t in trees)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="Writes the tree-ensemble benchmark model.")
    ap.add_argument("--bench-model", required=True, metavar="PATH",
                    help="where to write the 100-tree, depth-8 forest (50 float features)")
    args = ap.parse_args()
    f, nodes = bench_model(args.bench_model)
    print("wrote %s: 100 trees, %d nodes, %d features" % (args.bench_model, nodes, f))
