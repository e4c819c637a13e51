"""RR solvers and the names `solver=` selects them by."""
from .compression import RRCompressionSolver
from .rr import RRAudioGenSolver, RRMusicGenSolver, RRSolverMixin
from ..settings import validate_rr_config

RR_SOLVERS = {'rr_audiogen': RRAudioGenSolver, 'rr_musicgen': RRMusicGenSolver,
              'rr_compression': RRCompressionSolver}

__all__ = ['RRAudioGenSolver', 'RRCompressionSolver', 'RRMusicGenSolver', 'RRSolverMixin', 'RR_SOLVERS',
           'validate_rr_config']
