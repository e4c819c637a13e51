"""Leaving a gloo process group (rr_audiocraft/distrib.py): after an RR step with `rr.gather`, no gloo thread is left.

A gloo worker thread still alive when the interpreter finalises can abort the process at exit ("terminate called
without an active exception", exit 134) when it lets go of a collective's tensors late, which a loaded machine
makes likely: `make test-cluster` failed so. Whether it happens in a given run is a race, so this checks the
condition that rules it out, which is not: once the rank has left its group, the group is freed and its threads
are joined. Imports are inside the worker, as in test_reliability.py: the ranks are spawned processes, and
`rank_fixtures` imports the regularisation module only after the group exists (as a Slurm task does).
"""
import os
from pathlib import Path

import torch

GLOO_THREADS = ('pt_gloo_runloop', 'gloo_tcp_loop')  # the group's worker threads and its transport's event loop


def _thread_names() -> list:
    task_dir = Path('/proc/self/task')
    return [(task_dir / task / 'comm').read_text().strip() for task in os.listdir(task_dir)]


def _leaving_rank(rank: int, world_size: int, store: str, out_dir: str) -> None:
    import datetime
    import flashy
    from rank_fixtures import rr_term, toy_batch, toy_net
    from rr_audiocraft.distrib import leave_process_group
    torch.distributed.init_process_group('gloo', init_method=f'file://{store}', rank=rank, world_size=world_size,
                                         timeout=datetime.timedelta(seconds=60))
    net = toy_net()
    loss = rr_term(net, *[t.chunk(world_size)[rank] for t in toy_batch()], gather=True)
    loss.backward()
    flashy.distrib.sync_model(net)
    during = _thread_names()  # a worker thread names itself before it runs its first collective
    leave_process_group()  # raises if the group outlives destroy_process_group
    (Path(out_dir) / f'rank{rank}.txt').write_text(f"{' '.join(during)}\n{' '.join(_thread_names())}\n")


def test_a_rank_that_leaves_after_a_gathered_rr_step_has_no_gloo_thread_left(tmp_path):
    import torch.multiprocessing as mp
    world_size = 2
    mp.spawn(_leaving_rank, args=(world_size, str(tmp_path / 'store'), str(tmp_path)), nprocs=world_size, join=True)
    for rank in range(world_size):
        during, after = [line.split() for line in (tmp_path / f'rank{rank}.txt').read_text().splitlines()]
        print(f"rank {rank}: threads in the group {sorted(during)}, after leaving {sorted(after)}")
        assert set(GLOO_THREADS) <= set(during)  # the names looked for are the ones gloo gives its threads
        assert not [name for name in after if name in GLOO_THREADS]
