"""Pipeline stages, one thin module per dvc.yaml stage: read params -> call the library -> write artifacts.

Run as ``python -m tasks.<stage>``, this package is imported first (sys.argv[0] is still "-m" then, as the Python
docs state), before the stage's seconds of imports: SIGINT/SIGTERM during them end the stage with one line
(``mergeflow.interrupts``); ``run_stage`` then handles them for the stage's body. Imported any other way (tests, the
flow), it changes no signal handling.
"""

import sys

if sys.argv[:1] == ["-m"]:
    from mergeflow.interrupts import exit_while_starting

    exit_while_starting("mergeflow: stage")
