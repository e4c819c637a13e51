"""RR solvers and the names `solver=` selects them by."""
from .rr import RRAudioGenSolver, RRMusicGenSolver, RRSolverMixin, validate_rr_config

RR_SOLVERS = {'rr_audiogen': RRAudioGenSolver, 'rr_musicgen': RRMusicGenSolver}

__all__ = ['RRAudioGenSolver', 'RRMusicGenSolver', 'RRSolverMixin', 'RR_SOLVERS', 'validate_rr_config']
