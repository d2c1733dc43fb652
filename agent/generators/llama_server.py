"""Child process: llama.cpp's own HTTP server (prebuilt, from the `xllamacpp` wheel) for one GGUF.

Run by agent.generators.local_server as ``python llama_server.py --model F --port P ...``; it
listens on 127.0.0.1 only, serves the OpenAI-compatible ``/v1/chat/completions`` with llama.cpp's
GBNF ``grammar`` field, and applies the given GGUF LoRA adapters (the CE update's, converted by
agent.gguf_lora). It exits on SIGTERM/SIGINT, and on its parent's death (the parent sets
PR_SET_PDEATHSIG). Deliberately imports nothing from ensnas: it starts fast and stays small.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ctx", type=int, default=4096)
    ap.add_argument("--lora", action="append", default=[], help="GGUF LoRA adapter (applied at scale 1)")
    ap.add_argument("--chat-template-file", help="Jinja chat template for a GGUF that has none")
    args = ap.parse_args(argv)
    try:
        import xllamacpp as xlc
    except ImportError as exc:
        print(f"the llama.cpp server needs the xllamacpp package: {exc}", file=sys.stderr)
        return 3
    params = xlc.CommonParams()
    params.model.path = args.model
    params.n_ctx = args.ctx
    params.n_parallel = 1                 # one answer at a time: all of n_ctx for it, no slot contention
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.hostnames = ["127.0.0.1"]
    params.port = args.port
    if args.lora:
        params.lora_adapters = [xlc.CommonAdapterLoraInfo(path, 1.0) for path in args.lora]
    if args.chat_template_file:
        with open(args.chat_template_file) as f:
            params.chat_template = f.read()
        params.use_jinja = True
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = xlc.Server(params)   # loads the model, then listens (raises if it cannot)
    print(f"listening on {server.listening_address}", flush=True)
    while not stop.wait(1.0):
        pass
    # exit at once: the server's destructor waits for a request in flight, which on a busy CPU can
    # take minutes after the parent is gone; the kernel frees the model and closes the port
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
