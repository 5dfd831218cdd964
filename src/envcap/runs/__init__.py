"""Runs: a provenance record for each experiment.

A run ties together what produced a result: the environment (a manifest), the code (a
git commit, the uncommitted diff, untracked files), the parameters, the seeds, the
data fingerprints, the command and its exit status, and the metrics it reported.

The modules, each about one idea:

- :mod:`.record`: the immutable run record and its JSON form; run ids.
- :mod:`.store`: the runs tables beside the manifests in the store.
- :mod:`.git`, :mod:`.params`, :mod:`.seeds`, :mod:`.data`: what a record holds.
- :mod:`.session`: the life of one run (unfinished record, then finished).
- :mod:`.runner`: ``envcap run``: the child process, its signals, its metrics.
- :mod:`.api`: ``envcap.start_run`` and friends, for use inside a script.
- :mod:`.query`, :mod:`.audit`, :mod:`.bundle`, :mod:`.render`: reading runs back.

Importing this package imports nothing else: a user's script pays only for what it uses.
"""
