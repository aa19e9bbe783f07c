"""The chaos run's record and its judge (issue 12): a JSON-lines history of the workload's
operations (`history`), a per-key linearizability search (`linearizable`), and the checker over
the history and both instances' final stores (`checker`).

Pure code: it reads and writes history files and nothing else, so the nemesis and the harness
that drive real processes can change without touching how a run is judged.
"""
