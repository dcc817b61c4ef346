"""Pipeline stages, one thin module per dvc.yaml stage: read params -> call the library -> write artifacts.

Run as ``python -m tasks.<stage>``, this package is imported first (sys.argv[0] is still "-m" then, as the Python
docs state), before the stage's seconds of imports. Two things happen then:
- the stage is handed to a warm process that has torch and open_clip imported already (``mergeflow.stage_server``;
  ``MERGEFLOW_STAGE_SERVER=0`` turns it off), and this process leaves with the stage's exit status;
- where that is not possible (or inside the warm process's child), SIGINT/SIGTERM during the imports end the stage
  with one line (``mergeflow.interrupts``); ``run_stage`` then handles them for the stage's body.
Imported any other way (tests, the flow), it changes nothing.
"""

import sys

if sys.argv[:1] == ["-m"]:
    from mergeflow.stage_server import run_stage_in_server

    run_stage_in_server()

    from mergeflow.interrupts import exit_while_starting

    exit_while_starting("mergeflow: stage")
