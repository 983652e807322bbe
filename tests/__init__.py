"""The test suite. Importing it (pytest imports tests.conftest, so this runs first, before torch
is loaded in the pytest process) sets what every process of the suite inherits:

OMP_WAIT_POLICY=PASSIVE: an idle OpenMP thread (torch's and MKL's) sleeps at once instead of
spinning for a while first. The suite oversubscribes its cores by design (two pytest workers,
the commands, workers and servers they start), where spinning threads burn the CPU the others
wait for: `python -m bench --quick --only fcn,study_loop,recipes` beside two busy processes on
a 2-core EPYC took 45 CPU-s and 51 s with the default policy, 29 CPU-s and 39 s with this one
(alone: 31-33 and 30-31 CPU-s, 20 s and 22 s). Results are the same; only idle threads wait
differently. Set it yourself to measure the default.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
