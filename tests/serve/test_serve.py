"""End-to-end tests of `ferry serve` over real HTTP (KServe v2 protocol, Triton's extensions).

A real server process runs on a free 127.0.0.1 port against a repository of tiny models built
with onnx.helper (models.py). What is checked: every endpoint; every datatype JSON can carry,
in JSON and in Triton's binary tensor encoding, flat and nested; errors with Triton's status
codes and messages that name the culprit; hostile model names; request size limits; the
repository API; reload under load without a failed request; SIGTERM with requests in flight;
/metrics; the JSON access log with trace ids; flags and their environment twins.
"""

import json
import os
import re
import shutil
import signal
import socket
import struct
import threading
import time

import numpy as np
import pytest
import requests

import models

LOAD_SECONDS = 3.0  # how long the load tests hammer the server


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def tensor(name, array, datatype, nested=False):
    data = array.tolist() if nested else array.reshape(-1).tolist()
    return {"name": name, "shape": list(array.shape), "datatype": datatype, "data": data}


def infer(server, model, inputs, version=None, **extra):
    path = "/v2/models/%s%s/infer" % (model, "/versions/%s" % version if version else "")
    body = dict(extra)
    body["inputs"] = inputs
    return server.post(path, json=body)


def binary_request(inputs, outputs=None, parameters=None, request_id=None):
    """INPUTS: [(name, array, datatype, binary)]. Returns (body, json_length)."""
    spec, blobs = [], []
    for name, array, datatype, binary in inputs:
        t = {"name": name, "shape": list(array.shape), "datatype": datatype}
        if binary:
            raw = np.ascontiguousarray(array).tobytes()
            t["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            t["data"] = array.reshape(-1).tolist()
        spec.append(t)
    head = {"inputs": spec}
    if outputs is not None:
        head["outputs"] = outputs
    if parameters is not None:
        head["parameters"] = parameters
    if request_id is not None:
        head["id"] = request_id
    text = json.dumps(head).encode()
    return text + b"".join(blobs), len(text)


NUMPY = {k: v[1] for k, v in models.DTYPES.items()}


def decode_response(resp):
    """Returns (json, {output name: numpy array}) for JSON or binary responses."""
    hlen = resp.headers.get("Inference-Header-Content-Length")
    body = resp.content
    if hlen is None:
        head, rest = resp.json(), b""
    else:
        hlen = int(hlen)
        head, rest = json.loads(body[:hlen]), body[hlen:]
    arrays, off = {}, 0
    for out in head["outputs"]:
        dt = NUMPY[out["datatype"]]
        if "data" in out:
            arrays[out["name"]] = np.array(out["data"], dtype=dt).reshape(out["shape"])
        else:
            n = out["parameters"]["binary_data_size"]
            arrays[out["name"]] = np.frombuffer(rest[off:off + n], dtype=dt).reshape(out["shape"])
            off += n
    assert off == len(rest), "binary bytes left over in the response"
    return head, arrays


def raw_http(port, request_bytes, timeout=10):
    """Sends REQUEST_BYTES on a new connection; returns (status, headers dict, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request_bytes)
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                m = re.search(rb"content-length:\s*(\d+)", head, re.I)
                if m and len(body) >= int(m.group(1)):
                    break
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines and lines[0].startswith("HTTP/") else 0
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


def assert_error(resp, status, *needles):
    assert resp.status_code == status, "expected %d, got %d: %s" % (
        status, resp.status_code, resp.text[:500])
    body = resp.json()
    assert set(body) == {"error"}, body
    for n in needles:
        assert n.lower() in body["error"].lower(), "%r not in %r" % (n, body["error"])
    return body["error"]


def access_lines(server, **match):
    return [l for l in server.lines()
            if l.get("event") == "request" and all(l.get(k) == v for k, v in match.items())]


# ---------------------------------------------------------------------------------------------
# Health, metadata, config, stats
# ---------------------------------------------------------------------------------------------


def test_health_and_server_metadata(server):
    assert server.get("/v2/health/live").status_code == 200
    assert server.get("/v2/health/ready").status_code == 200
    meta = server.get("/v2").json()
    assert meta["name"] == "ferry"
    assert re.match(r"^\d+\.\d+\.\d+", meta["version"])
    for ext in ("binary_tensor_data", "model_repository", "statistics", "model_configuration"):
        assert ext in meta["extensions"]


def test_model_metadata(server):
    meta = server.get("/v2/models/mixed").json()
    assert meta["name"] == "mixed"
    assert meta["versions"] == ["1"]
    assert meta["platform"]
    assert meta["inputs"] == [{"name": "a", "datatype": "FP32", "shape": [-1, 4]},
                              {"name": "b", "datatype": "INT64", "shape": [-1, 4]}]
    assert meta["outputs"] == [{"name": "sum", "datatype": "FP32", "shape": [-1, 4]},
                               {"name": "twice", "datatype": "INT64", "shape": [-1, 4]}]
    fixed = server.get("/v2/models/fixed/versions/1").json()
    assert fixed["inputs"][0]["shape"] == [2, 3]
    # Derived config: a batching identity model.
    ident = server.get("/v2/models/id_uint16").json()
    assert ident["inputs"] == [{"name": "x", "datatype": "UINT16", "shape": [-1, 3]}]


def test_versions(server):
    meta = server.get("/v2/models/versioned").json()
    assert sorted(meta["versions"]) == ["1", "2"]
    x = np.array([[10.0]], dtype=np.float32)
    for v in ("1", "2"):
        r = infer(server, "versioned", [tensor("x", x, "FP32")], version=v)
        assert r.status_code == 200, r.text
        assert r.json()["model_version"] == v
        assert r.json()["outputs"][0]["data"] == [10.0 + int(v)]
    # No version: the highest.
    r = infer(server, "versioned", [tensor("x", x, "FP32")])
    assert r.json()["model_version"] == "2"
    assert server.get("/v2/models/versioned/versions/2/ready").status_code == 200
    assert sorted(server.get("/v2/models/versioned/versions/1").json()["versions"]) == ["1", "2"]
    # Version 3 exists on disk but the policy leaves it out; 9 does not exist.
    for v in ("3", "9"):
        r = server.get("/v2/models/versioned/versions/%s/ready" % v)
        assert r.status_code in (400, 404)
        assert_error(infer(server, "versioned", [tensor("x", x, "FP32")], version=v), 404)
    assert_error(server.get("/v2/models/versioned/versions/01"), 400, "version")
    assert_error(server.get("/v2/models/versioned/versions/-1"), 400, "version")
    assert_error(server.get("/v2/models/versioned/versions/abc/ready"), 400, "version")


def test_model_ready_and_config(server):
    assert server.get("/v2/models/mlp/ready").status_code == 200
    assert_error(server.get("/v2/models/nope/ready"), 404, "nope")
    cfg = server.get("/v2/models/mixed/config").json()
    assert cfg["name"] == "mixed"
    assert cfg["max_batch_size"] == 8
    assert [i["name"] for i in cfg["input"]] == ["a", "b"]
    assert cfg["input"][1]["data_type"] == "TYPE_INT64"
    assert cfg["input"][0]["dims"] == [4]
    assert cfg["output"][0]["data_type"] == "TYPE_FP32"
    assert cfg["dynamic_batching"]["max_queue_delay_microseconds"] == 100
    assert cfg["instance_group"][0]["kind"] == "KIND_CPU"
    assert cfg["version_policy"] == {"latest": {"num_versions": 1}}
    vcfg = server.get("/v2/models/versioned/versions/1/config").json()
    assert vcfg["version_policy"] == {"specific": {"versions": [1, 2]}}


def test_statistics(server):
    x = np.ones((2, 3), dtype=np.float32)
    for _ in range(3):
        assert infer(server, "id_fp32", [tensor("x", x, "FP32")]).status_code == 200
    stats = server.get("/v2/models/id_fp32/stats").json()["model_stats"]
    assert len(stats) == 1
    s = stats[0]
    assert s["name"] == "id_fp32" and s["version"] == "1"
    assert s["inference_count"] >= 6  # batch items
    assert 1 <= s["execution_count"] <= 3
    assert s["inference_stats"]["success"]["count"] >= 3
    assert s["inference_stats"]["success"]["ns"] > 0
    assert s["last_inference"] > 1600000000000
    for key in ("fail", "queue", "compute_input", "compute_infer", "compute_output"):
        assert set(s["inference_stats"][key]) == {"count", "ns"}
    every = server.get("/v2/models/stats").json()["model_stats"]
    assert {"id_fp32", "mlp", "mixed"} <= {m["name"] for m in every}
    one = server.get("/v2/models/versioned/versions/2/stats").json()["model_stats"]
    assert [(m["name"], m["version"]) for m in one] == [("versioned", "2")]
    assert_error(server.get("/v2/models/nope/stats"), 404)


# ---------------------------------------------------------------------------------------------
# Inference: JSON
# ---------------------------------------------------------------------------------------------


def test_infer_mlp_matches_numpy(server, repo):
    x = np.random.default_rng(1).standard_normal((3, 64)).astype(np.float32)
    want = models.mlp_reference(repo["mlp_weights"], x)
    for nested in (False, True):
        r = infer(server, "mlp", [tensor("features", x, "FP32", nested)], id="req-7")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model_name"] == "mlp"
        assert body["model_version"] == "1"
        assert body["id"] == "req-7"
        (out,) = body["outputs"]
        assert out["name"] == "scores" and out["datatype"] == "FP32" and out["shape"] == [3, 10]
        assert isinstance(out["data"], list) and len(out["data"]) == 30  # always flat
        np.testing.assert_allclose(np.array(out["data"]).reshape(3, 10), want, rtol=1e-4,
                                   atol=1e-6)


EXTREMES = {
    "BOOL": [[True, False, True], [False, False, True]],
    "INT8": [[-128, 0, 127], [1, -1, 5]],
    "INT16": [[-32768, 0, 32767], [7, -7, 3]],
    "INT32": [[-2147483648, 0, 2147483647], [1, 2, 3]],
    "INT64": [[-9223372036854775808, 0, 9223372036854775807], [1, -2, 3]],
    "UINT8": [[0, 128, 255], [1, 2, 3]],
    "UINT16": [[0, 1, 65535], [4, 5, 6]],
    "UINT32": [[0, 1, 4294967295], [7, 8, 9]],
    "UINT64": [[0, 1, 18446744073709551615], [10, 11, 12]],
    "FP16": [[0.5, -1.25, 65504.0], [0.099975586, 1e-4, -0.0]],
    "FP32": [[0.1, -3.4028234e38, 1.17549435e-38], [1e-45, 123.456, -0.0]],
    "FP64": [[0.1, 1.7976931348623157e308, 5e-324], [-2.5, 1e-300, 3.0]],
}


@pytest.mark.parametrize("datatype", sorted(models.DTYPES))
def test_every_datatype_json(server, datatype):
    dt = NUMPY[datatype]
    x = np.array(EXTREMES[datatype], dtype=dt)
    model = "id_" + datatype.lower()
    for nested in (False, True):
        r = infer(server, model, [tensor("x", x, datatype, nested)])
        assert r.status_code == 200, r.text
        (out,) = r.json()["outputs"]
        assert out["datatype"] == datatype and out["shape"] == [2, 3]
        got = np.array(out["data"], dtype=dt).reshape(2, 3)
        np.testing.assert_array_equal(got, x)
        if datatype in ("INT64", "UINT64"):
            # Python's json keeps big integers exact: compare as ints, not through floats.
            assert out["data"] == [int(v) for v in x.reshape(-1)]


@pytest.mark.parametrize("datatype", sorted(models.DTYPES))
def test_every_datatype_binary(server, datatype):
    dt = NUMPY[datatype]
    x = np.array(EXTREMES[datatype], dtype=dt)
    model = "id_" + datatype.lower()
    body, hlen = binary_request([("x", x, datatype, True)],
                                outputs=[{"name": "y", "parameters": {"binary_data": True}}])
    r = server.post("/v2/models/%s/infer" % model, data=body,
                    headers={"Inference-Header-Content-Length": str(hlen),
                             "Content-Type": "application/octet-stream"})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/octet-stream"
    head, arrays = decode_response(r)
    assert head["outputs"][0]["parameters"]["binary_data_size"] == x.nbytes
    assert "data" not in head["outputs"][0]
    np.testing.assert_array_equal(arrays["y"], x)
    assert arrays["y"].tobytes() == x.tobytes()  # bit-exact, -0.0 and all


def test_binary_mixed_with_json_and_misaligned(server):
    a = np.arange(8, dtype=np.float32).reshape(2, 4) / 4
    b = np.array([[1, -2, 3, -4], [5, 6, 7, 2 ** 40]], dtype=np.int64)
    # A JSON length of every remainder mod 8 moves the binary tensors to every alignment.
    for pad in range(8):
        body, hlen = binary_request([("a", a, "FP32", True), ("b", b, "INT64", True)],
                                    parameters={"pad": "x" * pad})
        r = server.post("/v2/models/mixed/infer", data=body,
                        headers={"Inference-Header-Content-Length": str(hlen)})
        assert r.status_code == 200, r.text
        assert "Inference-Header-Content-Length" not in r.headers  # no binary output asked
        head, arrays = decode_response(r)
        np.testing.assert_array_equal(arrays["sum"], a + b.astype(np.float32))
        np.testing.assert_array_equal(arrays["twice"], b * 2)
    # binary_data_output for all outputs, overridden per output; one input as JSON.
    body, hlen = binary_request(
        [("a", a, "FP32", False), ("b", b, "INT64", True)],
        outputs=[{"name": "twice"}, {"name": "sum", "parameters": {"binary_data": False}}],
        parameters={"binary_data_output": True}, request_id="mix")
    r = server.post("/v2/models/mixed/infer", data=body,
                    headers={"Inference-Header-Content-Length": str(hlen)})
    assert r.status_code == 200, r.text
    head, arrays = decode_response(r)
    assert head["id"] == "mix"
    assert [o["name"] for o in head["outputs"]] == ["twice", "sum"]  # the order asked
    assert "data" not in head["outputs"][0] and "data" in head["outputs"][1]
    np.testing.assert_array_equal(arrays["twice"], b * 2)
    np.testing.assert_array_equal(arrays["sum"], a + b.astype(np.float32))


def test_raw_binary_body(server):
    x = np.array([[1.5, -2.0, 3.25]], dtype=np.float32)
    r = server.post("/v2/models/id_fp32/infer", data=x.tobytes(),
                    headers={"Inference-Header-Content-Length": "0"})
    assert r.status_code == 200, r.text
    head, arrays = decode_response(r)
    np.testing.assert_array_equal(arrays["y"], x)
    # mixed has two inputs: a raw body cannot say which.
    r = server.post("/v2/models/mixed/infer", data=x.tobytes(),
                    headers={"Inference-Header-Content-Length": "0"})
    assert_error(r, 400, "exactly one input")


def test_requested_outputs_and_fixed_shapes(server):
    a = np.ones((1, 4), dtype=np.float32)
    b = np.full((1, 4), 3, dtype=np.int64)
    r = infer(server, "mixed", [tensor("a", a, "FP32"), tensor("b", b, "INT64")],
              outputs=[{"name": "twice"}])
    assert [o["name"] for o in r.json()["outputs"]] == ["twice"]
    assert r.json()["outputs"][0]["data"] == [6, 6, 6, 6]
    x = np.array([[-1, 2, -3], [4, -5, 6]], dtype=np.float32)
    r = infer(server, "fixed", [tensor("x", x, "FP32", nested=True)])
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == [0, 2, 0, 4, 0, 6]
    assert_error(infer(server, "fixed", [tensor("x", np.ones((1, 3), np.float32), "FP32")]),
                 400, "input 'x'", "[2,3]", "[1,3]")


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


def test_request_errors(server):
    x = np.ones((1, 64), dtype=np.float32)
    good = tensor("features", x, "FP32")
    assert_error(infer(server, "nope", [good]), 404, "nope")
    assert_error(infer(server, "mlp", [good], version="7"), 404)
    assert_error(infer(server, "mlp", [tensor("features", np.ones((1, 63), np.float32),
                                              "FP32")]), 400, "features", "shape", "[-1,64]")
    assert_error(infer(server, "mlp", [tensor("features", x.astype(np.float64), "FP64")]), 400,
                 "features", "expected datatype FP32, got FP64")
    assert_error(infer(server, "mlp", [tensor("other", x, "FP32")]), 400, "unknown input 'other'")
    assert_error(infer(server, "mlp", []), 400, "missing input 'features'")
    bad_count = dict(good, data=[1.0] * 10)
    assert_error(infer(server, "mlp", [bad_count]), 400, "features", "64")
    assert_error(infer(server, "mlp", [dict(good, datatype="BYTES", data=["a"] * 64)]), 400,
                 "BYTES")
    assert_error(infer(server, "mlp", [dict(good, shape=[65, 64], data=[0] * 65 * 64)]), 400,
                 "max_batch_size")
    assert_error(infer(server, "mlp", [good], outputs=[{"name": "nope"}]), 400, "unknown output")
    for body in (b"", b"{", b"not json", b'{"inputs": [}', b'{"inputs": []} trailing',
                 b'{"inputs": [{"name": "features", "shape": [1, 64], "datatype": "FP32", '
                 b'"data": [1, 2, NaN]}]}'):
        r = server.post("/v2/models/mlp/infer", data=body)
        assert r.status_code == 400, (body, r.text)
        assert "error" in r.json()
    # JSON that says more binary data follows than the body holds.
    body, hlen = binary_request([("features", x, "FP32", True)])
    r = server.post("/v2/models/mlp/infer", data=body[:-10],
                    headers={"Inference-Header-Content-Length": str(hlen)})
    assert_error(r, 400, "truncated")
    r = server.post("/v2/models/mlp/infer", data=body + b"xx",
                    headers={"Inference-Header-Content-Length": str(hlen)})
    assert_error(r, 400, "2 bytes")
    r = server.post("/v2/models/mlp/infer", data=body,
                    headers={"Inference-Header-Content-Length": str(len(body) + 1)})
    assert_error(r, 400, "Inference-Header-Content-Length")
    r = server.post("/v2/models/mlp/infer", data=body,
                    headers={"Inference-Header-Content-Length": "12abc"})
    assert_error(r, 400, "Inference-Header-Content-Length")
    # Wrong methods and paths.
    r = server.get("/v2/models/mlp/infer")
    assert_error(r, 405)
    assert "POST" in r.headers["Allow"]
    assert_error(server.post("/v2/health/live"), 405)
    assert_error(server.get("/v2/nothing/here"), 404)
    assert_error(server.get("/v3"), 404)
    # The server is still healthy.
    assert infer(server, "mlp", [good]).status_code == 200


def test_hostile_model_names(server, repo):
    """Names that try to leave the repository get 400 or 404, never a file."""
    paths = [
        "/v2/models/../../etc/passwd",
        "/v2/models/../../../../etc/passwd/infer",
        "/v2/models/%2e%2e/ready",
        "/v2/models/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/v2/models/..%2F..%2Fetc%2Fpasswd/config",
        "/v2/models/.hidden",
        "/v2/models/a%00b",
        "/v2/models/%2Fetc%2Fpasswd/ready",
        "/v2/models/" + "a" * 300,
        "/v2/models/mlp%2f..%2f..%2fmlp/ready",
        "/v2/models/mlp/versions/1%2f..%2f2/ready",
        "/v2/models/mlp\\..\\..\\etc/ready",
        "/v2/repository/models/..%2f..%2fetc/load",
    ]
    for p in paths:
        method = "POST" if p.endswith(("/infer", "/load")) else "GET"
        req = ("%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n" % (
            method, p)).encode()
        status, _, body = raw_http(server.port, req)
        assert status in (400, 404), (p, status, body[:200])
        assert b"root:" not in body
        assert "error" in json.loads(body)
    assert server.get("/v2/health/live").status_code == 200


def test_request_size_limits(start_server, repo):
    s = start_server(repo["path"], "--max-request-bytes", "4K")
    x = np.ones((64, 64), dtype=np.float32)  # 16 KiB binary, much more as JSON
    r = infer(s, "mlp", [tensor("features", x, "FP32")])
    assert_error(r, 413, "4096")
    body, hlen = binary_request([("features", x, "FP32", True)])
    r = s.post("/v2/models/mlp/infer", data=body,
               headers={"Inference-Header-Content-Length": str(hlen)})
    assert_error(r, 413)
    # A huge Content-Length is refused from the headers alone, before any body byte.
    req = (b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\n"
           b"Content-Length: 99999999999\r\n\r\n")
    status, _, body = raw_http(s.port, req)
    assert status == 413
    # Small requests still work.
    assert infer(s, "mlp", [tensor("features", x[:1], "FP32")]).status_code == 200


def test_chunked_body_over_the_limit_is_cut_off(start_server, repo):
    s = start_server(repo["path"], "--max-request-bytes", "4K")
    chunk = b"x" * 1000
    req = b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    req += b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(10)) + b"0\r\n\r\n"
    try:
        status, _, _ = raw_http(s.port, req)
    except (BrokenPipeError, ConnectionResetError):
        status = 0
    # No Content-Length to refuse early: the server stops reading and closes the connection.
    assert status in (0, 413)
    # A small chunked body is fine.
    body = json.dumps({"inputs": [tensor("features", np.ones((1, 64), np.float32), "FP32")]})
    data = body.encode()
    req = (b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
           b"Connection: close\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))
    status, _, body = raw_http(s.port, req)
    assert status == 200, body


def test_idle_connections_time_out(start_server, repo):
    s = start_server(repo["path"], "--connection-timeout-secs", "1")
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as c:
        c.sendall(b"GET /v2/health/live HTTP/1.1\r\nHo")  # headers never finished
        t0 = time.time()
        assert c.recv(100) == b""  # closed by the server
        assert time.time() - t0 < 8
    assert s.get("/v2/health/live").status_code == 200


def test_queue_full_gives_503_with_retry_after(start_server, repo):
    s = start_server(repo["path"])
    # 64 rows: about 1.6 G multiply-adds per request, long enough on any machine for the
    # requests sent together to find the one instance busy and its queue of 2 full.
    x = np.ones((64, models.SLOW_DIM), dtype=np.float32)
    body, hlen = binary_request([("x", x, "FP32", True)],
                                parameters={"binary_data_output": True})
    results = []

    def one():
        try:
            r = requests.post(s.url + "/v2/models/slow/infer", data=body, timeout=60,
                              headers={"Inference-Header-Content-Length": str(hlen)})
            results.append((r.status_code, r.headers.get("Retry-After")))
        except requests.RequestException as e:  # pragma: no cover - reported below
            results.append((0, str(e)))

    threads = [threading.Thread(target=one) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    codes = [c for c, _ in results]
    assert len(codes) == 12
    assert set(codes) <= {200, 503}, results
    assert codes.count(200) >= 1
    assert codes.count(503) >= 1, "queue capacity 2 with 1 instance must refuse some"
    assert all(ra == "1" for c, ra in results if c == 503)


def test_request_timeout_in_queue(start_server, repo):
    s = start_server(repo["path"])
    x = np.ones((16, models.SLOW_DIM), dtype=np.float32)
    body, hlen = binary_request([("x", x, "FP32", True)],
                                parameters={"binary_data_output": True})
    hdr = {"Inference-Header-Content-Length": str(hlen)}
    busy = threading.Thread(target=lambda: requests.post(s.url + "/v2/models/slow/infer",
                                                         data=body, headers=hdr, timeout=60))
    busy.start()
    time.sleep(0.05)
    small = np.ones((1, models.SLOW_DIM), dtype=np.float32)
    r = infer(s, "slow", [tensor("x", small, "FP32")], parameters={"timeout": 1000})
    busy.join(60)
    # Either it expired in the queue behind the busy one (503), or the instance was free.
    assert r.status_code in (200, 503), r.text
    if r.status_code == 503:
        assert "Retry-After" in r.headers


# ---------------------------------------------------------------------------------------------
# Repository API
# ---------------------------------------------------------------------------------------------


def test_repository_explicit_mode(start_server, repo):
    s = start_server(repo["path"], "--model-control-mode", "explicit", "--load-model", "mlp")
    index = s.post("/v2/repository/index").json()
    by_name = {row["name"]: row for row in index}
    assert by_name["mlp"]["state"] == "READY" and by_name["mlp"]["version"] == "1"
    assert by_name["mixed"]["state"] == "UNAVAILABLE"
    ready = s.post("/v2/repository/index", json={"ready": True}).json()
    assert [row["name"] for row in ready] == ["mlp"]
    assert s.get("/v2/models/mixed/ready").status_code in (400, 503)
    r = s.post("/v2/repository/models/mixed/load")
    assert r.status_code == 200, r.text
    assert s.get("/v2/models/mixed/ready").status_code == 200
    a = np.ones((1, 4), dtype=np.float32)
    b = np.ones((1, 4), dtype=np.int64)
    assert infer(s, "mixed", [tensor("a", a, "FP32"), tensor("b", b, "INT64")]).status_code == 200
    r = s.post("/v2/repository/models/mixed/unload")
    assert r.status_code == 200, r.text
    deadline = time.time() + 10
    while s.get("/v2/models/mixed/ready").status_code == 200 and time.time() < deadline:
        time.sleep(0.05)
    assert s.get("/v2/models/mixed/ready").status_code != 200
    r = infer(s, "mixed", [tensor("a", a, "FP32"), tensor("b", b, "INT64")])
    assert r.status_code in (400, 404, 503)
    assert_error(s.post("/v2/repository/models/nothere/load"), 404)
    assert_error(s.post("/v2/repository/models/mlp/load", json={"parameters": {"config": "{}"}}),
                 400, "not supported")
    assert_error(s.post("/v2/repository/index", data=b"[1"), 400)
    assert_error(s.get("/v2/repository/index"), 405)


def test_repository_load_refused_outside_explicit_mode(server):
    r = server.post("/v2/repository/models/mlp/load")
    assert r.status_code in (400, 501), r.text
    assert "error" in r.json()
    assert server.get("/v2/models/mlp/ready").status_code == 200


def test_reload_under_load_has_no_failures(start_server, copy_repo):
    repo_dir = copy_repo("versioned")
    s = start_server(repo_dir, "--model-control-mode", "poll", "--repository-poll-secs", "1")
    x = np.array([[1.0]], dtype=np.float32)
    body = json.dumps({"inputs": [tensor("x", x, "FP32")]})
    stop = threading.Event()
    results = {"ok": 0, "fail": [], "versions": set()}
    lock = threading.Lock()

    def hammer():
        sess = requests.Session()
        while not stop.is_set():
            try:
                r = sess.post(s.url + "/v2/models/versioned/infer", data=body, timeout=30)
                with lock:
                    if r.status_code == 200:
                        results["ok"] += 1
                        results["versions"].add(r.json()["model_version"])
                    else:
                        results["fail"].append((r.status_code, r.text[:200]))
            except requests.RequestException as e:
                with lock:
                    results["fail"].append((0, str(e)))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    # A new version appears (and the policy is widened to take it): the poller loads it.
    new = repo_dir / "versioned" / "4"
    tmp = repo_dir / "versioned" / ".4.tmp"
    shutil.copytree(str(repo_dir / "versioned" / "2"), str(tmp))
    os.rename(str(tmp), str(new))
    cfg = (repo_dir / "versioned" / "config.pbtxt")
    cfg.write_text(cfg.read_text().replace("versions: [ 1, 2 ]", "versions: [ 1, 2, 4 ]"))
    deadline = time.time() + 15
    while time.time() < deadline:
        with lock:
            if "4" in results["versions"]:
                break
        time.sleep(0.1)
    time.sleep(LOAD_SECONDS / 2)
    stop.set()
    for t in threads:
        t.join(30)
    assert not results["fail"], results["fail"][:5]
    assert results["ok"] > 20
    assert "4" in results["versions"], "the new version never took traffic: %s" % (
        sorted(results["versions"]))


# ---------------------------------------------------------------------------------------------
# Shutdown
# ---------------------------------------------------------------------------------------------


def test_sigterm_finishes_requests_in_flight(start_server, repo):
    s = start_server(repo["path"])
    # 32 rows: long enough (0.8 G multiply-adds) that the second request waits behind the first.
    x = np.ones((32, models.SLOW_DIM), dtype=np.float32)
    body, hlen = binary_request([("x", x, "FP32", True)],
                                parameters={"binary_data_output": True})
    results = []

    def one():
        try:
            r = requests.post(s.url + "/v2/models/slow/infer", data=body, timeout=120,
                              headers={"Inference-Header-Content-Length": str(hlen)})
            results.append(r.status_code)
        except requests.RequestException as e:
            results.append(str(e))

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    # Wait until both are in the runtime, then stop the server.
    deadline = time.time() + 10
    in_flight = 0
    while time.time() < deadline and in_flight < 2:
        m = s.get("/metrics").text
        got = re.search(r'ferry_inference_in_flight_requests\{model="slow",version="1"\} (\d+)', m)
        in_flight = int(got.group(1)) if got else 0
    assert in_flight == 2, "the requests never were in flight together"
    s.proc.send_signal(signal.SIGTERM)
    # No new connections once draining (the listening socket goes within moments).
    refused = False
    deadline = time.time() + 5
    while not refused and time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", s.port), timeout=2).close()
            time.sleep(0.01)
        except OSError:
            refused = True
    assert refused
    for t in threads:
        t.join(120)
    code = s.stop()
    assert results == [200, 200], results
    assert code == 0, s.text()[-2000:]
    events = [l.get("event") for l in s.lines()]
    assert "draining" in events and "stop" in events


def test_sigint_exits_zero(start_server, repo):
    s = start_server(repo["path"])
    assert s.get("/v2/health/live").status_code == 200
    assert s.stop(signal.SIGINT) == 0


# ---------------------------------------------------------------------------------------------
# Observability
# ---------------------------------------------------------------------------------------------


def parse_metrics(text):
    """{(name, frozenset(labels)): value} for every sample; checks the HELP/TYPE lines."""
    samples, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
            continue
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$', line)
        assert m, "bad metrics line %r" % line
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
        samples[(m.group(1), labels)] = float(m.group(4))
    for (name, _) in samples:
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in types or base in types, "no TYPE for %s" % name
    return samples, types


def test_metrics(start_server, repo):
    s = start_server(repo["path"])
    x = np.ones((2, 64), dtype=np.float32)
    for _ in range(5):
        assert infer(s, "mlp", [tensor("features", x, "FP32")]).status_code == 200
    assert infer(s, "mlp", [tensor("features", x[:, :3], "FP32")]).status_code == 400
    r = s.get("/metrics")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    samples, types = parse_metrics(r.text)
    lbl = {("model", "mlp"), ("version", "1")}

    def val(name, **extra):
        return samples[(name, frozenset(lbl | set(extra.items())))]

    assert val("ferry_inference_requests_total", outcome="success") == 5
    assert val("ferry_inference_requests_total", outcome="invalid") == 1
    assert val("ferry_inference_items_total") == 10
    assert 1 <= val("ferry_inference_executions_total") <= 5
    assert types["ferry_inference_request_duration_seconds"] == "histogram"
    assert val("ferry_inference_request_duration_seconds_count") == 5
    assert val("ferry_inference_request_duration_seconds_bucket", le="+Inf") == 5
    assert val("ferry_inference_queue_duration_seconds_count") == 5
    assert val("ferry_inference_compute_duration_seconds_count") >= 1
    assert val("ferry_inference_batch_size_sum") == 10
    assert val("ferry_inference_queue_depth") == 0
    assert val("ferry_inference_in_flight_requests") == 0
    assert val("ferry_model_load_duration_seconds") > 0
    assert val("ferry_model_state", state="READY") == 1
    assert samples[("ferry_http_requests_total", frozenset({("code", "200")}))] >= 5
    assert samples[("ferry_http_requests_total", frozenset({("code", "400")}))] >= 1
    for name, kind in types.items():
        assert name.startswith("ferry_"), name
        if kind == "counter":
            assert name.endswith("_total"), name


def test_access_log_and_traceparent(start_server, repo):
    s = start_server(repo["path"])
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    x = np.ones((1, 64), dtype=np.float32)
    r = s.post("/v2/models/mlp/infer", json={"id": "log-me", "inputs": [tensor("features", x,
                                                                               "FP32")]},
               headers={"traceparent": "00-%s-00f067aa0ba902b7-01" % trace})
    assert r.status_code == 200
    infer(s, "mlp", [tensor("features", x[:, :2], "FP32")])
    s.get("/v2/health/live", headers={"traceparent": "00-zz-bad"})
    deadline = time.time() + 5
    while time.time() < deadline and len(access_lines(s)) < 3:
        time.sleep(0.02)
    (line,) = access_lines(s, request_id="log-me")
    assert line["trace_id"] == trace and line["span_id"] == "00f067aa0ba902b7"
    assert line["method"] == "POST" and line["path"] == "/v2/models/mlp/infer"
    assert line["model"] == "mlp" and line["version"] == 1 and line["status"] == 200
    for key in ("total_ms", "queue_ms", "compute_ms"):
        assert isinstance(line[key], (int, float)) and line[key] >= 0
    assert line["bytes_in"] > 0 and line["bytes_out"] > 0
    assert line["ts"].endswith("Z") and line["level"] == "info"
    bad = [l for l in access_lines(s, status=400)]
    assert bad and bad[0]["model"] == "mlp"
    live = access_lines(s, path="/v2/health/live")
    assert live and "trace_id" not in live[0]
    start = [l for l in s.lines() if l.get("event") == "start"]
    assert start[0]["address"] == "127.0.0.1:%d" % s.port


def test_access_log_off(start_server, repo):
    s = start_server(repo["path"], "--access-log", "off")
    assert s.get("/v2/health/live").status_code == 200
    assert s.stop() == 0
    assert not access_lines(s)


def test_keep_alive(server):
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    socks = set()
    for path in ("/v2/health/live", "/v2/nothing", "/v2", "/v2/models/mlp"):
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        assert r.getheader("Connection") != "close", path
        socks.add(id(c.sock))
    assert len(socks) == 1
    c.close()


# ---------------------------------------------------------------------------------------------
# Command line and environment
# ---------------------------------------------------------------------------------------------


def test_environment_twins_and_flags_win(start_server, repo):
    s = start_server(None, env={"FERRY_MODEL_REPOSITORY": str(repo["path"]),
                                "FERRY_MAX_REQUEST_BYTES": "2K", "FERRY_HOST": "localhost"})
    x = np.ones((16, 64), dtype=np.float32)
    assert infer(s, "mlp", [tensor("features", x, "FP32")]).status_code == 413
    s2 = start_server(repo["path"], "--max-request-bytes", "1M", "--host", "127.0.0.1",
                      env={"FERRY_MAX_REQUEST_BYTES": "2K", "FERRY_HOST": "256.1.1.1"})
    assert infer(s2, "mlp", [tensor("features", x, "FP32")]).status_code == 200
    start = [l for l in s2.lines() if l.get("event") == "start"][0]
    assert start["address"].startswith("127.0.0.1:")


def test_usage_errors(tmp_path, repo):
    import subprocess
    from conftest import FERRY
    cases = [
        ([], "model-repository"),
        (["--model-repository", str(repo["path"]), "--bogus", "1"], "bogus"),
        (["--model-repository", str(repo["path"]), "--http-port", "70000"], "http-port"),
        (["--model-repository", str(repo["path"]), "--model-control-mode", "sometimes"],
         "model-control-mode"),
        (["--model-repository", str(repo["path"]), "--load-model", "mlp"], "explicit"),
        (["--model-repository", str(repo["path"]), "--max-request-bytes", "12Q"],
         "max-request-bytes"),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_") or k == "FERRY_BIN"}
    for args, needle in cases:
        r = subprocess.run([FERRY, "serve"] + args, capture_output=True, text=True, timeout=30,
                           env=env)
        assert r.returncode == 2, (args, r.returncode, r.stderr)
        assert needle in r.stderr, (args, r.stderr)
    r = subprocess.run([FERRY, "serve", "--model-repository", str(tmp_path / "missing"),
                        "--http-port", "0"], capture_output=True, text=True, timeout=30, env=env)
    assert r.returncode == 1 and "missing" in r.stderr
    r = subprocess.run([FERRY, "serve", "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "FERRY_MODEL_REPOSITORY" in r.stdout


def test_address_in_use(start_server, repo):
    import subprocess
    from conftest import FERRY
    s = start_server(repo["path"])
    r = subprocess.run([FERRY, "serve", "--model-repository", str(repo["path"]), "--http-port",
                        str(s.port)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "cannot listen" in r.stderr
