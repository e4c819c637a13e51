"""Leaving a process group so that the process can exit cleanly.

A gloo collective runs on one of the process group's worker threads, which lets go of the collective's tensors
only after the caller's `wait()` has returned, and letting go of a tensor that Python has seen takes the GIL. A
worker thread that asks for the GIL once the interpreter is finalising is made to exit from inside a `noexcept`
destructor: the process aborts with "terminate called without an active exception" (SIGABRT, exit status 134),
after its work is done. It takes the worker thread to be held off a core from the end of the last collective
until the main thread reaches `Py_FinalizeEx`, which a loaded machine does. A barrier before leaving does not
help (it is one more collective, whose tensors a worker thread may also still hold).

The worker threads end, each after dropping its last collective, when the `ProcessGroupGloo` object is freed; its
destructor joins them with the GIL released. `leave_process_group` frees it while Python is alive, and checks
that it was freed: a group that something still references lives on into finalisation with its threads.
"""
import functools
import gc
import typing as tp
import weakref

import torch
import torch.distributed


def leave_process_group(after_error: bool = False) -> None:
    """Destroy the default process group, if any, and make sure its worker threads are gone.

    Args:
        after_error (bool): This rank is leaving because of an exception. The other ranks may never reach a barrier
            then, so there is none, and a group that survives is not reported (the exception in flight is the
            error to show).
    Raises:
        RuntimeError: The group is still referenced after `destroy_process_group` (and a garbage collection).
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    group = weakref.ref(torch.distributed.group.WORLD)
    if not after_error:
        torch.distributed.barrier()  # every rank leaves once all are done with the group's connections
    torch.distributed.destroy_process_group()
    if group() is not None:
        gc.collect()  # a reference cycle through the group
    if group() is not None and not after_error:
        raise RuntimeError(
            "the default process group is still referenced after destroy_process_group, so its gloo worker threads "
            "outlive it and may abort the process at exit ('terminate called without an active exception'): drop "
            "what holds it (e.g. torch.distributed.nn.functional imported after init_process_group binds it)")


def leaves_process_group(entry_point: tp.Callable[..., tp.Any]) -> tp.Callable[..., tp.Any]:
    """Decorate a function that may join a process group: whichever way it ends, `leave_process_group`."""
    @functools.wraps(entry_point)
    def run_then_leave(*args: tp.Any, **kwargs: tp.Any) -> tp.Any:
        try:
            result = entry_point(*args, **kwargs)
        except BaseException:
            leave_process_group(after_error=True)
            raise
        leave_process_group()
        return result
    return run_then_leave
