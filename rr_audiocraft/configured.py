"""`from rr_audiocraft import configured` first in an entry point: `environment.configure()` before AudioCraft loads.

Stock AudioCraft reads the environment when its modules are imported (its train module composes its
config, which needs `USER` and the XP folder), and xformers logs its warning as it is imported, so the
entry points that import AudioCraft at module level import this module before anything else.
"""
from .environment import configure

configure()
