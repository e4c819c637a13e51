"""One Slurm task of the `rr.gather` check: `srun python tests_cluster/rr_gather_ranks.py OUT_DIR` in a job of 2 tasks.

Each task finds its rank the way the solvers do under Dora (`dora.distrib.get_distrib_spec`: Slurm's task
variables, through submitit), joins a gloo group, computes L_rr on its half of the toy batch with
`rr.gather=true` and the solver's gradient averaging (`flashy.distrib.sync_model`), and saves the loss and
gradients for `test_slurm.py` to compare with one process on the whole batch.
"""
import datetime
import os
import sys
from pathlib import Path

import torch

from rr_audiocraft.distrib import leaves_process_group

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'tests'))


@leaves_process_group  # as the training entry point: gloo's threads joined before the interpreter exits
def main(out_dir: Path) -> None:
    import flashy
    from dora.distrib import get_distrib_spec
    from rank_fixtures import rr_term, toy_batch, toy_net
    spec = get_distrib_spec()
    if spec.source != 'submitit' or spec.world_size != 2:
        raise SystemExit(f"expected 2 Slurm tasks, got world size {spec.world_size} from {spec.source!r}")
    port = 20000 + int(os.environ['SLURM_JOB_ID']) % 20000  # one rendezvous per job
    torch.distributed.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=spec.rank,
                                         world_size=spec.world_size, timeout=datetime.timedelta(seconds=60))
    inputs = [t.chunk(spec.world_size)[spec.rank] for t in toy_batch()]
    net = toy_net()
    loss = rr_term(net, *inputs, gather=True)
    loss.backward()
    flashy.distrib.sync_model(net)
    torch.save({'rank': spec.rank, 'job': os.environ['SLURM_JOB_ID'], 'loss': loss.detach(),
                'grads': [p.grad for p in net.parameters()]}, out_dir / f'rank{spec.rank}.pt')


if __name__ == '__main__':
    main(Path(sys.argv[1]))
