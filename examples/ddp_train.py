"""Train gpu_bptt.torch.RNN data-parallel with DistributedDataParallel (or FSDP2 with --fsdp).

    torchrun --standalone --nproc_per_node=2 examples/ddp_train.py           # CPU: gloo
    torchrun --standalone --nproc_per_node=8 examples/ddp_train.py           # 8 GPUs: nccl
    torchrun --standalone --nproc_per_node=2 examples/ddp_train.py --check   # verify, in float64
    torchrun --standalone --nproc_per_node=2 examples/ddp_train.py --fsdp --check

Each process draws its own batches of the task "predict the mean of a noisy sequence of variable
length" (a PackedSequence with unsorted lengths). With --check, every step compares DDP's gradients
with the mean over ranks of each rank's own gradient, and after each optimizer step that the
parameters are bit-identical on all ranks; it exits non-zero on a mismatch. With --fsdp the
recurrent layer and the whole model are sharded with FSDP2 (fully_shard): parameters are gathered
for forward, freed after it, and gathered again for backward.
"""
import argparse
import copy
import gc
import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.nn.utils.rnn import pack_padded_sequence

import gpu_bptt.torch as gt


class Regressor(torch.nn.Module):
    def __init__(self, hidden, layers, dtype):
        super().__init__()
        self.rnn = gt.RNN(1, hidden, num_layers=layers, dtype=dtype)
        self.head = torch.nn.Linear(hidden, 1, dtype=dtype)

    def forward(self, packed):
        _, h_n = self.rnn(packed)
        return self.head(h_n[-1]).squeeze(-1)


def batch(gen, T, B, dtype, device):
    lengths = torch.randint(1, T + 1, (B,), generator=gen)
    x = torch.rand(T, B, 1, generator=gen, dtype=dtype)
    steps = torch.arange(T)[:, None] < lengths[None, :]
    target = (x[..., 0] * steps).sum(0) / lengths
    packed = pack_padded_sequence(x.to(device), lengths, enforce_sorted=False)
    return packed, target.to(device)


def mean_over_ranks(t):
    t = t.clone()
    dist.all_reduce(t)
    return t / dist.get_world_size()


def full(t):
    """The whole tensor: FSDP2 parameters and gradients are sharded DTensors."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def check_step(model, reference, packed, target):
    """The gradients equal the mean of each rank's local gradient (reference: an unwrapped copy)."""
    with torch.no_grad():
        for p, q in zip(model.parameters(), reference.parameters()):
            q.copy_(full(p))
    reference.zero_grad()
    torch.nn.functional.mse_loss(reference(packed), target).backward()
    worst = 0.0
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        err = (full(p.grad) - mean_over_ranks(q.grad)).abs().max().item()
        worst = max(worst, err)
        if err > 1e-12:
            raise SystemExit(f"rank {dist.get_rank()}: {name}.grad differs from the mean over ranks by {err:.3e}")
    return worst


def check_identical(model):
    flat = torch.cat([full(p.detach()).reshape(-1) for p in model.parameters()])
    gathered = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    for r, other in enumerate(gathered):
        if not torch.equal(other, flat):
            raise SystemExit(f"rank {dist.get_rank()}: parameters differ from rank {r}'s")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--T", type=int, default=20)
    ap.add_argument("--batch", type=int, default=32, help="per process")
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--check", action="store_true", help="verify gradients and parameters, in float64")
    ap.add_argument("--fsdp", action="store_true", help="shard with FSDP2 instead of DDP")
    args = ap.parse_args()

    use_cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if use_cuda else "gloo")
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    train(args, device)
    # Drop the wrapped model (and its reducer) before the process group, then leave together:
    # gloo ranks tearing down in another order were seen aborting at exit.
    gc.collect()
    dist.barrier()
    dist.destroy_process_group()


def train(args, device):
    rank, world = dist.get_rank(), dist.get_world_size()
    dtype = torch.float64 if args.check else torch.float32

    torch.manual_seed(1234 + rank)  # different initial weights per rank: DDP broadcasts rank 0's
    model = Regressor(args.hidden, args.layers, dtype).to(device)
    reference = copy.deepcopy(model) if args.check else None
    if args.fsdp:
        from torch.distributed.fsdp import fully_shard

        for p in model.parameters():  # FSDP2 shards rank-local weights as they are: start equal
            dist.broadcast(p.data, 0)
        fully_shard(model.rnn)  # its own unit: freed after forward, gathered again for backward
        fully_shard(model)
    else:
        model = DDP(model)
    check_identical(model)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    gen = torch.Generator().manual_seed(rank)  # each rank its own data
    worst = 0.0
    for step in range(args.steps):
        packed, target = batch(gen, args.T, args.batch, dtype, device)
        loss = torch.nn.functional.mse_loss(model(packed), target)
        opt.zero_grad()
        loss.backward()
        if args.check:
            worst = max(worst, check_step(model, reference, packed, target))
        opt.step()
        if args.check:
            check_identical(model)
        if rank == 0 and (step % 50 == 0 or step == args.steps - 1):
            print(f"step {step:4d}  loss {mean_over_ranks(loss.detach()).item():.5f}", flush=True)
        elif step % 50 == 0 or step == args.steps - 1:
            mean_over_ranks(loss.detach())  # every rank joins the collective
    if args.check and rank == 0:
        print(f"check passed: {world} ranks, {args.steps} steps, gradients within {worst:.1e} of "
              "the mean over ranks, parameters identical", flush=True)


if __name__ == "__main__":
    main()
