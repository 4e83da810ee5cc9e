"""LLM ranking throughput, two parts:

1. ``--part hf``: instances/s of a tiny random-init Qwen2 model on CPU through the `hf:` ranker,
   with the STAR ranker on the same instances as the in-run reference.
2. ``--part server``: `eval --model openai:...` against a local OpenAI-compatible server on
   127.0.0.1 that answers every request after a fixed latency (200 ms), sequentially
   (``-o concurrency=1``) and with the default options, in the same run; each pass is bounded and
   the server stops with the process.

    python benchmarks/bench_llm.py [--part hf|server|both] [--data DIR] [--n 32] [--batch-size 8]
                                   [--server-n 300] [--latency 0.2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from _util import save


def _server(latency: float):
    """A local chat-completions endpoint that answers the reversed candidate list after ``latency`` s."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        calls = 0

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            type(self).calls += 1
            time.sleep(latency)
            k = body["messages"][-1]["content"].count("\n[C")
            answer = "<answer>" + ", ".join(f"C{i}" for i in range(k, 0, -1)) + "</answer>"
            out = json.dumps({"model": body["model"], "choices": [{"message": {"content": answer}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, Handler


def server_part(a) -> None:
    from flexrec_bench.building.config import BuildConfig
    from flexrec_bench.building.build import build
    from flexrec_bench.scoring.eval_config import EvalConfig
    from flexrec_bench.scoring.evaluator import run_eval

    tmp = tempfile.mkdtemp()
    data = a.data or os.path.join(tmp, "data")
    if a.data is None:
        build(BuildConfig(out=data, train_size=100, test_size=a.server_n, val_size=10), progress=False)
    srv, handler = _server(a.latency)
    url = f"http://127.0.0.1:{srv.server_address[1]}/v1"
    times = {}
    for name, extra in (("sequential", {"concurrency": "1"}), ("default", {})):
        opts = {"base_url": url, "api_key": "sk-bench", "cache_dir": os.path.join(tmp, f"cache-{name}"), **extra}
        before = handler.calls
        t0 = time.perf_counter()
        run_eval(EvalConfig(model="openai:bench", data=data, out=os.path.join(tmp, "res"), limit=a.server_n,
                            options=opts, bootstrap=0), progress=False)
        times[name] = time.perf_counter() - t0
        sent = handler.calls - before
        t0 = time.perf_counter()
        run_eval(EvalConfig(model="openai:bench", data=data, out=os.path.join(tmp, "res"), limit=a.server_n,
                            options=opts, bootstrap=0), progress=False)
        rerun, resent = time.perf_counter() - t0, handler.calls - before - sent
        print(f"{name:10s}: {a.server_n} instances in {times[name]:6.1f} s ({sent} requests); "
              f"rerun {rerun:.1f} s ({resent} requests)")
    srv.shutdown()
    print(f"default / sequential time ratio: {times['default'] / times['sequential']:.3f} "
          f"({a.latency * 1000:.0f} ms latency)")
    save("openai_concurrency", {"n": a.server_n, "latency_s": a.latency,
                                "sequential_s": round(times["sequential"], 2), "default_s": round(times["default"], 2),
                                "ratio": round(times["default"] / times["sequential"], 4)})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=("hf", "server", "both"), default="both")
    ap.add_argument("--data", default=None, help="a build-data output root (default: build ml-100k in a temp dir)")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--server-n", type=int, default=300)
    ap.add_argument("--latency", type=float, default=0.2)
    a = ap.parse_args()
    if a.part in ("server", "both"):
        server_part(a)
    if a.part == "server":
        return
    import torch

    from flexrec_bench.building.config import BuildConfig
    from flexrec_bench.building.build import build
    from flexrec_bench.building.splits import load_split
    from flexrec_bench.ranking.rankers import make_ranker
    from flexrec_bench.ranking.tiny import build_tiny_model

    tmp = tempfile.mkdtemp()
    data = a.data
    if data is None:
        data = os.path.join(tmp, "data")
        build(BuildConfig(out=data, train_size=100, test_size=a.n, val_size=10), progress=False)
    split = load_split(data, "ml-100k", "interest").head(a.n)
    model = build_tiny_model(os.path.join(tmp, "tiny"))
    ranker = make_ranker(f"hf:{model}", batch_size=a.batch_size, progress=False, max_new_tokens=5 * 30 + 32)
    ranker.rank(split.head(a.batch_size))  # warm-up (load, first forward)
    t0 = time.perf_counter()
    ranker.rank(split)
    llm = time.perf_counter() - t0
    t0 = time.perf_counter()
    make_ranker("star").rank(split)
    star = time.perf_counter() - t0
    print(f"hf tiny (2 layers, hidden 64, {torch.get_num_threads()} threads): {a.n / llm:.1f} instances/s "
          f"(batch {a.batch_size}, {5 * 30 + 32} new tokens)")
    print(f"star on the same instances: {a.n / star:.0f} instances/s -> LLM/STAR time ratio {llm / star:.0f}x")
    save("llm_throughput", {"n": a.n, "batch_size": a.batch_size, "hf_instances_per_s": round(a.n / llm, 2),
                            "star_instances_per_s": round(a.n / star, 1), "ratio": round(llm / star, 1)})


if __name__ == "__main__":
    main()
