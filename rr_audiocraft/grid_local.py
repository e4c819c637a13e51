"""Run a Dora grid on this machine, without Slurm: `python -m rr_audiocraft.grid_local NAME`.

`dora grid NAME` only submits to Slurm. This runner:

1. registers the grid's XPs exactly as `dora grid NAME --dry_run --init` does (Dora's `run_grid`
   API: the same signatures, XP folders with their argv, nothing submitted);
2. runs the unfinished ones in the grid's order, one after the other (`--jobs N`: N at once), each as
   `dora -P rr_audiocraft run -f SIG` in a child process (output in `<xp folder>/grid_local.log`);
   an XP is finished when its history holds `optim.epochs` epochs;
3. prints the grid's explorer table, with the local state of each XP (done / fail / part / todo).

Interruption is safe: Ctrl-C or SIGTERM stops the running XP (its whole process group) and exits;
a rerun skips finished XPs and resumes the interrupted one from its last checkpoint (AudioCraft
solvers checkpoint every epoch and restore on start). An XP that fails is recorded as failed, the
others still run, and the exit status is 1; a rerun tries it again. A lock file keeps two runners
from working on the same grid at once.

Examples::

    python -m rr_audiocraft.grid_local rr_ablation_tiny            # the CPU grid (make grid-local)
    python -m rr_audiocraft.grid_local rr_ablation_tiny --show     # table only
    python -m rr_audiocraft.grid_local rr_ablation 'λ=3'           # patterns filter XPs by name, as dora grid
"""
import argparse
import concurrent.futures
import contextlib
import fcntl
import importlib
import os
import signal
import subprocess
import sys
import threading
import time
import typing as tp
from pathlib import Path

from .environment import configure

LOG_NAME = 'grid_local.log'
FAILED_MARK = 'grid_local.failed'
STOP_GRACE_S = 30.


class Interrupted(Exception):
    """SIGINT / SIGTERM reached the runner."""
    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def load_explorer(main: tp.Any, name: str) -> tp.Any:
    """The `explorer` of grid `NAME` in the entry point's grid package (`dora_grids`)."""
    from dora import Explorer
    package = main.dora.grid_package
    try:
        module = importlib.import_module(f'{package}.{name}')
    except ModuleNotFoundError as exc:
        if exc.name not in (f'{package}.{name}', package):
            raise
        root = Path(importlib.import_module(package).__file__).parent
        grids = sorted(p.stem for p in root.glob('*.py') if not p.name.startswith('_'))
        raise SystemExit(f"grid_local: no grid {name!r} in {package}; grids: {', '.join(grids)}") from None
    explorer = getattr(module, 'explorer', None)
    if not isinstance(explorer, Explorer):
        raise SystemExit(f"grid_local: {package}.{name} has no `explorer` (a dora.Explorer)")
    return explorer


def register(main: tp.Any, explorer: tp.Any, name: str, patterns: tp.Sequence[str] = ()) -> tp.List[tp.Any]:
    """Build the grid's XPs as `dora grid NAME --dry_run --init` does; returns Dora sheeps in grid order."""
    from dora.grid import RunGridArgs, run_grid
    args = RunGridArgs(patterns=list(patterns), dry_run=True, init=True, silent=True, monitor=False)
    with contextlib.redirect_stdout(sys.stderr):  # Dora's grid log lines are not the runner's output
        return run_grid(main, explorer, name, args=args)


def epochs_done(main: tp.Any, sheep: tp.Any) -> int:
    return len(main.get_xp_history(sheep.xp))


def xp_finished(main: tp.Any, xp: tp.Any) -> bool:
    """Whether the XP's Dora history holds all its `optim.epochs` epochs."""
    return len(main.get_xp_history(xp)) >= xp.cfg.optim.epochs


def xp_state(main: tp.Any, sheep: tp.Any) -> str:
    """done (all epochs in history), fail (last local run failed), part (some epochs), todo."""
    done = epochs_done(main, sheep)
    if done >= sheep.xp.cfg.optim.epochs:
        return 'done'
    if (sheep.xp.folder / FAILED_MARK).exists():
        return 'fail'
    return 'part' if done else 'todo'


def format_table(main: tp.Any, explorer: tp.Any, sheeps: tp.Sequence[tp.Any], colors: bool = False) -> str:
    """The explorer's table (as `dora grid` prints it), with the local state of each XP."""
    import treetable as tt
    names, base_name = main.get_names([sheep.xp for sheep in sheeps])
    lines = []
    for index, (sheep, name) in enumerate(zip(sheeps, names, strict=True)):
        history = main.get_xp_history(sheep.xp)
        line: tp.Dict[str, tp.Any] = {'Meta': {'index': index, 'name': name, 'state': xp_state(main, sheep),
                                               'sig': sheep.xp.sig, 'sid': ''}}
        try:
            line.update(explorer.process_sheep(sheep, history))
        except NotImplementedError:
            line.update(explorer.process_history(history))
        lines.append(line)
    table = tt.table(shorten=False, groups=[tt.group('Meta', explorer.get_grid_meta())] +
                     explorer.get_grid_metrics())
    out = tt.treetable(lines, table, colors=explorer.get_colors() if colors else None)
    shows_names = any(getattr(leaf, 'key', None) == 'name' for leaf in explorer.get_grid_meta())
    return (f"Base name: {base_name}\n" if base_name and shows_names else '') + out


