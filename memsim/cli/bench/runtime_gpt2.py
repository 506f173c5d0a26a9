"""GPT-2 small (12 layers, 768 wide), batch 1 x 256 tokens, SGD: measured step peak under none,
bitmap+mask+indices and recompute (profiler allocator events) beside the simulator's prediction.

Run: ``python -m memsim.cli.bench.runtime_gpt2`` (a few minutes on 2 cores; not part of the tests).
"""
import torch

import memsim
import models_zoo
from memsim.measure.profiler import measure_step_peak


def main() -> None:
    torch.manual_seed(0)
    model = models_zoo.create("gpt2")
    x = models_zoo.spec("gpt2").example_inputs(1, seq_len=256, seed=0)
    tr = memsim.trace(model, x, optimizer="sgd")
    sp = memsim.measure_sparsity(model, x)
    base = None
    for p in ["none", "bitmap+mask+indices", "recompute"]:
        ctx = None if p == "none" else (lambda p=p: memsim.compressed_activations(policy=p))
        m = measure_step_peak(model, x, optimizer="sgd", context=ctx)
        pred = memsim.simulate(tr, device=None, policy=p, sparsity=sp, max_batch=False).results[p].peak_bytes
        base = base or (m.peak_bytes, pred)
        print(f"gpt2 1x256 {p:22s} measured {m.peak_bytes/2**20:8.1f} MiB ({m.peak_bytes/base[0]-1:+.1%})  "
              f"predicted {pred/2**20:8.1f} MiB ({pred/base[1]-1:+.1%})", flush=True)


if __name__ == "__main__":
    main()
