"""`python -m rr_audiocraft.listen prepare|serve|tally`: see the package docstring and `--help`."""
import argparse
import json
import sys
import typing as tp
from pathlib import Path

from ..environment import configure
from .study import DEFAULT_QUESTION, GENERATED_DIR, Study, StudyError, read_prompts_file, prepare_study


def _named_paths(values: tp.List[str], option: str, parser: argparse.ArgumentParser) -> tp.Dict[str, str]:
    named: tp.Dict[str, str] = {}
    for value in values:
        name, sep, target = value.partition('=')
        if not sep or not name or not target:
            parser.error(f"{option} {value!r}: expected NAME=VALUE")
        if name in named:
            parser.error(f"{option}: system {name!r} given twice")
        named[name] = target
    return named


def check_models(models: tp.Dict[str, str]) -> None:
    """Every model name resolves to something loadable (nothing is loaded nor downloaded here)."""
    from ..models.loaders import DEBUG_NAME, ModelNotFoundError, resolve_checkpoint
    from ..models.musicgen import RRMusicGen
    for name, model in models.items():
        if model != DEBUG_NAME:
            try:
                resolve_checkpoint(model, RRMusicGen.ALIASES)
            except ModelNotFoundError as error:
                raise StudyError(f"system {name!r}: {error}") from None


def generate_systems(models: tp.Dict[str, str], prompts_file: Path, out: Path, duration: tp.Optional[float],
                     seed: int, cfg_coef: float) -> tp.Dict[str, Path]:
    """Every model renders every caption of `prompts_file` with `rr_audiocraft.generate` (same seed for all)
    into OUT/NAME; returns the folders."""
    from .. import generate
    captions = read_prompts_file(prompts_file)
    folders = {}
    for name, model in models.items():
        folder = out / name
        argv = [model, *captions, '--out', str(folder), '--seed', str(seed), '--cfg-coef', str(cfg_coef)]
        if duration is not None:
            argv += ['--duration', str(duration)]
        print(f"[listen] generating {len(captions)} clips with {name} = {model}", flush=True)
        if generate.main(argv) != 0:
            raise StudyError(f"system {name!r}: generating with {model!r} failed (see above)")
        folders[name] = folder
    return folders


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='python -m rr_audiocraft.listen', description=__doc__.split(':')[1].strip())
    commands = parser.add_subparsers(dest='command', required=True)

    prepare = commands.add_parser('prepare', help="build a study from systems' clips (or generate them first)",
                                  formatter_class=argparse.RawDescriptionHelpFormatter,
                                  epilog="examples:\n"
                                         "  python -m rr_audiocraft.listen prepare --system baseline=gen/base "
                                         "--system rr=gen/rr --out study\n"
                                         "  python -m rr_audiocraft.listen prepare --from-models base=//sig/SIG1 "
                                         "rr=//sig/SIG2 --prompts prompts.txt --out study")
    prepare.add_argument('--system', action='append', default=[], metavar='NAME=DIR',
                         help="a system's folder of clips (wav/flac/ogg), matched across systems by file name; "
                              "twice or more")
    prepare.add_argument('--from-models', nargs='+', default=[], metavar='NAME=MODEL',
                         help="generate the clips first, one folder per model, with `rr_audiocraft.generate` (MODEL: "
                              "anything get_pretrained loads: //sig/SIG, an exported folder, debug, a hub id); needs "
                              "--prompts")
    prepare.add_argument('--prompts', type=Path, default=None, metavar='FILE',
                         help="one caption per line: what --from-models generates; with --system, line i captions "
                              "the clip `rr_audiocraft.generate` names after it (03_a_dog_barks) or the clip named i "
                              "(003). Otherwise captions come from each folder's generations.json or <clip>.json "
                              "sidecars")
    prepare.add_argument('--out', type=Path, required=True, help="the study folder to create")
    prepare.add_argument('--num-prompts', type=int, default=None, metavar='N',
                         help="use N prompts drawn at random (default: all)")
    prepare.add_argument('--catch', type=int, default=2, metavar='N',
                         help="catch trials: one clip of the prompt against a clip of another prompt (default 2)")
    prepare.add_argument('--ties', action='store_true', help="offer 'no preference' (the paper did not)")
    prepare.add_argument('--seed', type=int, default=0, help="seeds the draws and every rater's order (default 0)")
    prepare.add_argument('--question', default=DEFAULT_QUESTION,
                         help=f"asked on every trial (default: {DEFAULT_QUESTION!r})")
    prepare.add_argument('--duration', type=float, default=None, help="with --from-models: seconds per clip")
    prepare.add_argument('--cfg-coef', type=float, default=3.0, help="with --from-models: CFG strength (default 3)")

    serve = commands.add_parser('serve', help="serve a study to raters (a local web page)")
    serve.add_argument('study', type=Path)
    serve.add_argument('--host', default='127.0.0.1', help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument('--port', type=int, default=8000)
    serve.add_argument('--access-code', default=None, help="raters must enter it before anything is served")

    tally = commands.add_parser('tally', help="statistics of the answers; writes STUDY/results/")
    tally.add_argument('study', type=Path)
    tally.add_argument('--json', action='store_true', help="print JSON instead of the markdown report")
    tally.add_argument('--max-catch-misses', type=int, default=0,
                       help="a rater missing more catch trials than this is left out of the second tally (default 0)")
    tally.add_argument('--bootstrap', type=int, default=2000, help="bootstrap resamples (default 2000)")
    return parser


def main(argv: tp.Optional[tp.List[str]] = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    configure()
    try:
        if args.command == 'prepare':
            if bool(args.system) == bool(args.from_models):
                parser.error("give either --system NAME=DIR (twice or more) or --from-models NAME=MODEL ...")
            if args.from_models:
                if args.prompts is None:
                    parser.error("--from-models needs --prompts FILE (one caption per line)")
                models = _named_paths(args.from_models, '--from-models', parser)
                if len(models) < 2:
                    raise StudyError(f"a study compares at least 2 systems, got {len(models)}")
                read_prompts_file(args.prompts)  # a bad prompts file or model name stops us before any generation
                check_models(models)
                if args.out.exists() and any(args.out.iterdir()):
                    raise StudyError(f"{args.out}: exists and is not empty; choose another --out")
                systems = generate_systems(models, args.prompts, args.out / GENERATED_DIR, args.duration, args.seed,
                                           args.cfg_coef)
            else:
                systems = _named_paths(args.system, '--system', parser)
            study = prepare_study(systems, args.out, prompts_file=args.prompts, num_prompts=args.num_prompts,
                                  catch_trials=args.catch, ties=args.ties, seed=args.seed, question=args.question)
            made = Study(study)
            print(f"[listen] study {study}: {len(made.systems)} systems, {len(made.captions)} prompts, "
                  f"{len(made.trials)} trials per rater; serve it with `python -m rr_audiocraft.listen serve {study}`")
        elif args.command == 'serve':
            from .app import serve
            serve(args.study, args.host, args.port, args.access_code)
        else:
            from .tally import format_tally, results_dir, tally, write_results
            result = tally(args.study, max_catch_misses=args.max_catch_misses, bootstrap=args.bootstrap)
            paths = write_results(result, results_dir(args.study))
            print(json.dumps({k: v for k, v in result.items() if k != 'answers'}, indent=1, ensure_ascii=False)
                  if args.json else format_tally(result))
            print(f"[listen] written: {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    except StudyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
