"""Why does a fast training step disagree with the eager one on a GPU?  Prints, for the
published-schedule IR²Net run's own state (its last checkpoint):

1. each fast form (CUDA graph, compiled, both) against the eager step, one step at a time from
   the same state (ir2net.steps.check_fast_step) at tolerances of 10 % and 1 %, with cuDNN's
   default kernels and with deterministic ones;
2. a single binary convolution, eager against ``torch.compile``: the latent weights' gradient,
   with the weight quantizer as shipped (plain tensor operations), as a custom
   autograd.Function (how it was written when the compiled step lost that gradient on an
   H100 and an H200 with torch 2.11), and with a plain differentiable function in its place.

Usage (repository root): python scripts/diagnose-fast-step.py [cuda|cpu]
"""
import sys
import time
from pathlib import Path

import torch

from ir2net import binarize
from ir2net.binarize import ApproxSign, BinaryConv2d, WeightSign
from ir2net.config import load_config
from ir2net.steps import build_step, check_fast_step, describe_step
from ir2net.training import build_model, build_optimizer, build_restriction

DEVICE = torch.device(sys.argv[1] if len(sys.argv) > 1 else "cuda")
RUN = Path("results/longruns/cifar10-resnet20_bireal-bin-cirec-lam0.15-s0")


def step_noise():
    config = load_config(str(RUN / "config.yaml"), ["train.channels_last=false"])
    torch.manual_seed(0)
    model = build_model(config, 10).to(DEVICE)
    optimizer = build_optimizer(model, config["train"])
    state = torch.load(RUN / "checkpoint" / "last.pt", map_location=DEVICE, weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    optimizer.param_groups[0]["lr"] = state["scheduler"]["_last_lr"][0]
    generator = torch.Generator(device=DEVICE).manual_seed(0)
    batch = (torch.randn(128, 3, 32, 32, device=DEVICE, generator=generator),
             torch.randint(0, 10, (128,), device=DEVICE, generator=generator))
    restriction = build_restriction(config)

    def make(graphs, compiled):
        return build_step(model, optimizer, restriction=restriction, cuda_graphs=graphs,
                          compile=compiled)

    forms = [(False, False), (True, False), (False, True), (True, True)]
    for deterministic in (False, True):
        torch.backends.cudnn.deterministic = deterministic
        torch.backends.cudnn.benchmark = False
        for graphs, compiled in forms:
            if DEVICE.type != "cuda" and graphs:
                continue
            started = time.perf_counter()
            step = make(graphs, compiled)
            try:
                found = {tolerance: check_fast_step(step, optimizer, batch, tolerance=tolerance)
                         for tolerance in (0.1, 0.01)}
            except Exception as error:  # report and go on: this is a diagnosis
                print(f"deterministic={deterministic} {describe_step(step)}: {error!r}")
                continue
            print(f"deterministic={deterministic} {describe_step(step)} "
                  f"({time.perf_counter() - started:.0f} s): within 10 %: {found[0.1] or 'yes'}; "
                  f"within 1 %: {found[0.01] or 'yes'}", flush=True)
            torch._dynamo.reset()


class FunctionSign(torch.autograd.Function):
    """The weight quantizer as shipped until 2026-11-26: a custom autograd.Function."""

    @staticmethod
    def forward(ctx, weight):
        ctx.save_for_backward(weight)
        return binarize.sign(weight)

    @staticmethod
    def backward(ctx, grad_output):
        (weight,) = ctx.saved_tensors
        return grad_output * (weight.abs() < 1).to(grad_output.dtype)


class FunctionWeightSign(torch.nn.Module):
    def forward(self, weight):
        return FunctionSign.apply(weight)


class Halved(torch.nn.Module):
    def forward(self, weight):
        return weight * 0.5


def one_conv():
    for name, quantizer, dtypes in (
            ("plain tensor operations (as shipped)", WeightSign(), (None, torch.bfloat16)),
            ("custom autograd.Function (shipped before)", FunctionWeightSign(), (None,)),
            ("no autograd.Function (weight * 0.5)", Halved(), (None,))):
        for dtype in dtypes:
            torch.manual_seed(0)
            conv = BinaryConv2d(16, 16, 3, padding=1, input_quantizer=ApproxSign(),
                                weight_quantizer=quantizer).to(DEVICE)
            binarize.set_binary_compute_dtype(conv, dtype)
            x = torch.randn(8, 16, 8, 8, device=DEVICE)
            grads = []
            for module in (conv, torch.compile(conv)):
                conv.weight.grad = None
                module(x).square().mean().backward()
                grads.append(conv.weight.grad.clone())
            print(f"one binary conv, {name}, binary dtype {dtype}: weight-gradient norm eager "
                  f"{grads[0].norm():.3e}, compiled {grads[1].norm():.3e}", flush=True)
            torch._dynamo.reset()


if __name__ == "__main__":
    print(f"torch {torch.__version__} on {DEVICE}", flush=True)
    one_conv()
    step_noise()