def _stop(child: subprocess.Popen) -> None:
    """Terminate the child XP and everything it started (its own process group), then reap it.

    A second Ctrl-C while this runs is ignored, so that it cannot leave the child behind.
    """
    previous = {}
    with contextlib.suppress(ValueError):  # signal handlers can only be changed from the main thread
        previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for sig, wait in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, 10.)):
            try:
                os.killpg(child.pid, sig)
            except ProcessLookupError:
                break
            try:
                child.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_xp(main: tp.Any, sheep: tp.Any, verbose: bool = False, threads: tp.Optional[int] = None,
           running: tp.Optional[tp.Set[subprocess.Popen]] = None) -> int:
    """`dora -P PACKAGE run -f SIG` in a child process group; returns its exit status.

    Args:
        threads (int, optional): torch threads of the XP (`num_threads`, which Dora leaves out of the
            signature, so the XP is the same one whatever it is run with); None: the XP's own setting.
        running (set, optional): the child is in it while it runs (for the runner to stop it).
    """
    folder = sheep.xp.folder
    (folder / FAILED_MARK).unlink(missing_ok=True)
    cmd = [sys.executable, '-m', 'dora', '-P', main.package, 'run', '-f', sheep.xp.sig]
    if threads is not None:
        cmd.append(f'num_threads={int(threads)}')
    with open(folder / LOG_NAME, 'a') as log:
        log.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n")
        log.flush()
        output = None if verbose else log
        child: tp.Optional[subprocess.Popen] = None
        try:
            # Its own session: a terminal's Ctrl-C reaches the runner only, which stops the whole group.
            child = subprocess.Popen(cmd, stdout=output, stderr=subprocess.STDOUT if output else None,
                                     start_new_session=True)
            if running is not None:
                running.add(child)
            returncode = child.wait()
        except BaseException:
            if child is not None:
                _stop(child)
            raise
        finally:
            if running is not None and child is not None:
                running.discard(child)
    if returncode != 0:
        (folder / FAILED_MARK).write_text(f"{returncode}\n")
    return returncode


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return '\n'.join(path.read_text(errors='replace').splitlines()[-lines:])
    except OSError:
        return ''


@contextlib.contextmanager
def grid_lock(main: tp.Any, name: str) -> tp.Iterator[None]:
    """Only one runner per grid: an exclusive lock on `<dora dir>/grid_local/NAME.lock`."""
    path = Path(main.dora.dir) / 'grid_local' / f'{name}.lock'
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, 'w') as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit(f"grid_local: another runner holds {path}; wait for it to finish") from None
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield


def run_grid_locally(name: str, patterns: tp.Sequence[str] = (), show_only: bool = False,
                     verbose: bool = False, stop_on_failure: bool = False, jobs: int = 1) -> int:
    """Register grid `name`, run its unfinished XPs one by one, print the table; returns an exit status.

    Args:
        name (str): grid module under `dora_grids` (e.g. `rr_ablation_tiny`).
        patterns (list of str): only the XPs whose name matches (as `dora grid NAME PATTERN...`).
        show_only (bool): register and print the table, run nothing.
        verbose (bool): stream the XPs' output instead of writing it to their grid_local.log.
        stop_on_failure (bool): stop at the first failed XP instead of going on with the next.
        jobs (int): XPs run at once, each with cpu_count // jobs torch threads.
    Returns:
        int: 0 when every XP is finished, 1 when some failed (the table is printed either way).
    """
    from .train import main
    status, _ = run_explorer(load_explorer(main, name), name, patterns, show_only, verbose, stop_on_failure, jobs)
    return status


