"""`shadowline bench chaos` (issue 12): a recorded workload under a nemesis, judged afterwards.

The judge is pure code over files: the JSON-lines history of the workload's operations
(`history`), a per-key linearizability search (`linearizable`) and the checker over the history
and both instances' final stores (`checker`), so the nemesis and the harness that drive real
processes can change without touching how a run is judged. The run itself: the client
processes (`workload`), the faults (`nemesis`), memory and descriptors (`resources`), the
printed report (`report`) and the command (`run`).
"""
