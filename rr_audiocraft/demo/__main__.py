"""`python -m rr_audiocraft.demo`: the command line of `make demo` and `make reproduce` (see the package docstring)."""
from .. import configured  # noqa: F401  (first: the process set-up AudioCraft needs at import)
import argparse
import sys
import typing as tp
from pathlib import Path

from ..assets import asset_dir
from ..table1 import TABLE1, parse_rows
from .pipeline import combine, run
from .presets import DEVICES, PRESETS, DemoSettings, default_data, preset_for, resolve_device
from .progress import log

# Options that make a run other than the preset's own: its results page is then written only where --results-md says.
OWN_RUN_OPTIONS = ('out', 'rows', 'full', 'data', 'clips', 'seeds', 'cache_epochs', 'lm', 'solver')


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='python -m rr_audiocraft.demo',
                                     description="A miniature Table 1 of arXiv 2309.08773, offline, on a 2-core CPU.")
    parser.add_argument('--preset', choices=sorted(PRESETS), default='demo',
                        help="demo: λ=0 vs λ=3, 3 seeds, 600 clips, ~6 min (make demo); reproduce: the nine "
                             "Table 1 rows, 3 seeds, 2000 clips (200 test captions), ~1.7 h (make reproduce). The "
                             "options below override the preset's values")
    parser.add_argument('--full', action='store_true', default=None,
                        help="all nine Table 1 rows instead of the preset's")
    parser.add_argument('--rows', default=None,
                        help="the rows to train instead, comma-separated POOL/CFG/λ with the baseline among them, "
                             "e.g. none/0.1/0,max/0.1/3,average/0.1/3 (POOL none: no RR)")
    parser.add_argument('--data', type=Path, default=None,
                        help="benchmark folder (default: data/synth for the 600 clips of seed 0, else "
                             "data/synth-seed<S>[-<N>clips])")
    parser.add_argument('--out', type=Path, default=None, help="results folder (default: the preset's, demo_out or "
                                                                "reproduce_out)")
    parser.add_argument('--data-seed', type=int, default=0, help="seed of the benchmark (default 0)")
    parser.add_argument('--clips', type=int, default=None,
                        help="clips in the benchmark, train/valid/test 80/10/10 (default: the preset's)")
    parser.add_argument('--codec', type=Path, default=asset_dir(),
                        help="codec asset folder (default: the shipped assets/encodec_synth_8khz; `make codec` "
                             "rebuilds it)")
    parser.add_argument('--until', choices=['ceiling', 'all'], default='all',
                        help="ceiling: stop after the scale (judge on references, ceiling, floor)")
    parser.add_argument('--seeds', default=None, help="training seeds, comma-separated (default: the preset's)")
    parser.add_argument('--cache-epochs', type=int, default=None,
                        help="epochs of batches in the token cache, cycled by the LMs (default: the preset's)")
    parser.add_argument('--jobs', type=int, default=None,
                        help="LM XPs trained at once, each with cpu_count // jobs torch threads (default: the "
                             "preset's, 2; on a GPU they share it)")
    parser.add_argument('--device', default='auto', choices=DEVICES,
                        help="where the LMs train and generate: auto (default) is CUDA when torch sees a GPU, else the "
                             "CPU; on CUDA the reproduce preset is scaled up (solver=rr_audiogen/reproduce_gpu)")
    parser.add_argument('--ship-judge', action='store_true',
                        help="copy the fitted judge into assets/judge_synth (default benchmark) or "
                             "assets/judge_synth-seed<S>-<N>clips with its asset.json (`make judge`)")
    parser.add_argument('--results-md', type=Path, default=None,
                        help="also write the table as a Markdown page (default: the preset's, results/<preset>.md, "
                             "only when run with the preset's own rows, data, LMs and --out)")
    parser.add_argument('--combine', nargs='+', type=Path, default=None, metavar='RESULTS_DIR',
                        help="pool finished runs of the same rows on different benchmarks (e.g. --data-seed 0, 1, 2) "
                             "into one table with paired statistics over all their captions; writes "
                             "combined.json and combined.md into --out (default: the first folder); trains nothing")
    parser.add_argument('--solver', default=None,
                        help="the LMs' solver config (default: the preset's, e.g. rr_audiogen/demo)")
    parser.add_argument('--lm', nargs='*', default=None,
                        help="more overrides of each LM XP, after its solver config (e.g. optim.epochs=2)")
    return parser


def settings_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace,
                       argv: tp.Sequence[str]) -> DemoSettings:
    """The run's settings: the preset on the resolved device, each option given replacing its value. A bad
    option stops here (`parser.error`), before anything is read or written."""
    try:
        device = resolve_device(args.device)
    except ValueError as error:
        parser.error(f"--device {args.device}: {error}")
    preset = preset_for(args.preset, device)
    rows = preset.rows
    if args.rows is not None:
        try:
            rows = tuple(parse_rows(args.rows))
        except ValueError as error:
            parser.error(f"--rows: {error}")
    elif args.full:
        rows = TABLE1
    seeds = preset.seeds
    if args.seeds is not None:
        try:
            seeds = tuple(int(seed) for seed in args.seeds.split(',') if seed.strip())
        except ValueError:
            parser.error(f"--seeds {args.seeds}: expected comma-separated integers, e.g. 0,1,2")
    if len(seeds) < 2:
        parser.error("--seeds: give at least 2 seeds for a confidence interval")
    clips = preset.clips if args.clips is None else args.clips
    if clips < 50:
        parser.error("--clips: at least 50 clips (the judge and the test split need them)")
    # The preset's page holds the preset's own run: one with other rows, data or LMs writes its table only where
    # --results-md says, never over that page.
    own_run = args.data_seed == 0 and args.codec == asset_dir() and all(
        getattr(args, key) is None for key in OWN_RUN_OPTIONS)
    page = args.results_md
    if page is None and own_run:
        page = preset.page
    elif page is None:
        log('results', f"not writing {preset.page}: it holds the preset's own run (give --results-md for a page)")
    return DemoSettings(
        solver=args.solver or preset.solver, rows=tuple(rows), seeds=seeds,
        cache_epochs=preset.cache_epochs if args.cache_epochs is None else args.cache_epochs,
        jobs=preset.jobs if args.jobs is None else args.jobs, lm_overrides=tuple(args.lm or ()),
        data_seed=args.data_seed, clips=clips, data=args.data or default_data(args.data_seed, clips),
        out=args.out or preset.out, codec=args.codec, device=device, until=args.until, page=page,
        ship_judge=args.ship_judge, command=('python -m rr_audiocraft.demo ' + ' '.join(argv)).strip())


def main(argv: tp.Optional[tp.Sequence[str]] = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = get_parser()
    args = parser.parse_args(argv)
    if args.combine is not None:
        try:
            combine(args.combine, (args.out or args.combine[0]).resolve())
        except ValueError as error:
            raise SystemExit(f"error: --combine: {error}") from None
        return
    run(settings_from_args(parser, args, argv))


if __name__ == '__main__':
    main()