def _run_todo(main: tp.Any, todo: tp.Sequence[tp.Any], jobs: int, verbose: bool, stop_on_failure: bool
              ) -> tp.List[str]:
    """Run the XPs of `todo`, `jobs` at a time (in order); returns the signatures of those that failed."""
    if jobs < 1:
        raise ValueError(f"grid_local: jobs={jobs}; run at least 1 XP at a time")
    failed: tp.List[str] = []
    running: tp.Set[subprocess.Popen] = set()
    stopping = threading.Event()
    # With several XPs at once each gets a share of the cores: a second torch thread buys ~1.3x on this
    # kind of machine, a second one-thread XP nearly 2x (docs/recipes.md).
    threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None

    def one(position: int, sheep: tp.Any) -> None:
        if stopping.is_set():
            return
        sig, folder = sheep.xp.sig, sheep.xp.folder
        done, total = epochs_done(main, sheep), sheep.xp.cfg.optim.epochs
        resume = f", resuming after epoch {done}" if done else ''
        print(f"grid_local: [{position}/{len(todo)}] running {sig} ({main.get_name(sheep.xp)}{resume}; "
              f"log: {folder / LOG_NAME})", flush=True)
        start = time.time()
        returncode = run_xp(main, sheep, verbose=verbose, threads=threads, running=running)
        elapsed = time.time() - start
        if returncode == 0 and xp_finished(main, sheep.xp):
            print(f"grid_local: [{position}/{len(todo)}] {sig} done in {elapsed:.0f} s", flush=True)
            return
        failed.append(sig)
        print(f"grid_local: [{position}/{len(todo)}] {sig} FAILED (exit {returncode}, "
              f"{epochs_done(main, sheep)}/{total} epochs) after {elapsed:.0f} s; last lines of "
              f"{folder / LOG_NAME}:\n{_tail(folder / LOG_NAME)}", flush=True)
        if stop_on_failure:
            stopping.set()

    if jobs <= 1:
        for position, sheep in enumerate(todo, 1):
            one(position, sheep)
        return failed
    pool = concurrent.futures.ThreadPoolExecutor(jobs)
    try:
        futures = [pool.submit(one, position, sheep) for position, sheep in enumerate(todo, 1)]
        for future in concurrent.futures.as_completed(futures):
            future.result()
    except BaseException:
        # Ctrl-C / SIGTERM reach this (main) thread: nothing new starts, the running XPs are stopped.
        stopping.set()
        pool.shutdown(wait=False, cancel_futures=True)
        for child in list(running):
            _stop(child)
        raise
    finally:
        pool.shutdown(wait=True)
    return failed


def run_explorer(explorer: tp.Any, name: str, patterns: tp.Sequence[str] = (), show_only: bool = False,
                 verbose: bool = False, stop_on_failure: bool = False, jobs: int = 1
                 ) -> tp.Tuple[int, tp.List[tp.Any]]:
    """`run_grid_locally` for an explorer built in code (e.g. `dora_grids.rr_ablation_tiny.TinyGrid(...).explorer()`),
    registered under grid name `name`; `jobs` XPs run at once.

    Returns:
        tuple: the exit status (0: every XP finished, 1: some failed) and the grid's Dora sheeps in grid
        order (each `sheep.xp` an XP with its `sig`, `cfg` and `folder`).
    """
    from .train import main
    sheeps = register(main, explorer, name, patterns)
    if not sheeps:
        print(f"grid_local: grid {name} has no XP{' matching ' + ' '.join(patterns) if patterns else ''}")
        return 0, []
    failed: tp.List[str] = []
    if not show_only:
        with grid_lock(main, name):
            todo = [sheep for sheep in sheeps if xp_state(main, sheep) != 'done']
            print(f"grid_local: {name}: {len(sheeps)} XPs, {len(sheeps) - len(todo)} finished, "
                  f"{len(todo)} to run (XPs in {main.dora.dir / 'xps'})", flush=True)
            failed = _run_todo(main, todo, jobs, verbose, stop_on_failure)
    print(format_table(main, explorer, sheeps, colors=sys.stdout.isatty()), flush=True)
    if failed:
        print(f"grid_local: {len(failed)} XP(s) failed: {' '.join(failed)}; rerun to retry them")
        return 1, sheeps
    return 0, sheeps


def _raise_interrupted(signum: int, _frame: tp.Any) -> None:
    raise Interrupted(signum)


def main(argv: tp.Optional[tp.Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m rr_audiocraft.grid_local', description=__doc__.split('\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('grid', help="grid name under dora_grids/, e.g. rr_ablation_tiny")
    parser.add_argument('patterns', nargs='*', help="only XPs whose name contains these (as dora grid)")
    parser.add_argument('--show', action='store_true', help="register the XPs and print the table; run nothing")
    parser.add_argument('-v', '--verbose', action='store_true', help="stream the XPs' output here")
    parser.add_argument('-x', '--stop_on_failure', action='store_true', help="stop at the first failed XP")
    parser.add_argument('-j', '--jobs', type=int, default=1,
                        help="XPs run at once, each with cpu_count // jobs torch threads (default 1)")
    args = parser.parse_args(argv)
    configure()
    signal.signal(signal.SIGTERM, _raise_interrupted)
    signal.signal(signal.SIGINT, _raise_interrupted)
    try:
        return run_grid_locally(args.grid, args.patterns, show_only=args.show, verbose=args.verbose,
                                stop_on_failure=args.stop_on_failure, jobs=args.jobs)
    except Interrupted as exc:
        print(f"\ngrid_local: {exc} received: stopped; rerun the same command to continue", flush=True)
        return 128 + exc.signum


if __name__ == '__main__':
    sys.exit(main())
