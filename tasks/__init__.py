"""Pipeline stages, one thin module per dvc.yaml stage: read params -> call the library -> write artifacts.

Run as ``python -m tasks.<stage>``, this package is imported first (sys.argv[0] is still "-m" then, as the Python
docs state), before the stage's seconds of imports: SIGINT/SIGTERM during them end the stage with one line
(``mergeflow.interrupts``); ``run_stage`` then handles them for the stage's body. Imported any other way (tests, the
flow), it changes no signal handling.

A stage also pins MKL to its AVX2 code path (``MKL_CBWR=AVX2``, Intel's conditional numerical reproducibility,
read when torch loads MKL), so a stage's float results do not depend on which x86 CPU runs it: without it the
default run's ``heads`` (and so everything after it) came out with other bits on an AVX-512 Intel Xeon than on the
AVX2 AMD EPYC of the committed ``dvc.lock``, and a teammate's pushed cache would not match. With it the Xeon
reproduces the EPYC's bits. ``MKL_CBWR=AUTO`` in the environment gives MKL its fastest path instead.
"""

import os
import sys

if sys.argv[:1] == ["-m"]:
    os.environ.setdefault("MKL_CBWR", "AVX2")
    from mergeflow.interrupts import exit_while_starting

    exit_while_starting("mergeflow: stage")
